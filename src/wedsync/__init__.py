"""WedSync Integration Hub: keeps wedding vendors' business tools in sync with the WedSync marketplace."""

__version__ = "0.1.0"
