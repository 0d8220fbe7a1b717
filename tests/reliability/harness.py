"""What every fault family shares: one outcome per fault, commands started and killed, time limits, the table.

A fault is *survived* when the commands it hit (or their rerun) completed, or failed with a clear error that names the
folder or file and what to do, and the next run completed. *Identical*: the final result equals an uninterrupted run's
(bytes of cache entries and downloads, metrics and weights of runs, trials of a study), where that applies. *Redone*:
units that were finished before the fault (cache entries, epochs, runs, trials, archives) computed again. *Lost*:
finished units missing afterwards, or a half-written file found under a valid name. *Tracebacks* and *hangs* are
counted apart: a Python traceback on a user's console is a failure even when the work survives.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Outcome:
    """One injected fault and what became of it."""

    family: str  # kill, disk full, server gone, damaged bytes, damaged cache, concurrency, untrusted
    stage: str  # what it hit: extract, train, sweep, ... or a command
    case: str  # how, e.g. "kill at 3.41 s, then at 1.02 s"
    survived: bool
    identical: bool | None = None  # None where no uninterrupted result applies
    redone: int = 0
    lost: int = 0
    tracebacks: int = 0
    hangs: int = 0
    seconds: float = 0.0
    note: str = ""

    def ok(self) -> bool:
        return (self.survived and self.identical is not False and not self.redone and not self.lost
                and not self.tracebacks and not self.hangs)


def seeded(seed: int, stage: str) -> random.Random:
    """The random number generator of one stage: the same draws for the same seed, whatever ran before."""
    return random.Random(f"{seed}:{stage}")


# -- commands -----------------------------------------------------------------------------------------------------
def asc(*args: str) -> list[str]:
    """An ``asc`` command line run by this interpreter."""
    return [sys.executable, "-m", "asc", *args]


def environment(**extra: str) -> dict[str, str]:
    """The environment of the commands: this one without any MLflow store or sweep of the caller's, unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ASC_"))}
    env.update(PYTHONUNBUFFERED="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", TQDM_DISABLE="1")
    env.update(extra)
    return env


@dataclass
class Finished:
    """A command that ended (or was stopped at its time limit)."""

    cmd: list[str]
    returncode: int
    output: str  # stdout and stderr, interleaved
    seconds: float
    timed_out: bool = False

    @property
    def tracebacks(self) -> int:
        return self.output.count(TRACEBACK)

    def tail(self, chars: int = 3000) -> str:
        return self.output[-chars:]


class Launched:
    """A command running in its own process group; its output lines are collected with their arrival times."""

    def __init__(self, cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
        self.cmd = list(cmd)
        self.start = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic() - self.start, raw.decode(errors="replace")))

    def seen(self, text: str) -> float | None:
        """When a line holding ``text`` arrived (seconds after the start), or None."""
        return next((t for t, line in list(self.lines) if text in line), None)

    def wait_for(self, text: str, timeout: float) -> float | None:
        """Wait until a line holding ``text`` arrives (its time), the process ends or ``timeout`` passes (None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.seen(text)
            if t is not None:
                return t
            if self.proc.poll() is not None:
                self._reader.join(5)
                return self.seen(text)
            time.sleep(0.01)
        return None

    def sleep_until(self, t: float) -> bool:
        """Sleep until ``t`` seconds after the start; False if the process ended before."""
        while time.monotonic() - self.start < t:
            if self.proc.poll() is not None:
                return False
            time.sleep(min(0.01, max(0.0, t - (time.monotonic() - self.start))))
        return self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL to the whole process group (the command and its workers); True if it was still running."""
        alive = self.proc.poll() is None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reader.join(5)
        return alive

    def finish(self, timeout: float) -> Finished:
        """Wait for the end (SIGKILL at ``timeout`` seconds after the start, counted as timed out)."""
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.1, timeout - (time.monotonic() - self.start)))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        self._reader.join(10)
        return Finished(self.cmd, self.proc.returncode, self.output, time.monotonic() - self.start, timed_out)

    @property
    def output(self) -> str:
        return "".join(line for _, line in list(self.lines))


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout: float) -> Finished:
    """Run a command to its end (or its time limit)."""
    return Launched(cmd, cwd, env).finish(timeout)


def kill_at(cmd: Sequence[str], cwd: Path, env: dict[str, str], at: float, marker: str | None = None,
            timeout: float = 600) -> tuple[Finished, bool, float]:
    """Start ``cmd`` and SIGKILL it ``at`` seconds after its start (or after the first line holding ``marker``).

    Returns ``(what it printed, whether the kill found it running, when it was killed)``.
    """
    job = Launched(cmd, cwd, env)
    base = 0.0
    if marker is not None:
        found = job.wait_for(marker, timeout)
        base = found if found is not None else timeout
    alive = job.sleep_until(base + at) and job.kill()
    killed_at = time.monotonic() - job.start
    if not alive:
        job.finish(timeout)
    return Finished(job.cmd, job.proc.returncode, job.output, killed_at), alive, killed_at


# -- files --------------------------------------------------------------------------------------------------------
def snapshot(folder: Path, pattern: str = "**/*") -> dict[str, tuple[int, bytes]]:
    """``{relative path: (mtime_ns, bytes)}`` of the files under ``folder`` whose names do not start with a dot."""
    out = {}
    for p in sorted(folder.glob(pattern)):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            out[p.relative_to(folder).as_posix()] = (p.stat().st_mtime_ns, p.read_bytes())
    return out


def arrays(folder: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of the ``.npy`` files under ``folder`` (cache entries), as :func:`snapshot` sees them."""
    return {k: v for k, (_, v) in snapshot(folder, "**/*.npy").items()}


def leftovers(folder: Path) -> list[str]:
    """Temporary files under ``folder`` (``.*.tmp``, ``*.part``): what a killed job may leave, never read as valid."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                  and (p.name.endswith(".tmp") or p.name.endswith(".part")))


# -- the table ----------------------------------------------------------------------------------------------------
COLUMNS = ("faults injected", "survived", "results identical", "work redone", "data lost", "tracebacks", "hangs")


@dataclass
class Row:
    family: str
    stage: str
    outcomes: list[Outcome] = field(default_factory=list)

    def cells(self) -> list[str]:
        o = self.outcomes
        compared = [x for x in o if x.identical is not None]
        same = f"{sum(bool(x.identical) for x in compared)}/{len(compared)}" if compared else "n/a"
        return [str(len(o)), str(sum(x.survived for x in o)), same, str(sum(x.redone for x in o)),
                str(sum(x.lost for x in o)), str(sum(x.tracebacks for x in o)), str(sum(x.hangs for x in o))]


def rows(outcomes: Iterable[Outcome]) -> list[Row]:
    table: dict[tuple[str, str], Row] = {}
    for o in outcomes:
        table.setdefault((o.family, o.stage), Row(o.family, o.stage)).outcomes.append(o)
    return list(table.values())


def table(outcomes: Sequence[Outcome]) -> str:
    """The suite's table in Markdown: one row per family and stage, and the totals."""
    body = rows(outcomes)
    total = Row("all", "", list(outcomes))
    head = ["family", "stage", *COLUMNS, "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in [*body, total]:
        secs = f"{sum(x.seconds for x in r.outcomes):.0f}"
        name = [f"**{r.family}**", ""] if r is total else [r.family, r.stage]
        lines.append("| " + " | ".join([*name, *r.cells(), secs]) + " |")
    return "\n".join(lines)


def failures(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok()]


def write_json(path: Path, outcomes: Sequence[Outcome], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "outcomes": [asdict(o) for o in outcomes]}, indent=1) + "\n")


# -- bounds -------------------------------------------------------------------------------------------------------
class Budget:
    """A stage's time limit: ``left()`` seconds remain; ``spent`` once it is used up (later faults are not injected)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.monotonic()

    def begin(self) -> None:
        """Start counting now (after the stage's reference run)."""
        self.start = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    @property
    def spent(self) -> bool:
        return self.left() <= 0

    def cases(self, count: int) -> Iterator[int]:
        """Case numbers ``0 .. count - 1`` while time is left; the limit counts from the first case, not from the
        stage's reference run before it."""
        self.begin()
        for case in range(count):
            if self.spent:
                return
            yield case


def share_time(outcomes: Sequence[Outcome], since: float) -> list[Outcome]:
    """Spread the seconds since ``since`` (``time.monotonic()``) over the faults of one case."""
    for o in outcomes:
        o.seconds = (time.monotonic() - since) / max(1, len(outcomes))
    return list(outcomes)
