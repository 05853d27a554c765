"""Fixtures of the gateway tests. They live in `gateway_harness` (a uniquely named module,
so `from gateway_harness import Harness` cannot pick up another directory's conftest)."""

from gateway_harness import harness

__all__ = ["harness"]
