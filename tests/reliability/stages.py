"""The suite's stages: each fault family and what it hits, with its full-scale count, its time limit and its seed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reliability import disk, kills
from reliability.harness import Budget, Outcome, seeded


@dataclass(frozen=True)
class Stage:
    family: str
    name: str
    count: int  # faults at full scale
    seconds: float  # time limit: no fault is injected after it
    inject: Callable  # (work, count, rng, budget) -> list[Outcome]
    isolated: bool = False  # run in a private mount namespace (reliability.disk): inject is then unused

    @property
    def key(self) -> str:
        return f"{self.family}:{self.name}"

    def run(self, work: Path, count: int, seed: int, seconds: float | None = None) -> list[Outcome]:
        work.mkdir(parents=True, exist_ok=True)
        if self.isolated:
            return disk.in_namespace(self.name, work, count, seed, seconds or self.seconds)
        return self.inject(work, count, seeded(seed, self.key), Budget(seconds or self.seconds))


STAGES: list[Stage] = [
    Stage("kill", "extract", 20, 15 * 60, kills.extract),
    Stage("kill", "embeddings", 20, 30 * 60, kills.embeddings),
    Stage("kill", "train", 20, 30 * 60, kills.train),
    Stage("kill", "sweep", 20, 40 * 60, kills.sweep),
    Stage("kill", "tune", 20, 40 * 60, kills.tune),
    Stage("kill", "download", 20, 15 * 60, kills.download),
    Stage("disk full", "cache", 6, 10 * 60, disk.cache, isolated=True),
    Stage("disk full", "artifacts", 6, 15 * 60, disk.artifacts, isolated=True),
    Stage("disk full", "download", 6, 10 * 60, disk.download, isolated=True),
]
