"""channels connectors, one module per provider."""
