"""The Hugging Face Hub as a profile source: config.json plus safetensors headers.

Honours HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE (read at call time, so a running server
follows its environment), times each request out after A3S_HF_TIMEOUT_S seconds (default
10; the whole lookup after twice that), and caches answers in-process. Failures become
one-sentence ModelNotFound / ModelUnavailable errors.

The hub client retries a failed connection five times with back-off (about 25 s, and a
"Retrying in 8s" warning per attempt and file). So before a lookup the endpoint gets one
request with no retries: if it cannot be reached the lookup fails at once (HubUnreachable),
and for the next UNREACHABLE_TTL_S seconds every lookup on that endpoint fails without
trying; the outage is logged once, and once more when the endpoint answers again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import huggingface_hub
from huggingface_hub import errors as hf_errors

from a3s_core.errors import HubUnreachable, ModelNotFound, ModelUnavailable
from a3s_core.sizing.profiles import profile_from_config
from a3s_core.sizing.tensors import profile_from_tensors
from a3s_core.types import ModelProfile

# huggingface_hub has used requests, httpx and now httpx2; recognise any of their errors
NETWORK_MODULES = frozenset({"httpx", "httpx2", "httpcore", "requests", "urllib3"})
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_ENDPOINT = "https://huggingface.co"
UNREACHABLE_TTL_S = 10.0  # how long an endpoint found unreachable is not tried again
PROBE_CONNECT_S = 3.0  # connect timeout of the reachability probe (at most A3S_HF_TIMEOUT_S)

log = logging.getLogger(__name__)
_cache: dict[tuple[str, str, str | None], ModelProfile] = {}
_down: dict[str, tuple[float, str]] = {}  # endpoint → (when it was last probed, why down)
_lock = threading.Lock()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def timeout_s() -> float:
    raw = os.environ.get("A3S_HF_TIMEOUT_S", "10")
    try:
        return max(0.1, float(raw))
    except ValueError:
        return 10.0


def is_repo_id(model: str) -> bool:
    return bool(REPO_ID.match(model))


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _down.clear()


def probe(endpoint: str) -> str | None:
    """One request to the endpoint, no retries: None when anything answers (any HTTP
    status will do), else why not. Follows the proxy environment, as the hub client does."""
    timeout = timeout_s()
    try:
        httpx.head(endpoint, timeout=httpx.Timeout(timeout, connect=min(PROBE_CONNECT_S,
                                                                         timeout)))
    except httpx.TransportError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except ValueError as exc:  # not a URL at all
        return f"HF_ENDPOINT is not a usable URL ({exc})"
    return None


def _check_reachable(endpoint: str, model: str) -> None:
    """Fail fast while the endpoint is down; log the outage once (and its end)."""
    now = time.monotonic()
    with _lock:
        down = _down.get(endpoint)
    if down is not None and now - down[0] < UNREACHABLE_TTL_S:
        reason = down[1]
    else:
        found = probe(endpoint)
        with _lock:
            if found is None:
                if _down.pop(endpoint, None) is not None:
                    log.info("the Hugging Face Hub at %s answers again", endpoint)
                return
            reason = found
            if endpoint not in _down:
                log.warning("the Hugging Face Hub at %s cannot be reached (%s); models that "
                            "are not in the knowledge base or a local path cannot be sized "
                            "until it answers", endpoint, reason)
            _down[endpoint] = (now, reason)
    raise HubUnreachable(
        f"the Hugging Face Hub at {endpoint} cannot be reached to size model {model!r} "
        f"({reason}); check network access or HF_ENDPOINT, set HF_HUB_OFFLINE=1 to use the "
        "local cache only, or give a local model path"
    )


def hub_profile(model: str, revision: str | None = None) -> ModelProfile | None:
    if not is_repo_id(model):
        return None
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    key = (endpoint, model, revision)
    with _lock:
        hit = _cache.get(key)
    if hit is None:
        if not _truthy(os.environ.get("HF_HUB_OFFLINE")):
            _check_reachable(endpoint, model)
        hit = _with_deadline(model, endpoint, lambda: _fetch(model, revision, endpoint))
        with _lock:
            _cache[key] = hit
    return hit.model_copy(deep=True)


def _with_deadline(model: str, endpoint: str, fetch: Callable[[], ModelProfile]) -> ModelProfile:
    """Run the lookup with an overall deadline: the hub client retries failed connections
    with back-off (about 25 s in all), longer than anyone should wait for a plan. The
    thread is a daemon so an abandoned lookup never holds the process open. Each request
    times out after A3S_HF_TIMEOUT_S; the whole lookup (config + every shard header) after
    twice that."""
    deadline = 2 * timeout_s()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["profile"] = fetch()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"a3s-hub-{model}", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise HubUnreachable(
            f"the Hugging Face Hub at {endpoint} did not answer within {deadline:g} s for model "
            f"{model!r}; check network access or HF_ENDPOINT, raise A3S_HF_TIMEOUT_S, or give a "
            "local model path"
        )
    if "error" in box:
        raise box["error"]
    profile: ModelProfile = box["profile"]
    return profile


def _fetch(model: str, revision: str | None, endpoint: str) -> ModelProfile:
    offline = _truthy(os.environ.get("HF_HUB_OFFLINE"))
    token: str | bool | None = os.environ.get("HF_TOKEN") or None
    timeout = timeout_s()
    try:
        config_path = huggingface_hub.hf_hub_download(
            model, "config.json", revision=revision, token=token, endpoint=endpoint,
            etag_timeout=timeout, local_files_only=offline,
        )
        with open(config_path) as f:
            config: dict[str, Any] = json.load(f)
        if offline:  # headers are not cached by the hub client: the config formula it is
            return profile_from_config(
                config, model=model, source="config", revision=revision,
                notes=["HF_HUB_OFFLINE: config.json from the local cache, no tensor metadata"],
            )
        api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
        try:
            meta = api.get_safetensors_metadata(model, revision=revision, timeout=timeout)
        except hf_errors.NotASafetensorsRepoError:
            return profile_from_config(
                config, model=model, source="config", revision=revision,
                notes=[f"{model} has no safetensors weights on the Hub; counted from config"],
            )
        tensors = [
            (name, info.dtype, list(info.shape))
            for fm in meta.files_metadata.values()
            for name, info in fm.tensors.items()
        ]
        return profile_from_tensors(config, tensors, model=model, source="hub", revision=revision)
    except Exception as exc:
        raise _translate(exc, model, revision, endpoint, offline) from exc


def _translate(exc: Exception, model: str, revision: str | None, endpoint: str,
               offline: bool) -> Exception:
    if isinstance(exc, ModelNotFound | ModelUnavailable):
        return exc
    if isinstance(exc, hf_errors.GatedRepoError):
        return ModelUnavailable(
            f"model {model!r} is gated on the Hugging Face Hub; accept its terms on the model "
            "page and set HF_TOKEN to a token of an account that has access"
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return ModelNotFound(
            f"model {model!r} was not found on the Hugging Face Hub ({endpoint}); check the id "
            "(or set HF_TOKEN if the repository is private)"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotFound(
            f"model {model!r} has no revision {revision!r} on the Hugging Face Hub; give an "
            "existing branch, tag or commit"
        )
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return ModelNotFound(
            f"model {model!r} has no config.json on the Hugging Face Hub, so it is not a "
            "transformers checkpoint; give a model repository or a local path"
        )
    offline_errors = hf_errors.LocalEntryNotFoundError | hf_errors.OfflineModeIsEnabled
    if offline and isinstance(exc, offline_errors):
        return ModelUnavailable(
            f"model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it first or unset HF_HUB_OFFLINE"
        )
    if isinstance(exc, hf_errors.HfHubHTTPError) and exc.response is not None \
            and exc.response.status_code in (401, 403):
        return ModelUnavailable(
            f"model {model!r} cannot be read with the current credentials "
            f"(HTTP {exc.response.status_code}); set HF_TOKEN to a token with access"
        )
    if _is_network_error(exc):
        return HubUnreachable(
            f"the Hugging Face Hub at {endpoint} could not be reached to size model {model!r} "
            f"({type(exc).__name__}); check network access or HF_ENDPOINT, raise "
            "A3S_HF_TIMEOUT_S, or give a local model path"
        )
    return exc


def _is_network_error(exc: Exception) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | OSError | hf_errors.HfHubHTTPError):
        return True
    return any(c.__module__.split(".")[0] in NETWORK_MODULES for c in type(exc).__mro__)
