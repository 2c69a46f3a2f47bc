"""Periodic occupancy samples (queue length and running sequences per deployment).

Sampling the engine's own state, rather than reconstructing it from request timestamps, gives an
independent measurement: Little's law (time-average number in system = λ·W from the records) only
holds if the engine's queues and the recorded timestamps agree.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from sim.engine.cluster import DeploymentRuntime


class OccupancySampler:
    def __init__(
        self, env: simpy.Environment, deployments: list[DeploymentRuntime], interval_s: float, until: float
    ) -> None:
        """Samples at 0, interval_s, 2·interval_s, ... up to ``until`` (the end of the arrival window, so the
        averages describe the system under its offered load, not the drain after it)."""
        self.until = until
        self.env = env
        self.deployments = deployments
        self.interval_s = interval_s
        self.times: list[float] = []
        self.queued: list[list[int]] = []
        self.running: list[list[int]] = []

    def process(self) -> Generator[simpy.Event, None, None]:
        while self.env.now <= self.until:
            self.times.append(self.env.now)
            self.queued.append([d.queued for d in self.deployments])
            self.running.append([d.running for d in self.deployments])
            yield self.env.timeout(self.interval_s)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = len(self.deployments)
        t = np.asarray(self.times, dtype=np.float64)
        q = np.asarray(self.queued, dtype=np.float64).reshape(-1, k)
        r = np.asarray(self.running, dtype=np.float64).reshape(-1, k)
        return t, q, r
