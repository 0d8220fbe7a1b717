"""SIGKILL at a random moment, then a rerun: the result equals an uninterrupted run, nothing finished is redone.

Each stage first runs its command once without a fault (the reference, and how long the work takes), then injects
kills in chains: the command is killed at a random moment, rerun and killed again (``per_case`` kills), then rerun to
its end. After every kill the files under valid names are checked (a half-written one counts as lost) and so is the
work already done (finished units changed or recomputed by the next run count as redone); after the last rerun the
result is compared with the reference. Kills go to the whole process group, as a scheduler's or the OOM killer's
would reach the workers too.

Stages: ``extract`` (``asc extract``), ``embeddings`` (``asc train`` while it fills the embedding cache), ``train``
(``asc train``), ``sweep`` (``asc train -m``), ``tune`` (``asc tune``), ``download`` (``asc download`` from a fake
Zenodo on 127.0.0.1 that serves at a bounded rate).
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from reliability import data
from reliability.harness import (Budget, Finished, Outcome, arrays, asc, environment, kill_at, leftovers, run, share_time,
                                snapshot)

#: Seconds a command may take before it counts as hung.
LIMIT = 600


def _chains(budget: Budget, kills: int, per_case: int, injected: Callable[[], int]) -> Iterator[tuple[int, int]]:
    """``(case, kills for it)``, at most ``per_case`` each, until ``kills`` are injected (``injected()`` counts them)
    or the stage's time, counted from the first case, is spent. A chain of kills on one case ends early when the
    command finishes before the next kill (a resumed run has less left to do), so new cases start until the count is
    reached."""
    budget.begin()
    case = 0
    while (left := kills - injected()) > 0 and not budget.spent:
        yield case, min(per_case, left)
        case += 1


def _moments(budget: Budget, n: int, steps: list[Outcome], rng: random.Random, window: float) -> Iterator[float]:
    """Up to ``n`` kill moments drawn uniformly over ``window`` seconds, one per kill of a chain (``steps``: its
    outcomes so far). Out of time, no more kills once the chain has one; the rerun after them still runs."""
    for _ in range(n):
        if budget.spent and steps:
            return
        yield rng.uniform(0.0, window)


# -- asc extract ---------------------------------------------------------------------------------------------------
EXTRACT_CLIPS = 60


def _extract_cmd(src: Path, cache: Path) -> list[str]:
    return asc("extract", str(src), "--kind", "folder", "--cache", str(cache), "--workers", "1", "--no-progress",
               *data.EXTRACT_SET)


def _computed(out: str) -> int | None:
    m = re.search(r"(\d+) computed, (\d+) already cached", out)
    return int(m.group(1)) if m else None


def _close_chain(steps: list[Outcome], final: Finished, t0: float, failed: bool, tail: int = 800) -> list[Outcome]:
    """A chain of kills on one case, closed: its last step carries the final rerun's tracebacks, hang and (when
    ``failed``) output; the earlier kills share the chain's survival and identity; the chain's time is shared out."""
    last = steps[-1]
    last.tracebacks, last.hangs = final.tracebacks, int(final.timed_out)
    if failed:
        last.note += f"; rerun failed: {final.tail(tail)}"
    for s in steps[:-1]:
        s.survived, s.identical = last.survived, last.identical
    return share_time(steps, t0)


def extraction_reference(work: Path, clips: int) -> tuple[Path, dict[str, str], dict[str, bytes], float]:
    """``clips`` generated recordings (``work/recordings``), the commands' environment, and the cache entries
    (``.npy`` name -> bytes) and wall time of one uninterrupted ``asc extract`` of them into ``work/reference``."""
    src = data.recordings(work / "recordings", clips)
    env = environment()
    ref = run(_extract_cmd(src, work / "reference"), work, env, LIMIT)
    assert ref.returncode == 0, ref.tail()
    return src, env, arrays(work / "reference"), ref.seconds


def extract(work: Path, kills: int, rng: random.Random, budget: Budget, per_case: int = 2) -> list[Outcome]:
    """Kill ``asc extract`` (one worker, 60 clips) at moments drawn uniformly over an uninterrupted run's time."""
    src, env, reference, seconds = extraction_reference(work, EXTRACT_CLIPS)
    assert len(reference) == EXTRACT_CLIPS
    outcomes = []
    for case, n in _chains(budget, kills, per_case, lambda: len(outcomes)):
        t0 = time.monotonic()
        cache = data.fresh(work / f"case{case}") / "cache"
        before: dict[str, tuple[int, bytes]] = {}
        steps = []
        for at in _moments(budget, n, steps, rng, seconds):
            _, alive, when = kill_at(_extract_cmd(src, cache), work, env, at)
            now = snapshot(cache, "**/*.npy")  # with times: an entry rewritten with the same bytes is redone too
            lost = sum(reference.get(k) != v[1] for k, v in now.items())  # half-written or wrong under a valid name
            redone = sum(now.get(k) != v for k, v in before.items())  # a finished entry rewritten
            steps.append(Outcome("kill", "extract", f"kill at {when:.2f} s" + ("" if alive else " (had ended)"),
                                 survived=True, lost=lost, redone=redone, note=f"{len(now)} entries done"))
            before = now
        final = run(_extract_cmd(src, cache), work, env, LIMIT)
        now = snapshot(cache, "**/*.npy")
        computed = _computed(final.output)
        last = steps[-1]
        last.survived = final.returncode == 0 and not final.timed_out
        last.redone += sum(now.get(k) != v for k, v in before.items())
        last.redone += max(0, (computed or 0) - (EXTRACT_CLIPS - len(before)))
        last.identical = {k: v for k, (_, v) in now.items()} == reference
        last.lost += len(set(reference) - set(now))
        outcomes += _close_chain(steps, final, t0, failed=not last.survived, tail=500)
    return outcomes


# -- asc download ---------------------------------------------------------------------------------------------------
#: Bytes per second of the fake Zenodo: the ~3 MB of archives take about 3 s.
RATE = 1.0e6


def _download_cmd(url: str, dest: Path) -> list[str]:
    return asc("download", str(dest), "--record-url", url, "--no-progress", "--retries", "2", "--timeout", "10")


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def download(work: Path, kills: int, rng: random.Random, budget: Budget, per_case: int = 2) -> list[Outcome]:
    """Kill ``asc download`` at moments drawn uniformly over an uninterrupted download's time."""
    from asc.data.download import DEV_DIRNAME, STATE
    from zenodo import Zenodo

    archives = data.archives(work / "source")
    members = data.unpacked(archives)
    md5 = {k: _md5(v) for k, v in archives.items()}
    env = environment()
    zenodo = Zenodo(archives, rate=RATE)
    try:
        ref = run(_download_cmd(zenodo.record_url, work / "reference"), work, env, LIMIT)
        assert ref.returncode == 0, ref.tail()
        outcomes = []
        for case, n in _chains(budget, kills, per_case, lambda: len(outcomes)):
            t0 = time.monotonic()
            dest = data.fresh(work / f"case{case}") / "dest"
            steps: list[Outcome] = []
            state: tuple[set[str], dict[str, int]] = (set(), {})  # archives complete, bytes of each .part
            for at in _moments(budget, n, steps, rng, ref.seconds):
                zenodo.requests.clear()
                _, alive, when = kill_at(_download_cmd(zenodo.record_url, dest), work, env, at)
                if steps:  # what this run fetched that the previous kill had left complete or partly done
                    steps[-1].redone += _refetched(zenodo, *state)
                lost, complete, parts = _download_state(dest, archives, members, md5)
                steps.append(Outcome("kill", "download", f"kill at {when:.2f} s" + ("" if alive else " (had ended)"),
                                     survived=True, lost=lost, note=f"{len(complete)} archive(s) complete"))
                state = (complete, parts)
            zenodo.requests.clear()
            final = run(_download_cmd(zenodo.record_url, dest), work, env, LIMIT)
            last = steps[-1]
            last.redone += _refetched(zenodo, *state)
            lost, _, _ = _download_state(dest, archives, members, md5)
            tree = {p.relative_to(dest).as_posix(): p.read_bytes() for p in (dest / DEV_DIRNAME).rglob("*")
                    if p.is_file() and not p.name.startswith(".")}
            done = {p.name for p in (dest / STATE).glob("*.done")}
            last.survived = final.returncode == 0 and not final.timed_out
            last.identical = tree == members and done == {f"{k}.done" for k in archives}
            last.lost += lost + len(set(members) - set(tree))
            junk = leftovers(dest)
            if junk:
                last.note += f"; left behind: {junk}"
            outcomes += _close_chain(steps, final, t0, failed=not last.survived, tail=500)
        return outcomes
    finally:
        zenodo.close()


def _download_state(dest: Path, archives: dict[str, bytes], members: dict[str, bytes],
                    md5: dict[str, str]) -> tuple[int, set[str], dict[str, int]]:
    """``(files under valid names that are not what they claim, archives complete, bytes in each .part)``."""
    from asc.data.download import DEV_DIRNAME, STATE

    lost, complete = 0, set()
    for key, blob in archives.items():
        path = dest / key
        if path.is_file():
            if path.read_bytes() != blob:
                lost += 1
            else:
                complete.add(key)
        marker = dest / STATE / f"{key}.done"
        if marker.is_file():
            if marker.read_text().strip() != md5[key]:
                lost += 1
            else:
                complete.add(key)
    for p in (dest / DEV_DIRNAME).rglob("*") if (dest / DEV_DIRNAME).is_dir() else []:
        if p.is_file() and not p.name.startswith("."):
            if members.get(p.relative_to(dest).as_posix()) != p.read_bytes():
                lost += 1
    parts = {p.name.removesuffix(".part"): p.stat().st_size for p in dest.glob("*.part")} if dest.is_dir() else {}
    return lost, complete, parts


def _refetched(zenodo, complete: set[str], parts: dict[str, int]) -> int:
    """Archives fetched again although complete, or a partial one not resumed where it stopped."""
    redone = 0
    first: dict[str, str | None] = {}
    for path, rng in zenodo.file_requests():
        key = path.rsplit("/", 2)[-2]
        first.setdefault(key, rng)
        if key in complete:
            redone += 1
    for key, size in parts.items():
        if size and key in first and first[key] != f"bytes={size}-":
            redone += 1
    return redone


# -- training: asc train, the embedding cache, sweeps, studies ----------------------------------------------------
class World:
    """What the training stages share: the 50-clip set and an MLflow store with its tables made."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.data = data.tau(work / "tau")
        self.store = data.empty_store(work / "empty.db")
        self.env = environment()

    def command(self, folder: Path, *extra: str) -> list[str]:
        flags = [e for e in extra if e.startswith("-")]  # -m before the overrides
        over = [e for e in extra if not e.startswith("-")]
        return asc("train", *flags, *data.run_overrides(folder, self.data, folder / "cache", *over))


def _features_computed(out: str) -> int:
    return sum(int(n) for n in re.findall(r"features: (\d+) computed", out))


def _done_epochs(records) -> dict[str, int]:
    """Per config hash, the last epoch safely kept: its last checkpoint's, or every epoch (10**9) once FINISHED."""
    from reliability import stores

    done: dict[str, int] = {}
    for r in records:
        epoch = 10**9 if r.status == "FINISHED" else stores.checkpoint_epoch(Path(r.tags.get("checkpoint_dir", "")) / "last.ckpt")
        done[r.config_hash] = max(done.get(r.config_hash, -1), epoch)
    return done


def _redone_epochs(records, since_ms: int, done: dict[str, int], steps: dict[str, list[int]]) -> int:
    """Epochs kept before a kill (``done``) validated again after ``since_ms``, over every run of each config."""
    redone = 0
    for h, epoch in done.items():
        if epoch < 0 or h not in steps:
            continue
        limit = steps[h][min(epoch, len(steps[h]) - 1)]
        redone += len({(r.run_id, s) for r in records if r.config_hash == h
                       for s in r.logged_after("val/acc", since_ms) if s <= limit})
    return redone


def _jobs(records) -> list:
    """The training runs of a store (not the parent runs of sweeps)."""
    return [r for r in records if "asc.parent" not in r.tags]


def _complete(records) -> bool:
    """Every config finished, and every sweep parent too."""
    jobs = _jobs(records)
    parents = [r for r in records if "asc.parent" in r.tags]
    return bool(jobs) and all(any(r.status == "FINISHED" for r in jobs if r.config_hash == h)
                              for h in {r.config_hash for r in jobs}) and all(p.status == "FINISHED" for p in parents)


def _reference(world: World, name: str, extra: tuple[str, ...], marker: str, done=None, whole: bool = False) -> tuple:
    """The uninterrupted run: its folder, its seconds from ``marker`` (``whole``: from its start) to the end (or to
    ``done()``), its records."""
    from reliability import stores
    from reliability.harness import Launched

    folder = data.fresh(world.work / name, world.store)
    job = Launched(world.command(folder, *extra), folder, world.env)
    start = job.wait_for(marker, LIMIT)
    assert start is not None, job.finish(LIMIT).tail()
    end = None
    while done is not None and end is None and job.proc.poll() is None:
        end = time.monotonic() - job.start if done(folder) else None
        time.sleep(0.01)
    fin = job.finish(LIMIT)
    assert fin.returncode == 0, fin.tail()
    return folder, (end or fin.seconds) - (0.0 if whole else start), stores.runs(folder / "mlflow.db")


def _train_stage(stage: str, work: Path, kills: int, rng: random.Random, budget: Budget, per_case: int,
                 extra: tuple[str, ...] = (), marker: str = "features:", done=None, check=None,
                 whole: bool = True) -> list[Outcome]:
    """Kill ``asc train`` ``extra`` (one run, or a sweep with ``-m``) at a moment drawn uniformly over the
    uninterrupted command's whole run (``whole``: from its start, as a scheduler's or the OOM killer's kill comes; the
    outcome says whether the features were loaded by then), or over its time between ``marker`` and its end (or
    ``done(folder)``). ``check(folder, reference folder, killed)`` adds stage-specific ``(lost, redone)``."""
    from reliability import stores

    world = World(work)
    ref_dir, window, ref_runs = _reference(world, "reference", extra, marker, done, whole)
    reference = {r.config_hash: r for r in _jobs(ref_runs)}
    steps_of_epoch = {h: sorted(r.values("val/acc")) for h, r in reference.items()}
    outcomes = []
    for case, n in _chains(budget, kills, per_case, lambda: len(outcomes)):
        t0 = time.monotonic()
        folder = data.fresh(work / f"case{case}", world.store, ref_dir / "cache")
        env = {**world.env, "TMPDIR": str(folder / "tmp")}
        (folder / "tmp").mkdir()
        steps: list[Outcome] = []
        kept: dict[str, int] = {}
        records: list = []
        for at in _moments(budget, n, steps, rng, window):
            since = int(time.time() * 1000)
            fin, alive, when = kill_at(world.command(folder, *extra), folder, env, at,
                                       marker=None if whole else marker, timeout=LIMIT)
            phase = ("after the features were loaded" if "features:" in fin.output else "while starting") \
                if whole else f"after {marker!r}"
            records = stores.runs(folder / "mlflow.db", artifacts=False)
            redone = _redone_epochs(records, since, kept, steps_of_epoch) + _features_computed(fin.output)
            bad = stores.checkpoint_problems(folder / "outputs") + stores.checkpoint_problems(folder / "mlartifacts")
            lost, more = check(folder, ref_dir, True) if check else (0, 0)
            kept = _done_epochs(_jobs(records))
            shown = {h[:6]: ("done" if e == 10**9 else e) for h, e in kept.items()}
            steps.append(Outcome("kill", stage, f"kill at {when:.2f} s {phase}" + ("" if alive else " (had ended)"),
                                 survived=True, redone=redone + more, lost=len(bad) + lost,
                                 note=f"kept epochs {shown}" + (f"; damaged: {bad}" if bad else "")))
            if _complete(records):  # killed after everything was recorded: nothing to rerun
                steps[-1].note += "; it had finished"
                break
        last = steps[-1]
        final = Finished([], 0, "", 0.0)
        if not _complete(records):
            since = int(time.time() * 1000)
            final = run(world.command(folder, *extra), folder, env, LIMIT)
            records = stores.runs(folder / "mlflow.db")
            last.redone += _redone_epochs(records, since, kept, steps_of_epoch) + _features_computed(final.output)
        else:
            records = stores.runs(folder / "mlflow.db")
        lost, more = check(folder, ref_dir, False) if check else (0, 0)
        last.lost += lost
        last.redone += more
        jobs = _jobs(records)
        running = [r.run_id for r in records if r.status == "RUNNING"]
        parents = [r for r in records if "asc.parent" in r.tags]
        last.survived = (final.returncode == 0 and not final.timed_out and _complete(records) and not running
                         and len(parents) == len([r for r in ref_runs if "asc.parent" in r.tags]))
        same, problems = True, []
        for h, ref in reference.items():
            finished = [r for r in jobs if r.config_hash == h and r.status == "FINISHED"]
            if len(finished) != 1:
                same = False
                last.lost += not finished
                problems.append(f"{h[:6]}: {len(finished)} finished runs")
                continue
            got = finished[0]
            diff = stores.same_metrics(ref, got)
            if "checkpoints/best.ckpt" in ref.artifacts:
                ckpt = stores.local_artifact(got, "checkpoints/best.ckpt")
                diff += [] if ckpt.is_file() and stores.same_weights(stores.local_artifact(ref, "checkpoints/best.ckpt"),
                                                                     ckpt) else ["best.ckpt weights"]
            last.lost += len(ref.artifacts - got.artifacts)
            if diff:
                same = False
                problems.append(f"{h[:6]}: {diff[:3]}")
        last.identical = same
        if problems:
            last.note += f"; differs: {problems}"
        if running:
            last.note += f"; runs left RUNNING: {running}"
        junk = [p.name for p in (folder / "tmp").rglob("*") if p.is_file()]
        if junk:
            last.note += f"; left in TMPDIR: {len(junk)} file(s)"
        outcomes += _close_chain(steps, final, t0, failed=bool(final.returncode))
    return outcomes


def train(work: Path, kills: int, rng: random.Random, budget: Budget, per_case: int = 10) -> list[Outcome]:
    """Kill ``asc train`` (6 epochs at most, early stopping after 2 without progress, deterministic) at moments drawn
    over its time after the features are loaded."""
    return _train_stage("train", work, kills, rng, budget, per_case)


EMBEDDINGS = ("model.freeze=true", "model.embedding_cache.enabled=true", "model.embedding_cache.positions=8",
              "model.embedding_cache.masks=4", "model.image_size=64", "logger.log_model=false")


def _embedding_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.glob("cache/embeddings-*/*")
            if not p.name.startswith(".")}


def _embedding_check(folder: Path, ref_dir: Path, killed: bool) -> tuple[int, int]:
    """A complete entry (``info.json`` written) must hold the reference's bytes; partial files are never complete."""
    have, want = _embedding_files(folder), _embedding_files(ref_dir)
    complete = any(k.endswith("info.json") for k in have)
    lost = sum(have.get(k) != v for k, v in want.items()) if complete else 0
    if not killed:
        lost += sum(have.get(k) != v for k, v in want.items())
    return lost, 0


def sweep(work: Path, kills: int, rng: random.Random, budget: Budget, per_case: int = 10) -> list[Outcome]:
    """Kill a sweep (``asc train -m seed=0,1``: two jobs one after another) at moments drawn over its run."""
    return _train_stage("sweep", work, kills, rng, budget, per_case, SWEEP)


#: The sweep: two seeds, 3 epochs at most, no MLflow model (the single-run stage logs one).
SWEEP = ("-m", "seed=0,1", "trainer.max_epochs=3", "logger.log_model=false")


def embeddings(work: Path, kills: int, rng: random.Random, budget: Budget, per_case: int = 10) -> list[Outcome]:
    """Kill ``asc train`` with the embedding cache (a frozen small CNN, 8 positions x 4 masks) while it fills it:
    at moments drawn between the log line that starts the fill and the entry's completion in an uninterrupted run."""
    return _train_stage("embeddings", work, kills, rng, budget, per_case, EMBEDDINGS, marker="embedding cache: computing",
                        done=lambda f: bool(list(f.glob("cache/embeddings-*/info.json"))), check=_embedding_check,
                        whole=False)


# -- asc tune ---------------------------------------------------------------------------------------------------------
TUNE_SPACE = """# the reliability suite's study: three trials of one seed over the mask and the learning rate
study_name: reliability
storage: sqlite:///optuna.db
n_trials: 3
seeds: [0]
sampler: {name: tpe, seed: 0}
pruner: {name: none}
retrain: false
retrain_seeds: [0]
enqueue: []
space:
  mask: {type: float, low: 0.0, high: 0.3}
  model.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


def _trials(folder: Path) -> list[tuple[int, str, dict, float | None]]:
    """``(number, state, params, value)`` of the study's trials."""
    from reliability import stores

    db = folder / "optuna.db"
    if not db.is_file():
        return []
    try:
        found = stores.trials(db, "reliability")
    except KeyError:  # the study does not exist yet
        return []
    return [(t.number, t.state.name, dict(t.params), t.value) for t in found]


def tune(work: Path, kills: int, rng: random.Random, budget: Budget, per_case: int = 10) -> list[Outcome]:
    """Kill ``asc tune`` (three trials, one seed each, 2 epochs, TPE seeded) at moments drawn over its whole run. Identical: the completed trials' parameters and values, in order, as an uninterrupted study's;
    redone: a configuration that had completed evaluated again."""
    from reliability import stores

    world = World(work)
    conf = work / "conf" / "tune"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "reliability.yaml").write_text(TUNE_SPACE)

    def command(folder: Path) -> list[str]:
        over = data.run_overrides(folder, world.data, folder / "cache", "trainer.max_epochs=2", "logger.log_model=false")
        return asc("tune", *over, f"hydra.searchpath=[file://{work / 'conf'}]", "tune=reliability",
                   f"tune.storage=sqlite:///{folder / 'optuna.db'}")

    ref_dir = data.fresh(work / "reference", world.store)
    from reliability.harness import Launched

    job = Launched(command(ref_dir), ref_dir, world.env)
    start = job.wait_for("features:", LIMIT)
    ref = job.finish(LIMIT)
    assert ref.returncode == 0 and start is not None, ref.tail()
    window = ref.seconds  # kills drawn over the whole run, as in _train_stage
    reference = [(p, v) for _, state, p, v in sorted(_trials(ref_dir)) if state == "COMPLETE"]
    outcomes = []
    for case, n in _chains(budget, kills, per_case, lambda: len(outcomes)):
        t0 = time.monotonic()
        folder = data.fresh(work / f"case{case}", world.store, ref_dir / "cache")
        steps: list[Outcome] = []
        for at in _moments(budget, n, steps, rng, window):
            before = [p for _, state, p, _ in _trials(folder) if state == "COMPLETE"]
            fin, alive, when = kill_at(command(folder), folder, world.env, at, timeout=LIMIT)
            phase = "after the features were loaded" if "features:" in fin.output else "while starting"
            now = _trials(folder)
            done = [p for _, state, p, _ in now if state == "COMPLETE"]
            redone = max(0, sum(done.count(p) - 1 for p in before))  # a completed configuration evaluated again
            steps.append(Outcome("kill", "tune", f"kill at {when:.2f} s {phase}" + ("" if alive else " (had ended)"),
                                 survived=True, redone=redone + _features_computed(fin.output),
                                 note=f"{len(done)} trial(s) complete, "
                                      f"{sum(s == 'RUNNING' for _, s, _, _ in now)} running"))
        before = [p for _, state, p, _ in _trials(folder) if state == "COMPLETE"]
        final = run(command(folder), folder, world.env, LIMIT)
        now = _trials(folder)
        done = [(p, v) for _, state, p, v in sorted(now) if state == "COMPLETE"]
        last = steps[-1]
        last.redone += max(0, sum([p for p, _ in done].count(p) - 1 for p in before)) + _features_computed(final.output)
        records = stores.runs(folder / "mlflow.db", artifacts=False)
        running = [r.run_id for r in records if r.status == "RUNNING"]
        zombies = [t for t, s, _, _ in now if s == "RUNNING"]
        last.survived = final.returncode == 0 and not final.timed_out and len(done) == len(reference) and not running \
            and not zombies
        last.identical = [p for p, _ in done] == [p for p, _ in reference] and all(
            abs(a - b) < 1e-6 for (_, a), (_, b) in zip(done, reference, strict=True))
        last.lost += sum(p not in [q for q, _ in done] for p in before)
        if not last.identical:
            last.note += f"; trials {done} != {reference}"
        if running or zombies:
            last.note += f"; left RUNNING: {len(running)} MLflow run(s), trials {zombies}"
        outcomes += _close_chain(steps, final, t0, failed=bool(final.returncode))
    return outcomes
