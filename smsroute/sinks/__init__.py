"""Sinks: webhook, email and SMS reply deliveries with retries and dead letters."""
