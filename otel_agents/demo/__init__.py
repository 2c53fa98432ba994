"""Demo helpers: a local fake LiveKit Inference gateway with scripted faults."""
