"""Metrics: per-request columnar records, periodic occupancy samples, and the run summary."""
