"""Deployment events: the persisted bus and the OpenTelemetry pipeline that feeds it."""

from a3s_core.events.bus import EventBus, EventFilter, SubscriberOverflow

__all__ = ["EventBus", "EventFilter", "SubscriberOverflow"]
