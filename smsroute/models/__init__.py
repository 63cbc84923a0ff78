"""What travels through the engine, one module each: the raw event as received, the normalized
part, the canonical message, a delivery and its attempts, a delivery report, a dead letter. Each
has one way to be serialized, beside it (Avro records through :mod:`.avro`, JSON for the webhook
body and the pending parts)."""
