"""The suite's stages: each fault family and what it hits, with its full-scale count, its time limit and its seed.

The counts and limits fit the whole suite in about 30 minutes on the 2-vCPU VM it was written on (see
``experiments/reliability/README.md``). A stage's limit counts from its first fault (its reference run comes first);
``--minutes`` caps the sum. A stage whose time runs out injects no more faults (a chain of kills still gets its
rerun), and the table shows how many it did inject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reliability import concurrency, damage, disk, kills, server, untrusted
from reliability.harness import Budget, Outcome, seeded


@dataclass(frozen=True)
class Stage:
    family: str
    name: str
    count: int  # faults at full scale
    seconds: float  # time limit: no fault is injected after it
    inject: Callable  # (work, count, rng, budget) -> list[Outcome]
    isolated: bool = False  # run in a private mount namespace (reliability.disk): inject is then unused
    fixed: bool = False  # a fixed list of cases: --scale does not change it

    @property
    def key(self) -> str:
        return f"{self.family}:{self.name}"

    def run(self, work: Path, count: int, seed: int, seconds: float | None = None) -> list[Outcome]:
        work.mkdir(parents=True, exist_ok=True)
        if self.isolated:
            return disk.in_namespace(self.name, work, count, seed, seconds or self.seconds)
        return self.inject(work, count, seeded(seed, self.key), Budget(seconds or self.seconds))


STAGES: list[Stage] = [
    Stage("kill", "extract", 20, 75, kills.extract),
    Stage("kill", "download", 20, 45, kills.download),
    Stage("kill", "train", 20, 170, kills.train),
    Stage("kill", "embeddings", 20, 170, kills.embeddings),
    Stage("kill", "sweep", 20, 170, kills.sweep),
    Stage("kill", "tune", 20, 170, kills.tune),
    Stage("disk full", "cache", 4, 45, disk.cache, isolated=True),
    Stage("disk full", "artifacts", 2, 45, disk.artifacts, isolated=True),
    Stage("disk full", "download", 4, 45, disk.download, isolated=True),
    Stage("server gone", "at start", 6, 40, server.at_start),
    Stage("server gone", "mid-run", 2, 60, server.mid_run),
    Stage("damaged bytes", "audio", 1000, 150, damage.audio),
    Stage("damaged cache", "entries", 12, 60, damage.cache),
    Stage("concurrency", "extract", 2, 40, concurrency.extract),
    Stage("concurrency", "sweep", 1, 60, concurrency.sweep),
    Stage("untrusted", "files", 1, 90, untrusted.run_all, fixed=True),
]
