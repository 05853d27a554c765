"""Fixtures of the gateway tests. They live in `gateway_harness` (a uniquely named module,
so `from gateway_harness import Harness` cannot pick up another directory's conftest)."""

from gateway_harness import gateway_lane, harness

__all__ = ["gateway_lane", "harness"]
