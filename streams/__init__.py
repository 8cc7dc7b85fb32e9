"""callwatch stream processing: the pure domain (streams.domain) and the adapters that drive it."""
