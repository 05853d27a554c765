"""Contract: what the TGI plugin renders for TEI and TGI is accepted by their argument
definitions at the pinned versions (clap_args.py: a table read from the upstream sources,
since neither program is published to a registry)."""

from __future__ import annotations

from typing import Any

import clap_args
import pytest
from a3s_engine_tgi import TgiEngine
from a3s_engine_tgi.embeddings import RESERVED as TEI_RESERVED
from a3s_engine_tgi.launcher import RESERVED as TGI_RESERVED
from a3s_engine_tgi.render import render_clap

from a3s_core.contracts import LaunchContext
from a3s_core.contracts.argv import CONSUMED, key_of, merge, user_options


def ctx(**over: Any) -> LaunchContext:
    base: dict[str, Any] = dict(
        served_model_name="qwen-72b", model="Qwen/Qwen2.5-72B-Instruct",
        tensor_parallel_size=2, max_model_len=32768, dtype="bfloat16",
        gpu_memory_utilization=0.9, port=8080, in_container=True,
    )
    return LaunchContext(**{**base, **over})


def embedding(**over: Any) -> LaunchContext:
    return ctx(served_model_name="embedding", model="BAAI/bge-large-zh-v1.5", kind="encoder",
               tensor_parallel_size=1, max_model_len=512, **over)


def test_tables_are_for_the_pinned_images() -> None:
    engine = TgiEngine()
    assert engine.embedding_image.endswith(f":cuda-{clap_args.TEI_VERSION}")
    assert engine.image.endswith(f":{clap_args.TGI_VERSION}")


@pytest.mark.parametrize("launch", [
    embedding(dtype="float16"),
    embedding(dtype="auto"),
    embedding(dtype="float32", extra_args={"max_batch_tokens": 32768, "pooling": "cls",
                                           "auto_truncate": False}),
], ids=["fp16", "auto", "fp32-extra"])
def test_every_tei_command_is_accepted(launch: LaunchContext) -> None:
    args = TgiEngine().command(launch)
    got = clap_args.check(args, clap_args.TEI)  # arguments only: the image's ENTRYPOINT runs
    assert got["model_id"] == launch.model
    assert got["served_model_name"] == launch.served_model_name
    assert got["hostname"] == launch.host and got["port"] == launch.port
    assert got.get("dtype") == {"float16": "float16", "float32": "float32"}.get(launch.dtype)
    if "auto_truncate" in launch.extra_args:
        assert got["auto_truncate"] is False  # TEI truncates by default: False must be said


@pytest.mark.parametrize("launch", [
    ctx(),
    ctx(model="Qwen/Qwen2.5-72B-Instruct-AWQ", quantization="awq", dtype="float16",
        tensor_parallel_size=1),
    ctx(quantization="fp8", extra_args={"max_batch_prefill_tokens": 8192,
                                        "cuda_graphs": [1, 2, 4], "sharded": True}),
], ids=["bf16-tp2", "awq", "fp8-extra"])
def test_every_tgi_command_is_accepted(launch: LaunchContext) -> None:
    argv = TgiEngine().command(launch)
    assert argv[0] == "text-generation-launcher"
    got = clap_args.check(argv[1:], clap_args.TGI)
    assert got["model_id"] == launch.model
    assert got["num_shard"] == launch.tensor_parallel_size
    assert got["max_total_tokens"] == launch.max_model_len
    assert got["usage_stats"] == "off"
    assert ("dtype" in got) != ("quantize" in got)  # TGI refuses both together


def sample(spec: dict[str, Any]) -> tuple[Any, Any]:
    """(what a user writes in extra_args, what the program must parse it to)."""
    if spec["type"] == "bool":
        return True, True
    element = {"int": 7, "float": 0.5, "enum": (spec.get("choices") or ["x"])[0]}.get(
        spec["type"], "x")
    if spec.get("repeat"):
        return [element, element], [element, element]
    return element, element


@pytest.mark.parametrize(("table", "reserved"), [
    (clap_args.TEI, TEI_RESERVED), (clap_args.TGI, TGI_RESERVED),
], ids=["tei", "tgi"])
def test_every_flag_takes_extra_args_the_way_render_clap_spells_them(
    table: dict[str, dict[str, Any]], reserved: frozenset[str]
) -> None:
    for flag, spec in table.items():
        key = key_of(flag)
        if key in reserved or key in CONSUMED:
            continue
        value, expected = sample(spec)
        cases = [(value, expected)]
        if value is True:
            # A switch is off by its absence; a valued boolean must say false.
            cases.append((False, None if spec["takes"] == "switch" else False))
        for v, want in cases:
            rendered = merge([], user_options({key: v}, engine="tgi", reserved=reserved,
                                              render=render_clap), {})
            try:
                got = clap_args.check(rendered, table)
            except clap_args.Refused as exc:
                raise AssertionError(f"extra_args {{{key!r}: {v!r}}} renders as {rendered}, "
                                     f"which the program refuses: {exc}") from None
            assert got.get(key) == want, (key, v, rendered, got)
