"""Stream processing: normalize, dedupe, stitch, route. Plain Python, no engine knowledge."""
