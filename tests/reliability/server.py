"""The MLflow tracking server gone: down when a command starts, and going away in the middle of a run.

**Down at start.** ``asc train``, ``asc train -m`` and ``asc tune`` pointed at a server that does not answer: a closed
port (connection refused at once) or a port that accepts connections and never answers (a hung server, a firewall
that drops packets). Survived: the command stops within 10 seconds with one message naming the address and what to
do, without a traceback.

**Gone mid-run.** ``asc server`` (the project's own, SQLite behind it) is SIGKILLed, with its workers, at a random
moment of an ``asc train`` run that logs to it; the server is started again on the same database and the same command
rerun. Survived: the run stopped with a message saying where the checkpoints and the unsent metrics are (no
traceback), and the rerun completed the same MLflow run. Identical: its metrics, epoch by epoch, equal those of a run
against a server that never went away. Lost: a finished run missing, metrics missing or different, a run left
RUNNING. The project keeps the work locally and resumes (see ``asc.tracking.store``, "A server that goes away").

MLflow's client retries a request 7 times with a backoff (about 4 minutes); the commands here run with
``MLFLOW_HTTP_REQUEST_MAX_RETRIES=1`` and a 5-second request timeout, which a user on a flaky network would not set:
what is measured is what happens once the retries are spent, not how long they take.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from reliability import data
from reliability.harness import Budget, Launched, Outcome, asc, run, share_time

#: Seconds within which a command must say that no server answers.
START_LIMIT = 10.0
LIMIT = 600
#: MLflow's client settings for the mid-run cases (see the module's docstring).
CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
          "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def black_hole():
    """A port on 127.0.0.1 that accepts connections and never answers (a hung server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()


def _clear(out: str, uri: str) -> bool:
    return "Traceback" not in out and uri in out and "no MLflow tracking server answers" in out


def at_start(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """Commands pointed at a closed port or a silent one: a clear error within :data:`START_LIMIT` seconds."""
    from reliability.kills import TUNE_SPACE, World

    world = World(work)
    conf = work / "conf" / "tune"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "reliability.yaml").write_text(TUNE_SPACE)
    commands = {
        "asc train": lambda f, uri: world.command(f, f"logger.tracking_uri={uri}"),
        "asc train -m": lambda f, uri: world.command(f, "-m", "seed=0,1", f"logger.tracking_uri={uri}"),
        "asc tune": lambda f, uri: asc("tune", *data.run_overrides(f, world.data, f / "cache", f"logger.tracking_uri={uri}"),
                                       f"hydra.searchpath=[file://{work / 'conf'}]", "tune=reliability",
                                       f"tune.storage=sqlite:///{f / 'optuna.db'}"),
    }
    cases = [(name, kind) for kind in ("closed port", "silent port") for name in commands]
    rng.shuffle(cases)
    outcomes = []
    for i in budget.cases(count):
        name, kind = cases[i % len(cases)]
        folder = data.fresh(work / f"case{i}")
        t0 = time.monotonic()
        with black_hole() if kind == "silent port" else _closed() as port:
            uri = f"http://127.0.0.1:{port}"
            fin = run(commands[name](folder, uri), folder, world.env, LIMIT)
        ok = fin.returncode != 0 and fin.seconds <= START_LIMIT and _clear(fin.output, uri)
        last = fin.output.strip().splitlines()[-1] if fin.output.strip() else ""
        outcomes += share_time([Outcome("server gone", "at start", f"{name}, {kind}: stopped in {fin.seconds:.1f} s",
                                        survived=ok, tracebacks=fin.tracebacks, hangs=int(fin.timed_out),
                                        lost=int((folder / "outputs" / "checkpoints").exists()),
                                        note=last[:300])], t0)
    return outcomes


@contextmanager
def _closed():
    yield free_port()


def _server(folder: Path, port: int):
    from asc.tracking.server import ServerSettings, running

    return running(ServerSettings(f"sqlite:///{folder / 'server.db'}", str(folder / "server-artifacts"), "127.0.0.1",
                                  port, 1), folder / "server.log", timeout=120)


def _kill_group(proc) -> None:
    """SIGKILL the server and its workers (its own process group), as a crash or a lost machine would."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _server_runs(folder: Path):
    from reliability import stores

    return stores.runs(folder / "server.db", artifacts=False)


def mid_run(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``asc train`` against ``asc server``; the server SIGKILLed at a random moment after the features are loaded,
    started again, the command rerun."""
    from reliability import stores
    from reliability.kills import World

    world = World(work)
    env = {**world.env, **CLIENT}
    extra = ("trainer.max_epochs=4",)
    ref_dir = data.fresh(work / "reference")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with _server(ref_dir, port):
        job = Launched(world.command(ref_dir, *extra, f"logger.tracking_uri={uri}"), ref_dir, env)
        start = job.wait_for("features:", LIMIT)
        ref = job.finish(LIMIT)
        assert ref.returncode == 0 and start is not None, ref.tail()
    window = ref.seconds - start
    (reference,) = [r for r in stores.runs(ref_dir / "server.db", artifacts=False) if r.status == "FINISHED"]
    outcomes = []
    for case in budget.cases(count):
        t0 = time.monotonic()
        folder = data.fresh(work / f"case{case}", cache=ref_dir / "cache")
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        cmd = world.command(folder, *extra, f"logger.tracking_uri={uri}")
        at = rng.uniform(0.0, window)
        with _server(folder, port) as server:
            job = Launched(cmd, folder, env)
            base = job.wait_for("features:", LIMIT) or 0.0
            killed = job.sleep_until(base + at)
            if killed:
                _kill_group(server.proc)
            first = job.finish(LIMIT)
        (folder / "first.log").write_text(first.output)  # what the user saw (kept with --keep)
        msg = first.output.strip().splitlines()[-1] if first.output.strip() else ""
        o = Outcome("server gone", "mid-run", f"server killed {at:.2f} s after the features were loaded"
                    + ("" if killed else " (the run had ended)"), survived=True, tracebacks=first.tracebacks,
                    hangs=int(first.timed_out))
        if killed and first.returncode != 0:
            o.survived = "stopped answering" in first.output and "rerun the same command" in first.output
            o.note = msg[:300]
        if first.returncode == 0:  # it had finished before the server went away: nothing to rerun
            again = first
            o.note += "it had finished"
        else:
            with _server(folder, port):  # back, on the same database and artifacts
                again = run(cmd, folder, env, LIMIT)
        runs = _server_runs(folder)
        finished = [r for r in runs if r.status == "FINISHED"]
        o.survived = o.survived and again.returncode == 0 and not again.timed_out and len(finished) == 1
        if again is not first:
            o.tracebacks += again.tracebacks
            o.hangs += int(again.timed_out)
        if len(finished) != 1:
            o.lost += 1
            o.note += f"; {len(finished)} finished runs, statuses {[r.status for r in runs]}"
        else:
            full = [r for r in stores.runs(folder / "server.db", artifacts=False) if r.status == "FINISHED"][0]
            diff = stores.same_metrics(reference, full)
            o.identical = not diff
            o.lost += len({"val/acc", "test/acc"} - set(full.metrics))
            if diff:
                o.note += f"; differs: {diff[:3]}"
            o.redone += max(0, len(runs) - 1)  # a second run trained from the start instead of resuming
        if again.returncode:
            o.note += f"; rerun failed: {again.tail(600)}"
        leftover = list((folder / "outputs" / "checkpoints").glob("*/unsent.jsonl"))
        o.lost += len(leftover)  # metrics kept locally that were never sent
        outcomes += share_time([o], t0)
    return outcomes
