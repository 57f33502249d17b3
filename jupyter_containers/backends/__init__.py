"""Container engines behind one interface (see base.ContainerBackend)."""
