"""TGI: text-generation-inference for LLMs, text-embeddings-inference for embedders."""

from __future__ import annotations

from a3s_core.contracts import Engine, LaunchContext
from a3s_core.contracts.argv import check_context
from a3s_core.contracts.metrics import Samples
from a3s_core.types import LoadFigures, ModelProfile, SizingPlan
from a3s_engine_tgi.embeddings import tei_argv
from a3s_engine_tgi.launcher import Launcher

DECODER_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})
# TEI has no /v1/models; the gateway answers it from the deployment's own name.
ENCODER_PATHS = frozenset({"/v1/embeddings"})
# What parse_metrics reads (TGI, then TEI); Samples.parse passes over every other line.
METRICS = ("tgi_queue_size", "tgi_batch_current_size", "te_queue_size", "te_request_count",
           "te_request_success", "te_request_failure")


class TgiEngine(Engine):
    """Hugging Face's servers. `image` is TGI's; `embedding_image` is TEI's universal CUDA
    build (kernels for Turing through Blackwell), used when the model is an encoder. TEI
    1.9 is the first with `--served-model-name`."""

    name = "tgi"
    image = "ghcr.io/huggingface/text-generation-inference:3.3.5"
    embedding_image = "ghcr.io/huggingface/text-embeddings-inference:cuda-1.9.3"
    port = 8080
    health_path = "/health"
    # TGI answers /health only after warm-up; TEI only once the model is loaded.
    ready_path = "/health"
    openai_paths = DECODER_PATHS | ENCODER_PATHS
    has_metrics = True
    needs_gpu = True
    serves_embeddings = True

    def __init__(self, image: str | None = None, embedding_image: str | None = None) -> None:
        super().__init__(image)
        if embedding_image:
            self.embedding_image = embedding_image

    def openai_paths_for(self, kind: str) -> frozenset[str]:
        return ENCODER_PATHS if kind == "encoder" else DECODER_PATHS

    def image_for(self, ctx: LaunchContext) -> str:
        return self.embedding_image if ctx.kind == "encoder" else self.image

    def keeps_entrypoint(self, ctx: LaunchContext) -> bool:
        # TEI's ENTRYPOINT picks the router binary built for the GPU; TGI's launcher is
        # named in full.
        return ctx.kind == "encoder"

    def check(self, profile: ModelProfile, plan: SizingPlan | None) -> str | None:
        method = profile.quantization.method if profile.quantization else ""
        if profile.source == "gguf" or method.startswith("gguf"):
            return (
                f"TGI cannot serve {profile.model!r}: it is a GGUF file; serve the safetensors "
                "checkpoint or use engine 'ollama'"
            )
        encoder = profile.kind == "encoder" or (plan is not None and plan.kind == "encoder")
        fewest = min((c.gpu_count for c in plan.candidates), default=1) if plan else 1
        if encoder and fewest > 1:
            return (
                f"text-embeddings-inference (engine tgi for embedding models) keeps a model on "
                f"one GPU, but {profile.model!r} needs at least {fewest} GPUs on every GPU type; "
                "use engine 'vllm'"
            )
        return None

    def command(self, ctx: LaunchContext) -> list[str]:
        check_context(ctx, self.name)
        if ctx.kind == "encoder":
            return tei_argv(ctx)
        return Launcher.argv(ctx)

    def parse_metrics(self, text: str) -> LoadFigures:
        samples = Samples.parse(text, self.name, METRICS)
        if samples.has("tgi_queue_size") or samples.has("tgi_batch_current_size"):
            # TGI does not expose KV-cache occupancy.
            return LoadFigures(
                waiting=samples.total("tgi_queue_size"),
                running=samples.total("tgi_batch_current_size"),
            )
        if samples.has("te_queue_size") or samples.has("te_request_count"):
            return LoadFigures(
                waiting=samples.total("te_queue_size"), running=tei_in_flight(samples)
            )
        return LoadFigures()


def tei_in_flight(samples: Samples) -> float | None:
    """TEI has no gauge of running requests; accepted minus answered is the same figure.
    (`te_queue_size` counts queued inputs — a batch request queues one per input.)"""
    accepted = samples.total("te_request_count")
    if accepted is None:
        return None
    answered = (samples.total("te_request_success") or 0) + (
        samples.total("te_request_failure") or 0
    )
    return max(accepted - answered, 0.0)
