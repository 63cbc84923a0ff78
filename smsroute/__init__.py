"""smsroute: an event-streaming routing engine for inbound SMS."""

__version__ = "0.1.0"
