"""Autoscaling: the seed's rules (default_rules), the pure decision (decide), and the loop
that applies it to running deployments (autoscaler)."""

from __future__ import annotations

from a3s_core.scaling.clock import Clock, FakeClock, SystemClock
from a3s_core.scaling.decide import Decision, ScalingState, Situation, decide

__all__ = ["Clock", "Decision", "FakeClock", "ScalingState", "Situation", "SystemClock", "decide"]
