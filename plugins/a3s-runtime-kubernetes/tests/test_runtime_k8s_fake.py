"""The fake API server's own rules, so tests built on it mean what they say."""

from __future__ import annotations

from a3s_runtime_kubernetes.selector_match import field_match, label_match


def test_label_selectors() -> None:
    labels = {"a3s.io/managed-by": "a3s", "tier": "gpu"}
    assert label_match("a3s.io/managed-by=a3s,tier==gpu", labels)
    assert not label_match("a3s.io/managed-by!=a3s", labels)
    assert label_match("a3s.io/managed-by!=a3s", {"app": "trainer"})  # absent ≠ a3s
    assert label_match("tier in (cpu,gpu)", labels)
    assert not label_match("tier notin (cpu, gpu)", labels)
    assert label_match("tier", labels) and not label_match("!tier", labels)
    assert label_match("", labels) and label_match(None, labels)


def test_field_selectors() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert field_match("status.phase!=Succeeded,status.phase!=Failed", pod)
    assert field_match("spec.nodeName=n1", pod)
    assert not field_match("spec.nodeName=n2", pod)
    assert not field_match("status.phase=Pending", pod)
