"""Scenario files: the pydantic schema and the YAML loader that reports errors with line numbers."""

from sim.config.load import load_scenario, parse_scenario
from sim.config.schema import Scenario

__all__ = ["Scenario", "load_scenario", "parse_scenario"]
