"""`text-embeddings-router` (text-embeddings-inference, TEI) arguments for embedding models.

TGI itself does not serve embeddings; Hugging Face's answer for them is TEI, so `tgi`
deployments of encoder models run TEI. TEI keeps the model on one GPU (no sharding), takes
its sequence length from the model, and has no memory-fraction setting.

Inside the `cuda-` image there is no `text-embeddings-router`: the image's ENTRYPOINT
(`cuda-all-entrypoint.sh`) asks nvidia-smi for the compute capability and execs
`text-embeddings-router-75/-80/-90/-100/-120`. So in a container only the arguments are
rendered and the ENTRYPOINT stays; a local install (`cargo install`) has the plain name.
"""

from __future__ import annotations

from a3s_core.contracts import LaunchContext
from a3s_core.contracts.argv import Option, merge, user_options
from a3s_core.errors import InvalidRequest
from a3s_engine_tgi.render import render_clap

RESERVED = frozenset(
    {"model", "model_id", "served_model_name", "host", "hostname", "port", "api_key"}
)

# TEI's --dtype takes float16 or float32; bfloat16 / auto leave TEI's own choice (float16
# on GPUs).
DTYPE = {"float16": "float16", "half": "float16", "float32": "float32", "float": "float32"}


EXECUTABLE = "text-embeddings-router"


def tei_argv(ctx: LaunchContext) -> list[str]:
    """The arguments, preceded by the executable unless they go to the image's ENTRYPOINT."""
    if ctx.tensor_parallel_size != 1:
        raise InvalidRequest(
            "text-embeddings-inference serves a model on one GPU; tensor_parallel_size must be "
            f"1 for an embedding model on engine tgi, got {ctx.tensor_parallel_size}",
            field="tensor_parallel_size",
            value=ctx.tensor_parallel_size,
        )
    own: list[Option] = [
        ("--model-id", [ctx.model]),
        ("--served-model-name", [ctx.served_model_name]),
        ("--hostname", [ctx.host]),
        ("--port", [str(ctx.port)]),
    ]
    if dtype := DTYPE.get(ctx.dtype):
        own.append(("--dtype", [dtype]))
    user = user_options(ctx.extra_args, engine="tgi", reserved=RESERVED, render=render_clap)
    args = merge(own, user, {})
    return args if ctx.in_container else [EXECUTABLE, *args]
