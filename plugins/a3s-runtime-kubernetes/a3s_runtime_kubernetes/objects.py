"""Reads of Kubernetes objects in their JSON form (camelCase dicts, as the API sends them).

The runtime handles objects as JSON rather than the client's typed models: building the
models costs about 1 ms an object, and every field of them is Optional anyway.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def meta(obj: Json) -> Json:
    return obj.get("metadata") or {}


def name_of(obj: Json) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Json) -> str:
    return str(meta(obj).get("namespace") or "")


def labels_of(obj: Json) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def annotations_of(obj: Json) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})
