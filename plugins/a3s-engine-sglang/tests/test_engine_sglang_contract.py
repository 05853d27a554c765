"""Contract: every flag the plugin renders exists in the pinned SGLang's launcher parser, with
the arity and value type it is rendered with. The parser is read from the published wheel's
`ServerArgs.add_cli_args` (sglang_cli_model.py), never imported; the wheel is downloaded
once into ~/.cache/a3s-wheels. A version bump that drops or renames a flag fails here."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

import pytest
import sglang_cli_model as model
from a3s_engine_sglang import SglangEngine
from a3s_engine_sglang.engine import JSON_LISTS, RESERVED, render_sglang

from a3s_core.contracts import LaunchContext
from a3s_core.contracts.argv import CONSUMED, key_of, merge, user_options
from a3s_core.testing_wheels import published_sources

pytestmark = pytest.mark.contract

VERSION = SglangEngine.image.rsplit(":v", 1)[1]  # lmsysorg/sglang:v0.5.6.post1 → 0.5.6.post1


@pytest.fixture(scope="module")
def wheel() -> Path:
    return published_sources("sglang", VERSION, [model.SERVER_ARGS])


@pytest.fixture(scope="module")
def arguments(wheel: Path) -> list[model.Arg]:
    return model.launch_arguments(wheel)


@pytest.fixture(scope="module")
def parser(arguments: list[model.Arg]) -> argparse.ArgumentParser:
    return model.build_parser(arguments)


def ctx(**over: Any) -> LaunchContext:
    base: dict[str, Any] = dict(
        served_model_name="qwen-72b", model="Qwen/Qwen2.5-72B-Instruct",
        tensor_parallel_size=2, max_model_len=32768, dtype="bfloat16",
        gpu_memory_utilization=0.9, port=30000,
    )
    return LaunchContext(**{**base, **over})


@pytest.mark.parametrize("launch", [
    ctx(),
    ctx(model="Qwen/Qwen2.5-72B-Instruct-AWQ", quantization="awq", dtype="float16",
        tensor_parallel_size=1),
    ctx(quantization="fp8", dtype="auto", gpu_memory_utilization=0.8,
        extra_args={"gpu_memory_utilization": 0.8}),
    ctx(served_model_name="embedding", model="BAAI/bge-large-zh-v1.5", kind="encoder",
        tensor_parallel_size=1, max_model_len=512, dtype="float16"),
    # SGLang has no --tp; argparse takes it as the unambiguous prefix of --tp-size.
    ctx(extra_args={"tp": 4}),
], ids=["bf16-tp2", "awq", "fp8-asked-utilization", "embedding", "user-tp"])
def test_every_command_the_plugin_renders_is_accepted(
    parser: argparse.ArgumentParser, launch: LaunchContext
) -> None:
    argv = SglangEngine().command(launch)
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    ns = parser.parse_args(argv[3:])
    assert ns.model_path == launch.model and ns.served_model_name == launch.served_model_name
    assert ns.host == launch.host and ns.port == launch.port
    # `--tensor-parallel-size` and `--tp-size` are one argument (dest tensor_parallel_size).
    assert ns.tensor_parallel_size == launch.extra_args.get("tp", launch.tensor_parallel_size)
    assert ns.context_length == launch.max_model_len
    assert ns.dtype == launch.dtype
    assert ns.enable_metrics is True
    assert ns.is_embedding is (launch.kind == "encoder")
    asked = "gpu_memory_utilization" in launch.extra_args
    assert ns.mem_fraction_static == (launch.gpu_memory_utilization if asked else None)
    if launch.quantization == "fp8":
        assert ns.quantization == "fp8"


def sample(arg: model.Arg) -> tuple[Any, Any]:
    """(what a user writes in extra_args, what SGLang must parse it to)."""
    kw = arg.kwargs
    type_ = kw.get("type", str)
    if kw.get("action") == "store_true" or kw.get("nargs") == "?":
        return True, True if kw.get("action") else kw.get("const")
    choices = kw.get("choices")
    element = choices[0] if choices else {int: 7, float: 0.5}.get(type_, "x")
    if kw.get("nargs") in ("+", "*"):
        return [element, element], [element, element]
    if kw.get("_type_name") == "json_list_type":
        return [1, 2], [1, 2]
    if kw.get("_type_name") == "json.loads":
        return {"k": 1}, {"k": 1}
    return element, element


def test_every_flag_sglang_has_takes_extra_args_the_way_the_plugin_renders_them(
    arguments: list[model.Arg], parser: argparse.ArgumentParser
) -> None:
    checked, skipped = 0, []
    for arg in arguments:
        key = key_of(arg.names[0])
        if key in RESERVED or key in CONSUMED or arg.custom_action:
            skipped.append(key)
            continue
        dest = next(a.dest for a in parser._actions if arg.names[0] in a.option_strings)
        value, expected = sample(arg)
        for v, want in ((value, expected), *(((False, None),) if value is True else ())):
            rendered = merge([], user_options({key: v}, engine="sglang", reserved=RESERVED,
                                              render=render_sglang), {})
            if v is False:  # store_true: off is the flag's absence
                assert rendered == [], (key, rendered)
                continue
            try:
                ns = parser.parse_args(rendered)
            except (argparse.ArgumentError, model.Rejected) as exc:
                raise AssertionError(
                    f"extra_args {{{key!r}: {v!r}}} renders as {rendered}, which SGLang "
                    f"{VERSION} rejects: {exc}") from None
            assert getattr(ns, dest) == want, (key, v, rendered, getattr(ns, dest))
        checked += 1
    assert checked > 250, f"only {checked} SGLang flags checked; the model lost some"
    # Left out: the platform's own flags (checked above through command()), the plan's
    # spellings, and --lora-paths (its own Action class).
    assert set(skipped) <= set(RESERVED) | CONSUMED | {"lora_paths"}, skipped


def test_json_lists_are_still_json(arguments: list[model.Arg]) -> None:
    by_key = {key_of(a.names[0]): a for a in arguments}
    for key in JSON_LISTS:
        assert by_key[key].kwargs.get("_type_name") == "json_list_type", key


def test_unset_memory_fraction_is_computed_by_sglang(wheel: Path) -> None:
    # The plugin leaves --mem-fraction-static out by default; that is only safe while SGLang
    # defaults it to None and fills it in from its own formula.
    tree = ast.parse((wheel / model.SERVER_ARGS).read_text())
    server_args = next(n for n in tree.body
                       if isinstance(n, ast.ClassDef) and n.name == "ServerArgs")
    default = next(s.value for s in server_args.body if isinstance(s, ast.AnnAssign)
                   and isinstance(s.target, ast.Name) and s.target.id == "mem_fraction_static")
    assert isinstance(default, ast.Constant) and default.value is None
    formula = next(n for n in ast.walk(server_args)
                   if isinstance(n, ast.FunctionDef) and n.name == "_handle_gpu_memory_settings")
    assigned = [n for n in ast.walk(formula) if isinstance(n, ast.If)
                and ast.unparse(n.test) == "self.mem_fraction_static is None"]
    assert assigned, "SGLang no longer computes mem_fraction_static when it is unset"
    assert "reserved_mem" in ast.unparse(assigned[0])


def test_the_wheel_read_is_the_pinned_image() -> None:
    assert SglangEngine.image == f"lmsysorg/sglang:v{VERSION}"
