"""The SimPy engine: model instances doing continuous batching, grouped into deployments."""
