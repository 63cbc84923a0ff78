"""HTTP ingress: provider requests in, durable raw events out."""
