"""Batch-level policies: route a whole batch jointly (issue 4). Importing registers them."""
