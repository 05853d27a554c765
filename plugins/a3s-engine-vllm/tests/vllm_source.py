"""The modules of a published vLLM wheel, read with `ast`, and what a type annotation in them
means at run time: names are resolved through each module's imports and assignments as
Python would (the `else` of `if TYPE_CHECKING:` included, since that is what exists when
vLLM builds its parser), and an annotation becomes the set of type hints `get_type_hints`
in vllm/engine/arg_utils.py would see (Optional/Union/Annotated opened)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_SCALARS = {"str": str, "int": int, "float": float, "bool": bool}
GENERIC_LIST = {"list", "List", "Sequence"}
GENERIC_DICT = {"dict", "Dict", "Mapping"}
GENERIC_TUPLE = {"tuple", "Tuple"}
WRAPPERS = {"Annotated", "SkipValidation"}  # first argument is the type


@dataclass(frozen=True)
class Hint:
    """One member of a field's type-hint set, as `get_type_hints` would flatten it."""

    kind: str  # builtin name, "none", "literal", "list", "tuple", "dict", "dataclass", "other"
    args: tuple[Any, ...] = ()


@dataclass
class Module:
    tree: ast.Module
    names: dict[str, tuple[str, Any]]  # runtime name → ("alias"|"class"|"import"|"module", …)


class Source:
    """The wheel's modules, parsed on demand; names resolved as at run time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, Module | None] = {}

    def module(self, dotted: str) -> Module | None:
        if dotted not in self.modules:
            base = self.root / dotted.replace(".", "/")
            path = base.with_suffix(".py")
            if not path.exists():
                path = base / "__init__.py"
            self.modules[dotted] = _index(ast.parse(path.read_text())) if path.exists() else None
        return self.modules[dotted]

    def resolve(self, mod: str, name: str, depth: int = 0) -> tuple[str, str, Any] | None:
        """(module, kind, payload) of the runtime definition of `name` seen from `mod`."""
        m = self.module(mod)
        if m is None or depth > 20 or name not in m.names:
            return None
        kind, payload = m.names[name]
        if kind == "import":
            src_mod, src_name = payload
            sub = self.module(f"{src_mod}.{src_name}")
            if sub is not None:
                return (f"{src_mod}.{src_name}", "module", None)
            return self.resolve(src_mod, src_name, depth + 1)
        return (mod, kind, payload)

    def hints(self, node: ast.expr, mod: str, depth: int = 0) -> set[Hint]:
        """The flattened type-hint set of an annotation (Optional/Union/Annotated opened)."""
        if depth > 30:
            return {Hint("other", ("<deep>",))}
        if isinstance(node, ast.Constant):
            if node.value is None:
                return {Hint("none")}
            if isinstance(node.value, str):  # a forward reference
                return self.hints(ast.parse(node.value, mode="eval").body, mod, depth + 1)
            return {Hint("other", (repr(node.value),))}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.hints(node.left, mod, depth + 1) | self.hints(node.right, mod, depth + 1)
        if isinstance(node, ast.Subscript):
            head = name_of(node.value)
            elts = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
            if head == "Optional":
                return self.hints(elts[0], mod, depth + 1) | {Hint("none")}
            if head == "Union":
                return set().union(*(self.hints(e, mod, depth + 1) for e in elts))
            if head in WRAPPERS:
                return self.hints(elts[0], mod, depth + 1)
            if head == "Literal":
                return {Hint("literal", tuple(self._literal_values(elts, mod, depth)))}
            if head in GENERIC_LIST:
                return {Hint("list", (elts[0], mod))}
            if head in GENERIC_TUPLE:
                return {Hint("tuple", (tuple(elts), mod))}
            if head in GENERIC_DICT:
                return {Hint("dict")}
            return {Hint("other", (head,))}
        name = name_of(node)
        if name in BUILTIN_SCALARS:
            return {Hint(name)}
        if name in GENERIC_LIST:
            return {Hint("list", (None, mod))}
        if name in GENERIC_DICT:
            return {Hint("dict")}
        if name == "Any":
            return {Hint("other", ("Any",))}
        if isinstance(node, ast.Name):
            found = self.resolve(mod, node.id)
            if found is not None:
                where, kind, payload = found
                if kind == "alias":
                    return self.hints(payload, where, depth + 1)
                if kind == "class":
                    return {Hint("dataclass" if payload["dataclass"] else "other", (node.id,))}
        return {Hint("other", (name,))}

    def _literal_values(self, elts: list[ast.expr], mod: str, depth: int) -> list[Any]:
        values: list[Any] = []
        for e in elts:
            if isinstance(e, ast.Constant):
                values.append(e.value)
            else:  # Literal["auto", ConvertType]: a nested Literal alias
                for h in self.hints(e, mod, depth + 1):
                    values += list(h.args) if h.kind == "literal" else []
        return values

    def dataclass_fields(self, mod: str, cls: str) -> dict[str, tuple[ast.expr, str]]:
        """Field name → annotation, inherited fields first, as `dataclasses.fields` lists
        them (ClassVar and InitVar left out)."""
        found = self.resolve(mod, cls)
        if found is None or found[1] != "class":
            raise LookupError(f"{cls} is not a class defined in the wheel (from {mod})")
        where, _, info = found
        out: dict[str, tuple[ast.expr, str]] = {}
        for base in info["bases"]:
            base_found = self.resolve(where, base)
            if base_found and base_found[1] == "class" and base_found[2]["dataclass"]:
                out.update(self.dataclass_fields(where, base))
        for stmt in info["node"].body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if name_of(stmt.annotation).split("[")[0] in ("ClassVar", "InitVar"):
                    continue
                if isinstance(stmt.annotation, ast.Subscript) and name_of(
                    stmt.annotation.value
                ) in ("ClassVar", "InitVar"):
                    continue
                out[stmt.target.id] = (stmt.annotation, where)
        return out


def name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ast.unparse(node)


def _index(tree: ast.Module) -> Module:
    names: dict[str, tuple[str, Any]] = {}

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.If):
                if name_of(stmt.test) == "TYPE_CHECKING":
                    visit(stmt.orelse)  # what exists at run time
                else:
                    visit(stmt.body)
                    visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body)
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                for a in stmt.names:
                    names[a.asname or a.name] = ("import", (stmt.module, a.name))
            elif isinstance(stmt, ast.Assign):
                for t in stmt.targets:
                    if isinstance(t, ast.Name):
                        names[t.id] = ("alias", stmt.value)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if stmt.value is not None:
                    names[stmt.target.id] = ("alias", stmt.value)
            elif isinstance(stmt, ast.ClassDef):
                decorators = {name_of(d.func if isinstance(d, ast.Call) else d)
                              for d in stmt.decorator_list}
                names[stmt.name] = ("class", {
                    "node": stmt,
                    "dataclass": "dataclass" in decorators,
                    "bases": [name_of(b) for b in stmt.bases],
                })

    visit(tree.body)
    return Module(tree, names)
