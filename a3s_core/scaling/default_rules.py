"""The seed's scaling rules as built-in plugins. Placeholder until the autoscaler lands."""

from __future__ import annotations
