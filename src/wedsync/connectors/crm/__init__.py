"""crm connectors, one module per provider."""
