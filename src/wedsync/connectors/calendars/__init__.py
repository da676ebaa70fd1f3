"""calendars connectors, one module per provider."""
