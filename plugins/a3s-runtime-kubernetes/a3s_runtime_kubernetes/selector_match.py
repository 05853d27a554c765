"""Label and field selector matching as the API server does it (for the fake server)."""

from __future__ import annotations

import re
from typing import Any

# The field selectors the real API server accepts per resource (others: 400).
_META = ("metadata.name", "metadata.namespace")
FIELD_SELECTORS = {
    "pods": {*_META, "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
             "status.podIPs", "status.nominatedNodeName"},
    "events": {*_META, "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "nodes": {*_META, "spec.unschedulable"},
    "namespaces": {*_META, "status.phase"},
    "services": set(_META),
    "secrets": {*_META, "type"},
}


def split_terms(selector: str) -> list[str]:
    """Commas separate terms except inside `in (a,b)` sets."""
    return [t.strip() for t in re.split(r",(?![^()]*\))", selector) if t.strip()]


def label_match(selector: str | None, labels: dict[str, str]) -> bool:
    for term in split_terms(selector or ""):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_match(selector: str | None, obj: dict[str, Any]) -> bool:
    for term in split_terms(selector or ""):
        if "!=" in term:
            path, value = term.split("!=", 1)
            if _field(obj, path) == value:
                return False
        else:
            path, value = term.replace("==", "=").split("=", 1)
            if _field(obj, path) != value:
                return False
    return True
