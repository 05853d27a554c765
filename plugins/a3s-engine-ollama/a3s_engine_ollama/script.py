"""The replica's entry script: fetch the model, then serve it under the deployment's name.

`ollama serve` answers before it has any model, and `ollama pull` needs a running server.
So the weights are fetched by a private server on another loopback address (127.0.0.2 is
loopback on Linux, and no probe or client looks there), which is then stopped; only then
does the real server bind the replica's address. Readiness therefore means "the model is on
disk and being served", never "a server that will answer 404 for the next twenty minutes".
"""

from __future__ import annotations

import shlex

from a3s_core.contracts import LaunchContext
from a3s_engine_ollama.binary import BUILD_SCRIPT

WAIT_FOR_SERVER_S = 120


def private_host(host: str) -> str:
    return "127.0.0.3" if host == "127.0.0.2" else "127.0.0.2"


def address(host: str, port: int) -> str:
    """OLLAMA_HOST form: `host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_host(host: str) -> str:
    """Where a client in the same container reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def entry_script(ctx: LaunchContext, source: str, *, from_file: bool, host: str | None = None,
                 ollama: str = "ollama") -> str:
    """POSIX sh. `source` is an Ollama tag to pull, or a GGUF path when `from_file`; the
    server binds `host` (default `ctx.host`); `ollama` is how the binary is called (a bare
    name is looked up on PATH, and its absence reported)."""
    q = shlex.quote
    host = ctx.host if host is None else host
    name = q(ctx.served_model_name)
    fetch = q(address(private_host(host), ctx.port))
    serve = q(address(host, ctx.port))
    local = q(address(client_host(host), ctx.port))
    o = q(ollama)
    if from_file:
        # A local GGUF becomes a model through a one-line Modelfile.
        obtain = (
            f'modelfile="$(mktemp)"; printf "FROM %s\\n" {q(source)} > "$modelfile"\n'
            f'OLLAMA_HOST={fetch} {o} create {name} -f "$modelfile"'
        )
    else:
        # The alias lets clients (and the gateway) say the deployment name as `model`.
        obtain = (
            f"OLLAMA_HOST={fetch} {o} pull {q(source)}\n"
            f"OLLAMA_HOST={fetch} {o} cp {q(source)} {name}"
        )
    loaded = q(f"{ctx.served_model_name}:latest")
    failed = q(f"a3s: preloading {ctx.served_model_name} failed; it loads on first use")
    # Load the weights now rather than on the first request. The CLI has no load-only verb
    # (`ollama run <name> ""` answers an empty prompt, which a base model does until the
    # context ends, over and over with context shifting: a slot held forever), so the
    # answer is cut off once `ollama ps` lists the model; it stays loaded (keep-alive -1).
    preload = (
        f"""OLLAMA_HOST={local} {o} run {name} "" >/dev/null 2>&1 &
preload=$!
n=0
until OLLAMA_HOST={local} {o} ps 2>/dev/null | awk 'NR > 1 {{print $1}}' | grep -qx {loaded}; do
  n=$((n + 1))
  if [ "$n" -ge {WAIT_FOR_SERVER_S} ] || ! kill -0 "$preload" 2>/dev/null; then
    echo {failed} >&2; break
  fi
  sleep 1
done
kill "$preload" 2>/dev/null || true; wait "$preload" 2>/dev/null || true"""
        if ctx.kind != "encoder"
        else ": embedding models load on first use"
    )
    missing = q(f"a3s: {ollama} is not installed on this machine (install Ollama, or build "
                f"it with {BUILD_SCRIPT})")
    return f"""set -eu
if ! command -v {q(ollama)} >/dev/null 2>&1; then
  echo {missing} >&2
  exit 127
fi
wait_up() {{
  n=0
  until OLLAMA_HOST="$1" {o} list >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge {WAIT_FOR_SERVER_S} ]; then echo "a3s: ollama did not start on $1" >&2; exit 1; fi
    sleep 1
  done
}}
OLLAMA_HOST={fetch} {o} serve &
fetcher=$!
wait_up {fetch}
{obtain}
kill "$fetcher" 2>/dev/null || true; wait "$fetcher" || true
OLLAMA_HOST={serve} {o} serve &
server=$!
trap 'kill -TERM "$server" 2>/dev/null' TERM INT
wait_up {local}
{preload}
set +e
wait "$server"; status=$?
wait "$server" 2>/dev/null
exit "$status"
"""
