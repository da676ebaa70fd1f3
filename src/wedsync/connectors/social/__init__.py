"""social connectors, one module per provider."""
