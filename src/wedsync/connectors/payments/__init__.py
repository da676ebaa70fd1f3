"""payments connectors, one module per provider."""
