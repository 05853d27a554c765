"""KV cache per token and the engine's own memory (activations, runtime, CUDA graphs).

The overhead model follows how vLLM budgets memory: it profiles one forward pass of
`max_num_batched_tokens` tokens, adds memory PyTorch does not see (CUDA context, NCCL,
cuBLAS workspaces), reserves the CUDA-graph pool, and gives the rest of
`gpu_memory_utilization × memory` to the KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from a3s_core.sizing.architecture import Arch, ceil_div

GiB = 2**30

RUNTIME_TP1 = int(0.25 * GiB)  # outside PyTorch on one GPU (CUDA context, cuBLAS)
RUNTIME_TP = int(0.6 * GiB)  # …plus NCCL buffers and the custom all-reduce when TP > 1
CUDA_GRAPHS_DENSE = int(0.5 * GiB)
CUDA_GRAPHS_MOE = int(1.0 * GiB)
DEFAULT_BATCHED_TOKENS = 8192  # vLLM's chunked-prefill budget on ≥70 GiB GPUs (2048 on smaller)
DEFAULT_MAX_SEQS = 256  # vLLM max_num_seqs: the sampler's logits are (seqs × vocab) fp32
ENCODER_BATCH_TOKENS = 16384  # text-embeddings-inference max_batch_tokens default
BLOCK_TOKENS = 16  # vLLM KV block size; a sequence occupies whole blocks


@dataclass(frozen=True)
class KvCache:
    per_token: int  # whole model, all ranks together (MLA: one rank's copy)
    formula: str
    kv_bytes: int = 2

    def per_token_per_gpu(self, a: Arch, tp: int) -> int:
        """MLA's latent is not split across ranks; GQA heads split until TP exceeds them."""
        if a.kind == "encoder":
            return 0
        if a.mla:
            return self.per_token
        heads_per_rank = max(1, a.num_kv_heads // tp)  # TP > kv heads: heads are replicated
        return 2 * a.num_layers * heads_per_rank * a.head_dim * self.kv_bytes


def kv_cache(a: Arch, kv_bytes: int) -> KvCache:
    if a.kind == "encoder":
        return KvCache(0, "encoder: no KV cache", kv_bytes)
    if a.mla:
        width = a.mla.kv_lora_rank + a.mla.qk_rope_head_dim
        per = a.num_layers * width * kv_bytes
        return KvCache(
            per,
            f"MLA: {a.num_layers} layers × ({a.mla.kv_lora_rank} kv_lora_rank + "
            f"{a.mla.qk_rope_head_dim} rope dims) × {kv_bytes} B = {per:,} B "
            "(the latent is shared by all heads and replicated on every TP rank)",
            kv_bytes,
        )
    per = 2 * a.num_layers * a.num_kv_heads * a.head_dim * kv_bytes
    return KvCache(
        per,
        f"2 (K and V) × {a.num_layers} layers × {a.num_kv_heads} kv heads × {a.head_dim} "
        f"head dim × {kv_bytes} B = {per:,} B",
        kv_bytes,
    )


def sequence_tokens(tokens: int) -> int:
    """Tokens a sequence really occupies: whole KV blocks."""
    return ceil_div(tokens, BLOCK_TOKENS) * BLOCK_TOKENS


@dataclass(frozen=True)
class Overhead:
    runtime: int
    activations: int
    sampler: int
    cuda_graphs: int

    @property
    def total(self) -> int:
        return self.runtime + self.activations + self.sampler + self.cuda_graphs

    def describe(self) -> str:
        g = GiB
        return (f"runtime {self.runtime / g:.2f} + activations {self.activations / g:.2f} + "
                f"sampler {self.sampler / g:.2f} + CUDA graphs {self.cuda_graphs / g:.2f} "
                f"= {self.total / g:.2f} GiB")


def overhead_per_gpu(
    a: Arch,
    tp: int,
    act_bytes: int = 2,
    batched_tokens: int = DEFAULT_BATCHED_TOKENS,
    max_seqs: int = DEFAULT_MAX_SEQS,
    cuda_graphs: bool = True,
) -> Overhead:
    """Peak memory one rank needs besides weights and KV cache."""
    h = a.hidden_size
    runtime = RUNTIME_TP if tp > 1 else RUNTIME_TP1
    if a.kind == "encoder":
        # one padded batch through the widest layer; no sampler, no graphs
        act = ENCODER_BATCH_TOKENS * (4 * h + a.intermediate_size) * act_bytes
        return Overhead(runtime, act, 0, 0)
    # Live tensors at the peak of one layer: residual + normed hidden, the fused QKV output
    # and the MLP's gate/up output plus its activation (per rank), for every batched token.
    qkv = (a.num_attention_heads + 2 * a.num_kv_heads) * a.head_dim // tp
    dense_inter = a.intermediate_size // tp if a.moe_layers < a.num_layers else 0
    per_token = 4 * h + qkv + 3 * dense_inter
    if a.moe:
        # fused-MoE scratch: every token routed to top-k experts, gate/up + act + down output
        inter = a.moe.expert_intermediate_size // tp
        per_token = max(per_token, a.moe.experts_per_token * (3 * inter + h) + 2 * h)
    act = batched_tokens * per_token * act_bytes
    sampler = max_seqs * a.vocab_size * 4 * 2  # fp32 logits and probabilities
    graphs = 0
    if cuda_graphs:
        graphs = CUDA_GRAPHS_MOE if a.moe else CUDA_GRAPHS_DENSE
    return Overhead(runtime, act, sampler, graphs)


LLAMA_CPP_UBATCH = 512  # llama.cpp's n_ubatch: tokens per compute-graph evaluation
LLAMA_CPP_BASE = 64 * 2**20  # process, ggml context and tokenizer


def llama_cpp_memory(a: Arch, weight_bytes: int, kv_per_token: int, n_ctx: int) -> tuple[int, str]:
    """What llama.cpp (CPU, or GPU offload) needs for one server: the mapped weights, an
    f16 KV cache of n_ctx tokens, and the f32 compute buffer of one micro-batch."""
    qkv = (a.num_attention_heads + 2 * a.num_kv_heads) * a.head_dim
    compute = LLAMA_CPP_UBATCH * (4 * a.hidden_size + qkv + 3 * a.intermediate_size
                                  + a.vocab_size) * 4
    kv = kv_per_token * n_ctx
    total = weight_bytes + kv + compute + LLAMA_CPP_BASE
    return total, (f"llama.cpp: weights {weight_bytes:,} B + KV {n_ctx:,} tokens × "
                   f"{kv_per_token:,} B + compute buffer {compute:,} B + base "
                   f"{LLAMA_CPP_BASE:,} B = {total / GiB:.3f} GiB")
