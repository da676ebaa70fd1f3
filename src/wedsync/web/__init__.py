"""Operator dashboard."""
