"""Data-layer tests."""
