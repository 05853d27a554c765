"""`vllm serve`'s argument parser, rebuilt from a published wheel's source without importing
vLLM (or torch).

vLLM writes few `add_argument` calls out in full: most take `**<group>_kwargs["field"]`,
which `get_kwargs(<Config dataclass>)` derives at run time from the dataclass field's type
(bool → `--x/--no-x`, list → `nargs='+'`, Literal → choices, dict or dataclass → JSON, …),
and a few statements then patch those kwargs (`frontend_kwargs["allowed_origins"]["type"] =
json.loads`). This module does the same with `ast`: it follows each `add_argument` to its
dataclass field, resolves the field's annotation as at run time (vllm_source.py), applies
`_compute_kwargs`'s rules
as written at v0.11.0, then the explicit keywords and the patches. `COMPUTE_KWARGS_SHA`
pins the rules it models: when a release changes `_compute_kwargs`, the contract test fails
and asks for this model to be re-read against it, instead of checking the wrong thing.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from vllm_source import BUILTIN_SCALARS, Source, name_of

# sha256 of ast.dump(vllm/engine/arg_utils.py::_compute_kwargs) at v0.11.0, first 16 hex.
COMPUTE_KWARGS_SHA = "8a3a45a6c38091d7"

@dataclass
class Arg:
    """One `add_argument` call as the real parser would receive it."""

    names: list[str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    deprecated: bool = False
    custom_action: str | None = None  # a project-defined Action class we do not model
    kinds: frozenset[str] = frozenset()  # the field's type-hint kinds ("list", "dict", …)



def compute_kwargs(src: Source, mod: str, cls: str) -> dict[str, dict[str, Any]]:
    """`get_kwargs(cls)`: argparse keywords per dataclass field, by `_compute_kwargs`'s rules
    (v0.11.0). Types are real callables where the rule names one (int, float, json.loads)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (annotation, where) in src.dataclass_fields(mod, cls).items():
        hints = src.hints(annotation, where)
        kinds = {h.kind for h in hints}
        kw: dict[str, Any] = {}
        if "dataclass" in kinds:
            kw["type"] = json.loads  # TypeAdapter(cls).validate_json
        elif "bool" in kinds:
            kw["action"] = argparse.BooleanOptionalAction
        elif "literal" in kinds:
            options = next(h.args for h in hints if h.kind == "literal")
            kw["type"] = type(options[0])
            if "str" not in kinds:
                kw["choices"] = sorted(options)
        elif "tuple" in kinds:
            elts, emod = next(h.args for h in hints if h.kind == "tuple")
            ellipsis = any(isinstance(e, ast.Constant) and e.value is Ellipsis for e in elts)
            kw["type"] = _element_type(src, elts[0], emod)
            kw["nargs"] = "+" if ellipsis else len(elts)
        elif "list" in kinds:
            elt, emod = next(h.args for h in hints if h.kind == "list")
            kw["type"] = str if elt is None else _element_type(src, elt, emod)
            kw["nargs"] = "+"
        elif "int" in kinds:
            kw["type"] = int
        elif "float" in kinds:
            kw["type"] = float
        elif "dict" in kinds and ("str" in kinds or "other" in kinds):
            kw["type"] = str  # union_dict_and_str: JSON or a plain string
        elif "dict" in kinds:
            kw["type"] = json.loads
        elif "str" in kinds or "other" in kinds:
            kw["type"] = str
        else:
            raise ValueError(f"{cls}.{name}: no rule for type hints {hints}")
        if "none" in kinds and "bool" not in kinds:
            kw["type"] = _optional(kw["type"])
            if "choices" in kw:
                kw["choices"] = [*kw["choices"], "None"]
        kw["_kinds"] = frozenset(kinds)
        out[name] = kw
    return out


def _element_type(src: Source, elt: ast.expr, mod: str) -> Any:
    hints = src.hints(elt, mod)
    kinds = {h.kind for h in hints}
    if len(hints) > 1 and "str" in kinds:  # a Union element: vLLM takes str
        return str
    for k in ("int", "float", "str"):
        if kinds == {k}:
            return BUILTIN_SCALARS[k]
    if "dataclass" in kinds:
        return json.loads
    return str


def _optional(t: Any) -> Any:
    def parse(value: str) -> Any:
        return None if value == "None" else t(value)

    parse.__name__ = f"optional_{getattr(t, '__name__', 'type')}"
    return parse


def serve_arguments(root: Path) -> list[Arg]:
    """Every argument `vllm serve` registers (make_arg_parser), in order."""
    src = Source(root)
    args: list[Arg] = []
    cli = src.module("vllm.entrypoints.openai.cli_args")
    engine = src.module("vllm.engine.arg_utils")
    assert cli is not None and engine is not None, f"{root} lacks vLLM's cli_args/arg_utils"
    make = _function(cli.tree, "make_arg_parser")
    args += _calls(src, make, "vllm.entrypoints.openai.cli_args", {})
    frontend = _method(cli.tree, "FrontendArgs", "add_cli_args")
    kwargs = {"frontend_kwargs": compute_kwargs(src, "vllm.entrypoints.openai.cli_args",
                                                "FrontendArgs")}
    _patch(frontend, kwargs)
    for key, value in kwargs["frontend_kwargs"].items():
        args.append(_arg([f"--{key.replace('_', '-')}"], value))
    for cls_name, meth in (("EngineArgs", "add_cli_args"), ("AsyncEngineArgs", "add_cli_args")):
        body = _method(engine.tree, cls_name, meth)
        groups = {}
        for stmt in ast.walk(body):
            if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)
                    and name_of(stmt.value.func) == "get_kwargs"):
                target = stmt.targets[0]
                assert isinstance(target, ast.Name)
                config = name_of(stmt.value.args[0])
                groups[target.id] = compute_kwargs(src, "vllm.engine.arg_utils", config)
        _patch(body, groups)
        args += _calls(src, body, "vllm.engine.arg_utils", groups)
    return args


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise LookupError(name)


def _method(tree: ast.Module, cls: str, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    raise LookupError(f"{cls}.{name}")


def _patch(body: ast.FunctionDef, groups: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Apply `x_kwargs["f"]["k"] = v`, `x_kwargs["f"]["k"] += v` and `del x_kwargs["f"]["k"]`."""

    def target(node: ast.expr) -> tuple[dict[str, Any], str] | None:
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Subscript)
                and isinstance(node.value.value, ast.Name) and node.value.value.id in groups):
            f = ast.literal_eval(node.value.slice)
            k = ast.literal_eval(node.slice)
            return groups[node.value.value.id][f], k
        return None

    for stmt in ast.walk(body):
        if isinstance(stmt, ast.Assign) and (t := target(stmt.targets[0])):
            kw, key = t
            kw[key] = _value(stmt.value, key)
        elif isinstance(stmt, ast.AugAssign) and (t := target(stmt.target)):
            kw, key = t
            if key == "choices":
                kw[key] = None  # extended at run time (e.g. permutations): no fixed list
        elif isinstance(stmt, ast.Delete):
            for d in stmt.targets:
                if t := target(d):
                    t[0].pop(t[1], None)


def _value(node: ast.expr, key: str) -> Any:
    """An explicit keyword value, as far as it can be had without running vLLM."""
    text = ast.unparse(node)
    if key == "type":
        return {"int": int, "float": float, "str": str, "json.loads": json.loads,
                "optional_type(json.loads)": _optional(json.loads),
                "optional_type(str)": _optional(str)}.get(text, str)
    if key == "action":
        if text.endswith("BooleanOptionalAction"):
            return argparse.BooleanOptionalAction
        if isinstance(node, ast.Constant):
            return node.value
        return ("custom", text)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None  # computed at run time (choices from a registry, a default): unchecked


def _calls(src: Source, body: ast.FunctionDef, mod: str,
           groups: dict[str, dict[str, dict[str, Any]]]) -> list[Arg]:
    out: list[Arg] = []
    for node in ast.walk(body):
        if not (isinstance(node, ast.Call) and name_of(node.func) == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if not names:  # built from a loop variable: the deprecated guided-decoding flags
            continue
        kw: dict[str, Any] = {}
        deprecated = False
        for k in node.keywords:
            if k.arg is None:  # **x_kwargs["field"]
                v = k.value
                assert isinstance(v, ast.Subscript) and isinstance(v.value, ast.Name)
                kw.update(groups[v.value.id][ast.literal_eval(v.slice)])
            elif k.arg == "deprecated":
                deprecated = bool(ast.literal_eval(k.value))
            elif k.arg in ("type", "action", "nargs", "choices", "const"):
                kw[k.arg] = _value(k.value, k.arg)
        out.append(_arg(names, kw, deprecated))
    return out


def _arg(names: list[str], kw: dict[str, Any], deprecated: bool = False) -> Arg:
    kinds = kw.get("_kinds", frozenset())
    kw = {k: v for k, v in kw.items() if k in ("type", "action", "nargs", "choices", "const")}
    custom = None
    if isinstance(kw.get("action"), tuple):
        custom = kw.pop("action")[1]
    if kw.get("choices") is None:
        kw.pop("choices", None)
    return Arg(list(names), kw, deprecated, custom, kinds)


class Rejected(Exception):
    """What `vllm serve` would print before exiting with status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Rejected(message)


def build_parser(args: list[Arg]) -> argparse.ArgumentParser:
    """An argparse parser with the same arguments (names, actions, arity, types, choices);
    a command line vLLM would refuse raises `Rejected` with argparse's message."""
    parser = _Parser(prog="vllm serve", exit_on_error=False, add_help=False)
    for a in args:
        kw = dict(a.kwargs)
        if a.custom_action:
            kw.setdefault("nargs", "*")  # its own Action: accept what it would, unchecked
        if kw.get("action") in ("store_true", argparse.BooleanOptionalAction):
            kw.pop("type", None)
        parser.add_argument(*a.names, **kw)
    return parser


def source_sha(root: Path, module: str, function: str) -> str:
    tree = ast.parse((root / module).read_text())
    return hashlib.sha256(ast.dump(_function(tree, function)).encode()).hexdigest()[:16]
