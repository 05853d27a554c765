"""Building an engine's argv from the plan's flags and the user's `extra_args` (public:
engine plugins share it; they differ in how they spell a value, passed in as `render`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from a3s_core.contracts import LaunchContext
from a3s_core.errors import InvalidRequest

Option = tuple[str, list[str]]
"""One command-line option: the flag and the values after it ([] for a bare flag)."""

Render = Callable[[str, str, Any], list[Option]]
"""(flag, key, value) → the options it becomes; [] to leave it out."""

CONSUMED = frozenset(
    {"tensor_parallel_size", "max_model_len", "gpu_memory_utilization", "dtype", "quantization"}
)
"""Keys the sizing plan already applied into the LaunchContext: never emitted twice."""


def key_of(raw: str) -> str:
    """`--max-num-seqs`, `max-num-seqs` and `max_num_seqs` are one key: `max_num_seqs`."""
    return raw.strip().lstrip("-").replace("-", "_")


def flag_of(key: str) -> str:
    return "--" + key.replace("_", "-")


def user_options(
    extra: Mapping[str, Any],
    *,
    engine: str,
    reserved: Iterable[str],
    render: Render,
) -> list[Option]:
    """`extra_args` as options, in the order given. Keys the plan consumed are skipped;
    keys the platform owns (model, port, served name …) are refused naming the key."""
    owned = set(reserved)
    out: list[Option] = []
    for raw, value in extra.items():
        key = key_of(str(raw))
        if not key:
            raise InvalidRequest(
                f"extra_args has an empty key for engine {engine}", field="extra_args", value=raw
            )
        if key in CONSUMED:
            continue
        if key in owned:
            raise InvalidRequest(
                f"extra_args.{raw} is set by the platform for engine {engine} and cannot be "
                "overridden",
                field=f"extra_args.{raw}",
                value=value,
            )
        out += render(flag_of(key), key, value)
    return out


def merge(
    own: list[Option], user: list[Option], superseded_by: Mapping[str, Iterable[str]]
) -> list[str]:
    """The plan's options, minus any the user gave too (under the same flag or one listed in
    `superseded_by`, e.g. SGLang's `--tp` for `--tp-size`), followed by the user's options.
    TGI refuses a repeated flag, and everywhere the user's explicit value must win."""
    given = {flag for flag, _ in user}
    argv: list[str] = []
    for flag, values in own:
        if given & {flag, *superseded_by.get(flag, ())}:
            continue
        argv += [flag, *values]
    for flag, values in user:
        argv += [flag, *values]
    return argv


def check_context(ctx: LaunchContext, engine: str) -> None:
    """Values no engine can start with, named by field (they come from the plan or overrides)."""
    if ctx.tensor_parallel_size < 1:
        raise InvalidRequest(
            f"tensor_parallel_size must be at least 1 for engine {engine}, got "
            f"{ctx.tensor_parallel_size}",
            field="tensor_parallel_size",
            value=ctx.tensor_parallel_size,
        )
    if ctx.max_model_len < 1:
        raise InvalidRequest(
            f"max_model_len must be positive for engine {engine}, got {ctx.max_model_len}",
            field="max_model_len",
            value=ctx.max_model_len,
        )
    if not 0 < ctx.gpu_memory_utilization <= 1:
        raise InvalidRequest(
            f"gpu_memory_utilization must be in (0, 1] for engine {engine}, got "
            f"{ctx.gpu_memory_utilization}",
            field="gpu_memory_utilization",
            value=ctx.gpu_memory_utilization,
        )
    if not 0 < ctx.port < 65536:
        raise InvalidRequest(
            f"port must be in 1..65535 for engine {engine}, got {ctx.port}",
            field="port",
            value=ctx.port,
        )


def number(value: float) -> str:
    """0.9 → '0.9', 0.875 → '0.875', 1.0 → '1' — short, exact enough for a fraction flag."""
    return f"{value:g}"
