"""GGUF files (llama.cpp, Ollama): parameters, bytes per tensor type and architecture from
the header with the `gguf` package. Tensor data is memory-mapped, never read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gguf

from a3s_core.errors import ModelNotFound
from a3s_core.sizing.architecture import fmt_int
from a3s_core.types import ExistingQuantization, ModelProfile, MoE

SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
ENCODER_ARCHS = frozenset({"bert", "nomic-bert", "jina-bert-v2", "modern-bert"})
HF_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
           "mistral": "MistralForCausalLM", "gemma2": "Gemma2ForCausalLM", "bert": "BertModel",
           "qwen2moe": "Qwen2MoeForCausalLM", "qwen3moe": "Qwen3MoeForCausalLM",
           "deepseek2": "DeepseekV3ForCausalLM", "phi3": "Phi3ForCausalLM"}


def gguf_files(path: Path) -> list[Path]:
    """The GGUF file(s) a path stands for: the file, all parts of a split file, or the one
    model file of a directory (mmproj projector files are not the model)."""
    if path.is_file():
        m = SPLIT_RE.search(path.name)
        if m:
            stem = path.name[: m.start()]
            return sorted(path.parent.glob(f"{stem}-*-of-{m.group(2)}.gguf"))
        return [path]
    files = [p for p in sorted(path.glob("*.gguf")) if "mmproj" not in p.name.lower()]
    first_parts = [p for p in files if not SPLIT_RE.search(p.name) or "-00001-of-" in p.name]
    if len(first_parts) > 1:
        names = ", ".join(p.name for p in first_parts[:4])
        raise ModelNotFound(
            f"model directory {str(path)!r} holds several GGUF models ({names}); give the path "
            "of the one .gguf file to serve"
        )
    return gguf_files(first_parts[0]) if first_parts else []


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    f = reader.get_field(key)
    return None if f is None else f.contents()


def gguf_profile(path: Path, model: str) -> ModelProfile:
    files = gguf_files(path)
    if not files:
        raise ModelNotFound(f"model path {model!r} has no .gguf file; give a GGUF file or a "
                            "directory with config.json")
    try:
        readers = [gguf.GGUFReader(str(f), "r") for f in files]
    except (ValueError, OSError) as exc:
        raise ModelNotFound(f"model file {model!r} is not a readable GGUF file ({exc}); "
                            "give a valid .gguf file") from exc
    head = readers[0]
    arch = str(_field(head, "general.architecture") or "llama")

    def meta(name: str, default: Any = None) -> Any:
        value = _field(head, f"{arch}.{name}")
        return default if value is None else value

    by_type: dict[str, int] = {}
    bytes_by_type: dict[str, int] = {}
    params = nbytes = 0
    vocab = 0
    for r in readers:
        for t in r.tensors:
            name = t.tensor_type.name
            by_type[name] = by_type.get(name, 0) + int(t.n_elements)
            bytes_by_type[name] = bytes_by_type.get(name, 0) + int(t.n_bytes)
            params += int(t.n_elements)
            nbytes += int(t.n_bytes)
            if t.name == "token_embd.weight":
                vocab = int(t.shape[-1])
    tokens = _field(head, "tokenizer.ggml.tokens")
    vocab = int(meta("vocab_size", 0) or vocab or (len(tokens) if tokens else 0))
    hidden = int(meta("embedding_length"))
    heads = int(meta("attention.head_count"))
    kv_heads = meta("attention.head_count_kv", heads)
    kv_heads = int(max(kv_heads) if isinstance(kv_heads, list) else kv_heads)
    head_dim = int(meta("attention.key_length", hidden // heads))
    ffn = meta("feed_forward_length", 4 * hidden)
    ffn = int(max(ffn) if isinstance(ffn, list) else ffn)
    moe = None
    if meta("expert_count"):
        moe = MoE(num_experts=int(meta("expert_count")),
                  experts_per_token=int(meta("expert_used_count", 2)),
                  expert_intermediate_size=int(meta("expert_feed_forward_length", ffn)),
                  shared_experts=int(meta("expert_shared_count", 0)),
                  first_dense_layers=int(meta("leading_dense_block_count", 0)))
    file_type = _field(head, "general.file_type")
    try:
        ftype = gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_") \
            if file_type is not None else max(bytes_by_type, key=lambda k: bytes_by_type[k])
    except ValueError:
        ftype = f"type{file_type}"
    bits = max(1, round(nbytes * 8 / max(params, 1)))
    notes = [
        f"exact count from the GGUF header ({len(files)} file{'s' if len(files) > 1 else ''}): "
        + ", ".join(f"{k} {fmt_int(v)} params / {fmt_int(bytes_by_type[k])} B"
                    for k, v in sorted(by_type.items()))
    ]
    return ModelProfile(
        model=model,
        source="gguf",
        architecture=HF_ARCH.get(arch, arch),
        model_type=arch,
        kind="encoder" if arch in ENCODER_ARCHS else "decoder",
        parameters=params,
        parameters_by_dtype=by_type,
        embedding_parameters=vocab * hidden * (1 if "output.weight" not in
                                               {t.name for t in head.tensors} else 2),
        checkpoint_dtype="float16",
        weight_bytes=nbytes,
        num_layers=int(meta("block_count")),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=ffn,
        vocab_size=vocab,
        context_length=int(meta("context_length", 2048)),
        tie_word_embeddings="output.weight" not in {t.name for r in readers for t in r.tensors},
        moe=moe,
        quantization=ExistingQuantization(method=f"gguf:{ftype}", bits=bits),
        local_path=str(files[0]),
        notes=notes,
    )
