"""The Kafka engine: ingress processes publishing raw events to Kafka, and faust-streaming workers
running the processing core and the sinks over the topics."""
