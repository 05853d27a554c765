"""`python -m sglang.launch_server`'s argument parser, rebuilt from a published wheel's source
without importing SGLang (or torch).

SGLang writes every argument out in `ServerArgs.add_cli_args` as a literal
`parser.add_argument("--flag", type=…, action=…, nargs=…, choices=…)` call, so reading those
calls with `ast` gives the parser: types map to the callables SGLang uses (`json_list_type`
and `json.loads` parse JSON, `nullable_str` is a string), `choices` named by a module-level
constant are resolved when that constant is a literal list, and are left unchecked when it
is computed at run time (a registry's keys).
"""

from __future__ import annotations

import argparse
import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

SERVER_ARGS = "sglang/srt/server_args.py"
TYPES: dict[str, Any] = {
    "str": str, "int": int, "float": float, "json.loads": json.loads,
    "json_list_type": json.loads, "nullable_str": str,
}


@dataclass
class Arg:
    names: list[str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    custom_action: str | None = None


class Rejected(Exception):
    """What SGLang's launcher would print before exiting with status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Rejected(message)


def launch_arguments(root: Path) -> list[Arg]:
    tree = ast.parse((root / SERVER_ARGS).read_text())
    constants = _constants(tree)
    body = _add_cli_args(tree)
    out: list[Arg] = []
    for node in ast.walk(body):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if len(names) != len(node.args):
            raise ValueError(f"line {node.lineno}: a flag name computed at run time")
        kw: dict[str, Any] = {}
        custom = None
        for k in node.keywords:
            text = ast.unparse(k.value)
            if k.arg == "type":
                kw["type"] = TYPES.get(text, str)
                kw["_type_name"] = text
            elif k.arg == "action":
                if isinstance(k.value, ast.Constant):
                    kw["action"] = k.value.value
                elif text.endswith("BooleanOptionalAction"):
                    kw["action"] = argparse.BooleanOptionalAction
                else:
                    custom = text
            elif k.arg in ("nargs", "const"):
                kw[k.arg] = _eval(k.value, constants)
            elif k.arg == "choices":
                choices = _eval(k.value, constants)
                if isinstance(choices, list | tuple):
                    kw["choices"] = list(choices)
        out.append(Arg(names, kw, custom))
    return out


def _add_cli_args(tree: ast.Module) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "ServerArgs":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "add_cli_args":
                    return item
    raise LookupError("ServerArgs.add_cli_args")


def _constants(tree: ast.Module) -> dict[str, ast.expr]:
    return {t.id: n.value for n in tree.body if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name)}


def _eval(node: ast.expr, constants: dict[str, ast.expr], depth: int = 0) -> Any:
    """A literal, a module constant that is one, or a `+` of those; None when computed."""
    if depth > 10:
        return None
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Name) and node.id in constants:
        return _eval(constants[node.id], constants, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _eval(node.left, constants, depth + 1)
        right = _eval(node.right, constants, depth + 1)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
    if isinstance(node, ast.List):
        items = [_eval(e, constants, depth + 1) for e in node.elts]
        return None if any(i is None for i in items) else items
    return None


def build_parser(args: list[Arg]) -> argparse.ArgumentParser:
    parser = _Parser(prog="sglang.launch_server", exit_on_error=False, add_help=False)
    for a in args:
        kw = {k: v for k, v in a.kwargs.items() if not k.startswith("_")}
        if a.custom_action:
            kw.setdefault("nargs", "*")  # its own Action: accept what it would, unchecked
        parser.add_argument(*a.names, **kw)
    return parser
