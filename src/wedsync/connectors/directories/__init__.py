"""directories connectors, one module per provider."""
