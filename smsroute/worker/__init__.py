"""The Kafka engine's workers: faust-streaming agents running the processing core and the sinks."""
