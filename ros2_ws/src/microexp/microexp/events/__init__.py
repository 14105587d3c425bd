"""Event data core (no rclpy): the event dtype, file readers, EventPacket payload codecs and Eq. (1) frames."""

from microexp.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, empty_events, empty_triggers, make_events

__all__ = ["EVENT_DTYPE", "TRIGGER_DTYPE", "empty_events", "empty_triggers", "make_events"]
