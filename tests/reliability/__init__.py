"""Reliability tests: bad inputs, faults, kills, determinism."""
