"""Provider emulators faithful to ../shared/specs, with fault injection."""
