"""Label keys, annotation keys and object names the runtime puts on what it creates."""

from __future__ import annotations

import hashlib
import re

from a3s_core.errors import InvalidRequest

MANAGED_BY = "a3s.io/managed-by"
MANAGER = "a3s"
DEPLOYMENT = "a3s.io/deployment"
REPLICA = "a3s.io/replica"
NAME = "a3s.io/name"
ENGINE = "a3s.io/engine"
GPU_INDICES = "a3s.io/gpu-indices"  # annotation: "0,1" — the A3S slots the scheduler bound
NODE = "a3s.io/node"  # annotation: the node the scheduler chose (known before binding)
PORT = "a3s.io/port"  # annotation: the engine's port, for the replica URL
GPU_PRODUCT = "a3s.io/gpu"  # annotation: catalog GPU name

INSTANCE = "a3s.io/instance"  # which platform installation owns it (several may share a cluster)
CONTAINER = "engine"
GPU_RESOURCE = "nvidia.com/gpu"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_KEY_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def managed_selector(instance: str) -> str:
    return f"{MANAGED_BY}={MANAGER},{INSTANCE}={instance}"


def ownership(instance: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, INSTANCE: instance}


def is_ours(labels: dict[str, str], instance: str) -> bool:
    return labels.get(MANAGED_BY) == MANAGER and labels.get(INSTANCE) == instance


def check_label_key(key: str, field: str) -> str:
    """`[prefix/]name`: prefix a DNS subdomain (≤ 253), name ≤ 63 of [A-Za-z0-9-_.]."""
    prefix, _, name = key.rpartition("/")
    if (
        (prefix and (len(prefix) > 253 or not _KEY_PREFIX.match(prefix)))
        or len(name) > 63
        or not _KEY_NAME.match(name)
    ):
        raise InvalidRequest(
            f"{field}: {key!r} cannot be a Kubernetes label key ([prefix/]name, the prefix a "
            "DNS subdomain, the name at most 63 letters, digits, '-', '_' or '.')",
            field=field,
            value=key,
        )
    return key


def check_label_value(value: str, field: str) -> str:
    """Kubernetes label values: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise InvalidRequest(
            f"{field} {value!r} cannot be a Kubernetes label value (at most 63 letters, "
            "digits, '-', '_' or '.', beginning and ending with a letter or digit)",
            field=field,
            value=value,
        )
    return value


def dns_label(*parts: str, prefix: str = "") -> str:
    """A DNS-1035 label (Service names need a leading letter) made of `parts`: lower-cased,
    invalid runs → '-', and a hash suffix instead of silent truncation past 63."""
    raw = "-".join(p for p in parts if p)
    name = _NOT_DNS.sub("-", (prefix + raw).lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"a3s-{name}".rstrip("-")
    if len(name) > 63:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def pod_name(deployment_name: str, replica_id: str) -> str:
    """The controller's replica ids already start with the deployment name; don't repeat it."""
    if replica_id.startswith(f"{deployment_name}-"):
        return dns_label(replica_id)
    return dns_label(deployment_name, replica_id)


def service_name(deployment_name: str) -> str:
    return dns_label(deployment_name, prefix="a3s-")


def format_indices(indices: list[int]) -> str:
    return ",".join(str(i) for i in indices)


def parse_indices(value: str | None) -> list[int]:
    """The annotation back to indices; anything malformed reads as 'unknown' (empty)."""
    if not value:
        return []
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        return []
