"""Capacity planning (``llmsim plan``): sustainable rates, candidate deployments, the allocation problem
built from a scenario, and the plans simulated side by side. Builds on :func:`sim.runner.simulate` and the
pure optimiser :mod:`policies.allocation`."""
