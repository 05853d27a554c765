"""A tiny random-weight llama model as a GGUF file, for tests that need a real engine
without a model hub: `write_tiny_llama_gguf(path)` writes a few hundred KB that llama.cpp
loads and generates from in well under a second on one CPU core.

    from a3s_engine_llamacpp.testing import write_tiny_llama_gguf
    tiny = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    tiny.parameters   # the exact count, as the GGUF header will report it

Why it looks the way it does:
- The vocabulary is SentencePiece-shaped (`tokenizer.ggml.model = "llama"`): `<unk>`, `<s>`,
  `</s>`, then the 256 byte tokens `<0x00>`…`<0xFF>` (llama.cpp aborts loading an SPM vocab
  without them: byte fallback looks them up for every character it cannot merge), then word
  pieces with `▁` for a leading space, each word with all its prefixes so SPM's bottom-up
  merging can reach it.
- `output.weight` is written (not tied to the embeddings) with zero rows for the control and
  byte tokens: every other token's logit is a random value, so greedy decoding picks word
  pieces — the text is gibberish but valid UTF-8, and generation runs to `max_tokens` rather
  than stopping at a random `</s>`.
- Matrices are f16, norms f32, as llama.cpp's own converter writes an F16 model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gguf
import numpy as np

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A Zephyr-style template (llama-cpp-python renders it with Jinja2 for chat requests)."""

_COMMON_WORDS = (
    "the of and to in is it that was for on are as with his they at be this have from or "
    "one had by word but not what all were we when your can said there use an each which she "
    "do how their if will up other about out many then them these so some her would make like "
    "him into time has look two more write go see number no way could people my than first "
    "water been call who oil its now find long down day did get come made may part hello world "
    "model token engine server llama tiny platform gateway replica"
)
WORDS = tuple(_COMMON_WORDS.split())
PUNCTUATION = list(".,!?;:'\"-()")


@dataclass(frozen=True)
class TinyModel:
    """What was written: enough for a test to check what the platform reads back."""

    path: Path
    parameters: int
    """Exact number of weights over all tensors (what the GGUF header adds up to)."""
    vocab_size: int
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    intermediate_size: int
    context_length: int
    file_bytes: int


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of the SentencePiece-style vocabulary."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    scores = [0.0] * len(tokens)

    pieces: list[str] = ["▁"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    chars += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    chars += [str(d) for d in range(10)] + PUNCTUATION
    pieces += chars
    for word in WORDS:
        for end in range(1, len(word) + 1):
            pieces.append("▁" + word[:end])
    for rank, piece in enumerate(dict.fromkeys(pieces)):  # first occurrence, in order
        tokens.append(piece)
        # SPM merges the pair whose result scores highest: longer pieces win, earlier first.
        scores.append(len(piece) - rank * 1e-3)
        types.append(gguf.TokenType.NORMAL)
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama_gguf(
    path: str | Path,
    *,
    layers: int = 2,
    hidden_size: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    context_length: int = 512,
    dtype: Literal["f16", "f32"] = "f16",
    seed: int = 0,
) -> TinyModel:
    """Write a random-weight llama GGUF to `path` (parent directories are created)."""
    if hidden_size % heads or heads % kv_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must divide by heads ({heads}) and heads by "
            f"kv_heads ({kv_heads})"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = tiny_vocab()
    vocab = len(tokens)
    head_dim = hidden_size // heads
    rng = np.random.default_rng(seed)
    matrix_type = np.float16 if dtype == "f16" else np.float32

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy order is (out, in); the writer reverses it into ggml's ne = [in, out].
        return (rng.standard_normal((rows, cols)) * 0.1).astype(matrix_type)

    def norm() -> np.ndarray:
        return np.ones(hidden_size, dtype=np.float32)

    tensors: dict[str, np.ndarray] = {"token_embd.weight": matrix(vocab, hidden_size)}
    for i in range(layers):
        tensors |= {
            f"blk.{i}.attn_norm.weight": norm(),
            f"blk.{i}.attn_q.weight": matrix(heads * head_dim, hidden_size),
            f"blk.{i}.attn_k.weight": matrix(kv_heads * head_dim, hidden_size),
            f"blk.{i}.attn_v.weight": matrix(kv_heads * head_dim, hidden_size),
            f"blk.{i}.attn_output.weight": matrix(hidden_size, heads * head_dim),
            f"blk.{i}.ffn_norm.weight": norm(),
            f"blk.{i}.ffn_gate.weight": matrix(intermediate_size, hidden_size),
            f"blk.{i}.ffn_up.weight": matrix(intermediate_size, hidden_size),
            f"blk.{i}.ffn_down.weight": matrix(hidden_size, intermediate_size),
        }
    output = matrix(vocab, hidden_size)
    output[[i for i, t in enumerate(types) if t != gguf.TokenType.NORMAL]] = 0
    tensors |= {"output_norm.weight": norm(), "output.weight": output}

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("a3s-tiny-llama")
    writer.add_description("random weights, for tests only")
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32
    )
    writer.add_vocab_size(vocab)
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden_size)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return TinyModel(
        path=path,
        parameters=sum(int(t.size) for t in tensors.values()),
        vocab_size=vocab,
        layers=layers,
        hidden_size=hidden_size,
        heads=heads,
        kv_heads=kv_heads,
        intermediate_size=intermediate_size,
        context_length=context_length,
        file_bytes=path.stat().st_size,
    )
