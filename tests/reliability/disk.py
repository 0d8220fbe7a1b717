"""Disk full: the feature cache, MLflow's artifacts and the download folder on a small file system that fills up.

Each case mounts a fresh tmpfs of a few MiB and fills it with a file that leaves only a little space: before the
command starts ("full"), or at a random moment while it runs ("fills up", another job taking the space). The command
must stop with a clear error that names the folder and the space needed (no traceback), leave no partial file under a
valid name, and, once the filler is deleted, the same command must complete with the result of a run that never
met a full disk, without redoing what was finished.

**Where the tmpfs comes from.** Mounting needs CAP_SYS_ADMIN. The stage runs in a private mount namespace of its
own (``unshare --mount``; as an ordinary user ``unshare --user --map-root-user --mount``, which unprivileged user
namespaces allow on most Linux systems): its mounts are seen only by its own processes and vanish with them, even
if the suite is killed. Where neither works (a container without the capability, user namespaces disabled) the
stage is skipped with the reason; the error paths themselves are also tested without a file system by injecting
ENOSPC (``tests/test_reliability.py``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from reliability import data
from reliability.harness import Budget, Finished, Launched, Outcome, arrays, environment, run, share_time

LIMIT = 600


# -- the namespace and the file system ----------------------------------------------------------------------------
def namespace() -> tuple[list[str] | None, str]:
    """The command prefix that runs a process in a private mount namespace where it may mount a tmpfs, and how
    (or ``None`` and why not)."""
    if not shutil.which("unshare") or not shutil.which("mount"):
        return None, "unshare or mount is not installed (util-linux)"
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"asc-ns-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    tries = ([["unshare", "--mount", "--propagation", "private"]] if os.geteuid() == 0 else []) + \
        [["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]]
    why = ""
    try:
        for prefix in tries:
            got = subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                                 capture_output=True, text=True, timeout=30)
            if got.returncode == 0:
                return prefix, " ".join(prefix)
            why = got.stderr.strip() or f"status {got.returncode}"
    finally:
        probe.rmdir()
    return None, f"cannot mount a tmpfs in a private mount namespace ({why})"


def mount(folder: Path, size: int) -> Path:
    """A fresh tmpfs of ``size`` bytes at ``folder`` (inside the stage's namespace)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    return folder


def unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Take all the free space of ``folder``'s file system but ``leave`` bytes, in the file ``.filler``."""
    filler = folder / ".filler"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(filler, "ab") as f:
        if free > leave:
            os.posix_fallocate(f.fileno(), f.tell(), free - leave)
    return filler


def free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def clear_error(out: str, folder: Path) -> bool:
    """One message naming the folder and the space needed, no traceback."""
    return "Traceback" not in out and str(folder) in out and "need" in out and "free" in out


# -- one case -----------------------------------------------------------------------------------------------------
def _case(stage: str, disk: Path, cmd: list[str], cwd: Path, env: dict[str, str], rng: random.Random, window: float,
          midway: bool, leave: int, folder_named: Path, marker: str | None = None) -> tuple[Outcome, Finished]:
    """Fill ``disk`` (before the command, or at a random moment of its run), run ``cmd``; then free the space and
    rerun it. Returns the fault's outcome (the caller adds what is stage-specific) and the rerun."""
    filler = None
    if not midway:
        filler = fill(disk, leave)
        first = run(cmd, cwd, env, LIMIT)
        how = f"full from the start ({leave // 1024} KiB left)"
    else:
        job = Launched(cmd, cwd, env)
        base = job.wait_for(marker, LIMIT) if marker else 0.0
        at = (base or 0.0) + rng.uniform(0.0, window)
        if job.sleep_until(at):
            filler = fill(disk, leave)
        first = job.finish(LIMIT)
        how = f"filled at {at:.2f} s ({leave // 1024} KiB left)" + ("" if filler else ", after it had ended")
    ok_error = first.returncode == 0 or clear_error(first.output, folder_named)
    note = "" if first.returncode == 0 else first.output.strip().splitlines()[-1][:300]
    outcome = Outcome("disk full", stage, how, survived=ok_error, tracebacks=first.tracebacks,
                      hangs=int(first.timed_out), note=note)
    if filler is not None:
        filler.unlink()
    again = run(cmd, cwd, env, LIMIT)
    outcome.survived = outcome.survived and again.returncode == 0 and not again.timed_out
    outcome.tracebacks += again.tracebacks
    outcome.hangs += int(again.timed_out)
    if again.returncode:
        outcome.note += f"; rerun failed: {again.tail(600)}"
    return outcome, again


# -- the stages ---------------------------------------------------------------------------------------------------
def cache(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``asc extract`` of 40 clips into a 1 MiB tmpfs (the entries take about 430 KiB)."""
    from reliability.kills import _computed, _extract_cmd, extraction_reference

    src, env, reference, seconds = extraction_reference(work, 40)
    outcomes = []
    for case in budget.cases(count):
        t0 = time.monotonic()
        disk = mount(data.fresh(work / f"case{case}") / "disk", 1 << 20)
        try:
            midway = case % 2 == 1
            leave = rng.choice([0, 4096, 30_000, 100_000]) if not midway else rng.choice([0, 8192, 20_000])
            cmd = _extract_cmd(src, disk)
            outcome, again = _case("feature cache", disk, cmd, work, env, rng, seconds, midway, leave, disk)
            now = arrays(disk)
            outcome.identical = now == reference
            outcome.lost = len(set(reference) - set(now))
            computed = _computed(again.output) or 0
            outcome.note += f"; rerun computed {computed}"
            junk = [p.name for p in disk.rglob(".*.tmp")]
            if junk:
                outcome.note += f"; left: {junk}"
                outcome.lost += len(junk)  # space the user cannot see taken by a failed write
            outcomes += share_time([outcome], t0)
        finally:
            unmount(disk)
    return outcomes


def artifacts(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``asc train`` whose MLflow artifacts (checkpoint, model, confusion matrix) go to an 8 MiB tmpfs that fills up;
    the store and the checkpoints are on the ordinary disk. The rerun resumes the run and records it."""
    from reliability import stores
    from reliability.kills import World

    world = World(work)
    extra = ("trainer.max_epochs=3",)
    ref_dir = data.fresh(work / "reference", world.store)
    ref = run(world.command(ref_dir, *extra), ref_dir, world.env, LIMIT)
    assert ref.returncode == 0, ref.tail()
    (reference,) = stores.runs(ref_dir / "mlflow.db")
    outcomes = []
    for case in budget.cases(count):
        t0 = time.monotonic()
        folder = data.fresh(work / f"case{case}", world.store, ref_dir / "cache")
        disk = mount(folder / "mlartifacts", 8 << 20)
        try:
            midway = case % 2 == 1
            leave = rng.choice([0, 50_000, 300_000])
            outcome, _ = _case("MLflow artifacts", disk, world.command(folder, *extra), folder, world.env, rng,
                               ref.seconds / 2, midway, leave, disk, marker="features:")
            records = stores.runs(folder / "mlflow.db")
            finished = [r for r in records if r.status == "FINISHED"]
            if len(finished) == 1:
                diff = stores.same_metrics(reference, finished[0])
                outcome.identical = not diff
                outcome.lost += len(reference.artifacts - finished[0].artifacts)
                if diff:
                    outcome.note += f"; differs: {diff[:3]}"
            else:
                outcome.identical, outcome.lost = False, 1
                outcome.note += f"; {len(finished)} finished runs"
            bad = stores.checkpoint_problems(disk)
            outcome.lost += len(bad)
            if len(records) > 1:
                outcome.redone += len(records) - 1  # the run was trained again instead of resumed
            outcomes += share_time([outcome], t0)
        finally:
            unmount(disk)
    return outcomes


def download(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``asc download`` into an 8 MiB tmpfs (the archives and their members take about 6 MiB)."""
    from asc.data.download import DEV_DIRNAME
    from reliability.kills import RATE, _download_cmd
    from zenodo import Zenodo

    archives = data.archives(work / "source")
    members = data.unpacked(archives)
    env = environment()
    zenodo = Zenodo(archives, rate=RATE)
    outcomes = []
    try:
        ref = run(_download_cmd(zenodo.record_url, work / "reference"), work, env, LIMIT)
        assert ref.returncode == 0, ref.tail()
        for case in budget.cases(count):
            t0 = time.monotonic()
            disk = mount(data.fresh(work / f"case{case}") / "disk", 8 << 20)
            try:
                midway = case % 2 == 1
                leave = rng.choice([100_000, 1_000_000, 3_000_000]) if not midway else rng.choice([0, 20_000, 200_000])
                cmd = _download_cmd(zenodo.record_url, disk)
                outcome, _ = _case("download folder", disk, cmd, work, env, rng, ref.seconds, midway, leave, disk)
                tree = {p.relative_to(disk).as_posix(): p.read_bytes() for p in (disk / DEV_DIRNAME).rglob("*")
                        if p.is_file() and not p.name.startswith(".")}
                outcome.identical = tree == members
                outcome.lost = len(set(members) - set(tree))
                junk = [p.name for p in disk.rglob("*") if p.name.endswith((".tmp", ".part"))]
                if junk:
                    outcome.note += f"; left: {junk}"
                outcomes += share_time([outcome], t0)
            finally:
                unmount(disk)
    finally:
        zenodo.close()
    return outcomes


STAGES = {"cache": cache, "artifacts": artifacts, "download": download}


def in_namespace(stage: str, work: Path, count: int, seed: int, seconds: float) -> list[Outcome]:
    """Run a disk-full stage in a private mount namespace (a child process); [] with a printed reason if none."""
    prefix, how = namespace()
    if prefix is None:
        print(f"   SKIPPED disk full:{stage}: {how}", flush=True)
        return []
    out = work / "outcomes.json"
    cmd = [*prefix, sys.executable, "-m", "reliability.disk", stage, str(work), str(count), str(seed), str(seconds),
           str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    got = subprocess.run(cmd, env=env, timeout=seconds + 3 * LIMIT)
    if got.returncode or not out.is_file():
        raise RuntimeError(f"the disk-full stage {stage} failed in its namespace ({how}): status {got.returncode}")
    return [Outcome(**o) for o in json.loads(out.read_text())]


def main(argv: list[str]) -> None:
    from reliability.harness import seeded

    stage, work, count, seed, seconds, out = argv
    got = STAGES[stage](Path(work), int(count), seeded(int(seed), f"disk full:{stage}"), Budget(float(seconds)))
    Path(out).write_text(json.dumps([asdict(o) for o in got]))


if __name__ == "__main__":
    main(sys.argv[1:])
