"""Workload: arrival processes, query pools (synthetic or real datasets), adversarial ordering, traces."""
