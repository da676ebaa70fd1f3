"""portfolio connectors, one module per provider."""
