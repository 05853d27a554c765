"""Contract: every flag the plugin renders exists in the pinned vLLM's `vllm serve` parser,
with the arity and value type it is rendered with. The parser is rebuilt from the published
wheel's source (vllm_cli_model.py), never imported; the wheel is downloaded once into
~/.cache/a3s-wheels. A version bump that drops or renames a flag, or changes how one is
spelt, fails here."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import vllm_cli_model as model
from a3s_engine_vllm import VllmEngine
from a3s_engine_vllm.engine import RESERVED, render_vllm

from a3s_core.contracts import LaunchContext
from a3s_core.contracts.argv import CONSUMED, key_of, merge, user_options
from a3s_core.testing_wheels import published_sources

pytestmark = pytest.mark.contract

VERSION = VllmEngine.image.rsplit(":v", 1)[1]  # the wheel released with the pinned image


@pytest.fixture(scope="module")
def wheel() -> Path:
    return published_sources("vllm", VERSION, ["vllm/*.py"])


@pytest.fixture(scope="module")
def arguments(wheel: Path) -> list[model.Arg]:
    sha = model.source_sha(wheel, "vllm/engine/arg_utils.py", "_compute_kwargs")
    assert sha == model.COMPUTE_KWARGS_SHA, (
        f"vLLM {VERSION} derives flags from dataclass fields differently from the "
        f"{model.__name__} model (its _compute_kwargs hash is {sha}); re-read "
        "vllm/engine/arg_utils.py::_compute_kwargs, update the model and its hash"
    )
    return model.serve_arguments(wheel)


@pytest.fixture(scope="module")
def parser(arguments: list[model.Arg]) -> argparse.ArgumentParser:
    return model.build_parser(arguments)


def ctx(**over: Any) -> LaunchContext:
    base: dict[str, Any] = dict(
        served_model_name="qwen-72b", model="Qwen/Qwen2.5-72B-Instruct",
        tensor_parallel_size=2, max_model_len=32768, dtype="bfloat16",
        gpu_memory_utilization=0.9, port=8000,
    )
    return LaunchContext(**{**base, **over})


@pytest.mark.parametrize("launch", [
    ctx(),
    ctx(model="Qwen/Qwen2.5-72B-Instruct-AWQ", quantization="awq", dtype="float16",
        tensor_parallel_size=1),
    ctx(quantization="fp8", dtype="auto"),
    ctx(served_model_name="embedding", model="BAAI/bge-large-zh-v1.5", kind="encoder",
        tensor_parallel_size=1, max_model_len=512, dtype="float16"),
], ids=["bf16-tp2", "awq", "fp8", "embedding"])
def test_every_command_the_plugin_renders_is_accepted(
    parser: argparse.ArgumentParser, launch: LaunchContext
) -> None:
    argv = VllmEngine().command(launch)
    assert argv[:2] == ["vllm", "serve"]
    ns = parser.parse_args(argv[2:])
    assert ns.model_tag == launch.model
    assert ns.served_model_name == [launch.served_model_name]
    assert ns.host == launch.host and ns.port == launch.port
    assert ns.tensor_parallel_size == launch.tensor_parallel_size
    assert ns.max_model_len == launch.max_model_len
    assert ns.dtype == launch.dtype
    assert ns.gpu_memory_utilization == launch.gpu_memory_utilization
    assert ns.runner == ("pooling" if launch.kind == "encoder" else None)  # None: not given


def sample(arg: model.Arg) -> tuple[Any, Any]:
    """(what a user writes in extra_args, what vLLM must parse it to)."""
    kw = arg.kwargs
    action, nargs, type_ = kw.get("action"), kw.get("nargs"), kw.get("type")
    if action is argparse.BooleanOptionalAction:
        return True, True
    if action == "store_true":
        return True, True
    if action == "append":
        return ["a.X", "b.Y"], ["a.X", "b.Y"]
    if kw.get("const") is True:  # --hf-token [value]
        return True, True
    element: Any = {int: 7, float: 0.5}.get(type_, "x")
    if choices := [c for c in kw.get("choices", []) if c != "None"]:
        element = choices[0]
    if nargs == "+":
        if "int" in arg.kinds or _returns(type_, int):
            return [1, 2], [1, 2]
        return ["a", "b"], ["a", "b"]
    if isinstance(nargs, int):
        return [element] * nargs, [element] * nargs
    if _returns(type_, json.loads):
        value = ["https://a.example", "https://b.example"] if "list" in arg.kinds else {"k": 1}
        return value, value
    if "dict" in arg.kinds:  # dict-or-string options: the dict arrives as its JSON text
        return {"k": 1}, '{"k":1}'
    if choices:
        return element, element
    if _returns(type_, int):
        return 7, 7
    if _returns(type_, float):
        return 0.5, 0.5
    return element, element


def _returns(type_: Any, base: Any) -> bool:
    if type_ is base:
        return True
    name = getattr(type_, "__name__", "")
    return name == f"optional_{getattr(base, '__name__', '')}"


def test_every_flag_vllm_has_takes_extra_args_the_way_the_plugin_renders_them(
    arguments: list[model.Arg], parser: argparse.ArgumentParser
) -> None:
    checked, skipped = 0, []
    for arg in arguments:
        long = [n for n in arg.names if n.startswith("--")]
        if not long:
            continue  # the positional model tag
        key = key_of(long[0])
        if key in RESERVED or key in CONSUMED or arg.custom_action:
            skipped.append(key)  # the platform's own, or not modelled (kept honest below)
            continue
        dest = next(a.dest for a in parser._actions if long[0] in a.option_strings)
        value, expected = sample(arg)
        for v, want in ((value, expected), *(((False, False),) if value is True else ())):
            rendered = merge([], user_options({key: v}, engine="vllm", reserved=RESERVED,
                                              render=render_vllm), {})
            if v is False and not rendered:  # a presence switch: off is its absence
                assert arg.kwargs.get("action") != argparse.BooleanOptionalAction, key
                continue
            try:
                ns = parser.parse_args(["some/model", *rendered])
            except (argparse.ArgumentError, model.Rejected) as exc:
                raise AssertionError(
                    f"extra_args {{{key!r}: {v!r}}} renders as {rendered}, which vLLM "
                    f"{VERSION} rejects: {exc}") from None
            assert getattr(ns, dest) == want, (key, v, rendered, getattr(ns, dest))
        checked += 1
    assert checked > 150, f"only {checked} vLLM flags checked; the model lost some"
    # What is left out: the platform's own flags (checked above through command()), the
    # plan's, and --lora-modules (its own Action class; its JSON entries are not modelled).
    assert set(skipped) <= (set(RESERVED) | CONSUMED | {"lora_modules"}), skipped


def test_plugins_special_cases_are_still_special(arguments: list[model.Arg]) -> None:
    # If a release gives these ordinary spellings back, the plugin's tables must shrink too.
    by_key = {key_of(a.names[0]): a for a in arguments if a.names[0].startswith("--")}
    from a3s_engine_vllm.engine import JSON_LISTS, REPEATED, SWITCHES

    for key in JSON_LISTS:
        assert _returns(by_key[key].kwargs.get("type"), json.loads), key
        assert "nargs" not in by_key[key].kwargs, key
    for key in REPEATED:
        assert by_key[key].kwargs.get("action") == "append", key
    for key in SWITCHES:
        kw = by_key[key].kwargs
        assert kw.get("action") == "store_true" or kw.get("const") is True, key


def test_the_wheel_read_is_the_pinned_image() -> None:
    assert VllmEngine.image == f"vllm/vllm-openai:v{VERSION}"
