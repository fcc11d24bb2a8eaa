"""Benchmark scripts: they print figures side by side; none is a test."""
