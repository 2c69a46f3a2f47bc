"""Typed errors of the policies library (networkx-style: callers can catch precisely)."""

from __future__ import annotations


class PolicyError(Exception):
    """Base class of every error raised by :mod:`policies`."""


class InvalidProblemError(PolicyError, ValueError):
    """A :class:`~policies.problem.RoutingProblem` has inconsistent shapes or out-of-range values."""


class UnknownPolicyError(PolicyError, KeyError):
    """A policy name is not in the registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a readable sentence.
        return str(self.args[0]) if self.args else "unknown policy"


class InvalidParameterError(PolicyError, ValueError):
    """A policy was given a parameter it does not accept, or a value out of range."""
