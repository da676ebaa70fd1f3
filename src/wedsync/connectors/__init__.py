"""Provider connectors over one HTTP layer."""
