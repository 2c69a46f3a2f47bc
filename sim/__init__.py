"""llmsim's simulator: scenario schema, workload, predictors, SimPy engine, dispatcher, metrics, CLI."""

__version__ = "0.1.0"
