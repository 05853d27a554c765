"""A3S engine simulator: an OpenAI-compatible HTTP server that behaves like an inference
engine on a given GPU (queueing, latency from GPU and model figures, engine-style /metrics).

Run it with `python -m a3s_engine_sim --port 8000 ...` (see `--help`). This package stays
import-light on purpose (no pydantic, no platform core): the `sim` runtime starts one process
per replica and time-to-ready matters. The platform hooks live in `a3s_engine_sim.plugin`.
"""

__version__ = "0.1.0"
