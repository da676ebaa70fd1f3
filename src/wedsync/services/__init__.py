"""Use cases: the hub's capabilities, called by the API, CLI and workflows."""
