"""TEI's and TGI's command-line arguments at the versions the TGI plugin pins, as a table.

Neither program is published to a package registry (`text-embeddings-router` and
`text-generation-launcher` are not on crates.io), so their clap definitions cannot be read
from a registry the way vLLM's and SGLang's wheels are. These tables were read on
2026-12-06 from the upstream sources, fetched read-only with the search tool:

- TEI: huggingface/text-embeddings-inference, tag v1.9.3 (Cargo version 1.9.3),
  router/src/main.rs `struct Args`; `DType` (backends/src/dtype.rs) as built into the
  `cuda-` image (`-F candle-cuda`: float16, float32) and `Pool` (backends/core/src/lib.rs).
- TGI: huggingface/text-generation-inference, tag v3.3.5, launcher/src/main.rs
  `struct Args` and its `ValueEnum`s (Quantization, Dtype, KVCacheDtype, RopeScaling,
  UsageStatsLevel).

clap 4 derive rules applied: a `bool` field is a switch (no value), `Option<bool>` takes
true/false, a `bool` with `num_args = 0..=1` takes an optional true/false, `Vec<T>` appends
one value per occurrence (`value_delimiter` also splits), a ValueEnum takes its variants in
kebab-case unless renamed, and any other field takes exactly one value; a flag given twice
is refused unless it appends. `check` applies those rules to an argv. When a pin moves,
re-read the sources and update the table and its version below.
"""

from __future__ import annotations

from typing import Any

TEI_VERSION = "1.9.3"
TGI_VERSION = "3.3.5"

TEI: dict[str, dict[str, Any]] = {
    "--model-id": {"takes": "value", "type": "str"},
    "--revision": {"takes": "value", "type": "str"},
    "--tokenization-workers": {"takes": "value", "type": "int"},
    "--dtype": {"takes": "value", "type": "enum", "choices": ["float16", "float32"]},
    "--served-model-name": {"takes": "value", "type": "str"},
    "--pooling": {
        "takes": "value",
        "type": "enum",
        "choices": ["cls", "mean", "splade", "last-token"],
    },
    "--max-concurrent-requests": {"takes": "value", "type": "int"},
    "--max-batch-tokens": {"takes": "value", "type": "int"},
    "--max-batch-requests": {"takes": "value", "type": "int"},
    "--max-client-batch-size": {"takes": "value", "type": "int"},
    "--auto-truncate": {"takes": "optional_value", "type": "bool"},
    "--default-prompt-name": {"takes": "value", "type": "str"},
    "--default-prompt": {"takes": "value", "type": "str"},
    "--dense-path": {"takes": "value", "type": "str"},
    "--hf-api-token": {"takes": "value", "type": "str"},
    "--hf-token": {"takes": "value", "type": "str"},
    "--hostname": {"takes": "value", "type": "str"},
    "--port": {"takes": "value", "type": "int"},
    "--uds-path": {"takes": "value", "type": "str"},
    "--huggingface-hub-cache": {"takes": "value", "type": "str"},
    "--payload-limit": {"takes": "value", "type": "int"},
    "--api-key": {"takes": "value", "type": "str"},
    "--json-output": {"takes": "switch", "type": "bool"},
    "--disable-spans": {"takes": "switch", "type": "bool"},
    "--otlp-endpoint": {"takes": "value", "type": "str"},
    "--otlp-service-name": {"takes": "value", "type": "str"},
    "--prometheus-port": {"takes": "value", "type": "int"},
    "--cors-allow-origin": {"takes": "value", "type": "str", "repeat": True},
}

TGI: dict[str, dict[str, Any]] = {
    "--model-id": {"takes": "value", "type": "str"},
    "--revision": {"takes": "value", "type": "str"},
    "--validation-workers": {"takes": "value", "type": "int"},
    "--sharded": {"takes": "value", "type": "bool"},
    "--num-shard": {"takes": "value", "type": "int"},
    "--quantize": {
        "takes": "value",
        "type": "enum",
        "choices": [
            "awq",
            "compressed-tensors",
            "eetq",
            "exl2",
            "gptq",
            "marlin",
            "bitsandbytes",
            "bitsandbytes-nf4",
            "bitsandbytes-fp4",
            "fp8",
        ],
    },
    "--speculate": {"takes": "value", "type": "int"},
    "--dtype": {"takes": "value", "type": "enum", "choices": ["float16", "bfloat16"]},
    "--kv-cache-dtype": {"takes": "value", "type": "enum", "choices": ["fp8_e4m3fn", "fp8_e5m2"]},
    "--trust-remote-code": {"takes": "switch", "type": "bool"},
    "--max-concurrent-requests": {"takes": "value", "type": "int"},
    "--max-best-of": {"takes": "value", "type": "int"},
    "--max-stop-sequences": {"takes": "value", "type": "int"},
    "--max-top-n-tokens": {"takes": "value", "type": "int"},
    "--max-input-tokens": {"takes": "value", "type": "int"},
    "--max-input-length": {"takes": "value", "type": "int"},
    "--max-total-tokens": {"takes": "value", "type": "int"},
    "--waiting-served-ratio": {"takes": "value", "type": "float"},
    "--max-batch-prefill-tokens": {"takes": "value", "type": "int"},
    "--max-batch-total-tokens": {"takes": "value", "type": "int"},
    "--max-waiting-tokens": {"takes": "value", "type": "int"},
    "--max-batch-size": {"takes": "value", "type": "int"},
    "--cuda-graphs": {"takes": "value", "type": "int", "repeat": True, "delimiter": ","},
    "--hostname": {"takes": "value", "type": "str"},
    "--port": {"takes": "value", "type": "int"},
    "--prometheus-port": {"takes": "value", "type": "int"},
    "--shard-uds-path": {"takes": "value", "type": "str"},
    "--master-addr": {"takes": "value", "type": "str"},
    "--master-port": {"takes": "value", "type": "int"},
    "--huggingface-hub-cache": {"takes": "value", "type": "str"},
    "--weights-cache-override": {"takes": "value", "type": "str"},
    "--disable-custom-kernels": {"takes": "switch", "type": "bool"},
    "--cuda-memory-fraction": {"takes": "value", "type": "float"},
    "--rope-scaling": {"takes": "value", "type": "enum", "choices": ["linear", "dynamic"]},
    "--rope-factor": {"takes": "value", "type": "float"},
    "--json-output": {"takes": "switch", "type": "bool"},
    "--otlp-endpoint": {"takes": "value", "type": "str"},
    "--otlp-service-name": {"takes": "value", "type": "str"},
    "--cors-allow-origin": {"takes": "value", "type": "str", "repeat": True},
    "--api-key": {"takes": "value", "type": "str"},
    "--watermark-gamma": {"takes": "value", "type": "float"},
    "--watermark-delta": {"takes": "value", "type": "float"},
    "--ngrok": {"takes": "switch", "type": "bool"},
    "--ngrok-authtoken": {"takes": "value", "type": "str"},
    "--ngrok-edge": {"takes": "value", "type": "str"},
    "--tokenizer-config-path": {"takes": "value", "type": "str"},
    "--disable-grammar-support": {"takes": "switch", "type": "bool"},
    "--env": {"takes": "switch", "type": "bool"},
    "--max-client-batch-size": {"takes": "value", "type": "int"},
    "--lora-adapters": {"takes": "value", "type": "str"},
    "--usage-stats": {"takes": "value", "type": "enum", "choices": ["on", "off", "no-stack"]},
    "--payload-limit": {"takes": "value", "type": "int"},
    "--enable-prefill-logprobs": {"takes": "switch", "type": "bool"},
    "--graceful-termination-timeout": {"takes": "value", "type": "int"},
}


class Refused(Exception):
    """What clap would print before the program exits with status 2."""


def check(argv: list[str], table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Parse `argv` as clap would with these arguments: flag (dashes → underscores) → value
    (True for a switch, a list for an appending flag)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        flag = argv[i]
        spec = table.get(flag)
        if spec is None:
            raise Refused(f"unexpected argument {flag!r}")
        key = flag[2:].replace("-", "_")
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if key in out and not spec.get("repeat"):
            raise Refused(f"the argument {flag!r} cannot be used multiple times")
        if spec["takes"] == "switch":
            out[key], i = True, i + 1
            continue
        if spec["takes"] == "optional_value" and (nxt is None or nxt.startswith("--")):
            out[key], i = True, i + 1
            continue
        if nxt is None or nxt.startswith("--"):
            raise Refused(f"a value is required for {flag!r} but none was supplied")
        values = nxt.split(spec["delimiter"]) if spec.get("delimiter") else [nxt]
        parsed = [_value(flag, spec, v) for v in values]
        if spec.get("repeat"):
            out.setdefault(key, []).extend(parsed)
        else:
            out[key] = parsed[0]
        i += 2
    return out


def _value(flag: str, spec: dict[str, Any], text: str) -> Any:
    kind = spec["type"]
    try:
        if kind == "int":
            if not text.isdigit():
                raise ValueError(text)
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise Refused(f"invalid value {text!r} for {flag!r}: not a {kind}") from None
    if kind == "bool":
        if text not in ("true", "false"):
            raise Refused(f"invalid value {text!r} for {flag!r}: [possible values: true, false]")
        return text == "true"
    if kind == "enum" and text not in spec["choices"]:
        raise Refused(
            f"invalid value {text!r} for {flag!r}: [possible values: {', '.join(spec['choices'])}]"
        )
    return text
