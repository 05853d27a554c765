"""Null-safe reads of client objects (every field of the typed client models is Optional)."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s


def meta(obj: Any) -> k8s.V1ObjectMeta:
    return obj.metadata or k8s.V1ObjectMeta()


def name_of(obj: Any) -> str:
    return str(meta(obj).name or "")


def namespace_of(obj: Any) -> str:
    return str(meta(obj).namespace or "")


def labels_of(obj: Any) -> dict[str, str]:
    return dict(meta(obj).labels or {})


def annotations_of(obj: Any) -> dict[str, str]:
    return dict(meta(obj).annotations or {})
