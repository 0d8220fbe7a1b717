"""Two commands on the same stores at once: two extractions into one feature cache, two sweeps into one MLflow store.

Both commands must complete; each clip is computed once over the two (their ``computed`` counts add up to the
clips), each configuration is trained once (one FINISHED run per configuration, no other run), and the results equal
a single command's (cache bytes; run metrics). A clip or run computed twice is *redone*.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from reliability import data
from reliability.harness import Budget, Launched, Outcome, arrays, run, share_time

LIMIT = 600


def extract(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``count`` pairs of ``asc extract`` (one worker each) started together on the same source and cache."""
    from reliability.kills import _computed, _extract_cmd, extraction_reference

    n = 40
    src, env, reference, _ = extraction_reference(work, n)
    outcomes = []
    for case in budget.cases(count):
        t0 = time.monotonic()
        cache = data.fresh(work / f"case{case}") / "cache"
        delay = rng.uniform(0.0, 2.0)
        a = Launched(_extract_cmd(src, cache), work, env)
        time.sleep(delay)
        b = Launched(_extract_cmd(src, cache), work, env)
        fa, fb = a.finish(LIMIT), b.finish(LIMIT)
        now = arrays(cache)
        computed = (_computed(fa.output) or 0) + (_computed(fb.output) or 0)
        o = Outcome("concurrency", "two extractions", f"second started {delay:.2f} s after the first",
                    survived=fa.returncode == 0 and fb.returncode == 0, identical=now == reference,
                    redone=max(0, computed - n), lost=len(set(reference) - set(now)),
                    tracebacks=fa.tracebacks + fb.tracebacks, hangs=int(fa.timed_out) + int(fb.timed_out),
                    note=f"computed {computed} for {n} clips")
        if not o.survived:
            o.note += f"; {fa.tail(400)} | {fb.tail(400)}"
        outcomes += share_time([o], t0)
    return outcomes


SWEEP = ("-m", "seed=0,1", "trainer.max_epochs=3", "logger.log_model=false")


def sweep(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``count`` pairs of the same sweep (``asc train -m seed=0,1``) started together on one store, cache and
    outputs folder, from an empty cache."""
    from reliability import stores
    from reliability.kills import World, _features_computed, _jobs

    world = World(work)
    ref_dir = data.fresh(work / "reference", world.store)
    ref = run(world.command(ref_dir, *SWEEP), ref_dir, world.env, LIMIT)
    assert ref.returncode == 0, ref.tail()
    reference = {r.config_hash: r for r in _jobs(stores.runs(ref_dir / "mlflow.db", artifacts=False))}
    clips = _features_computed(ref.output)
    outcomes = []
    for case in budget.cases(count):
        t0 = time.monotonic()
        folder = data.fresh(work / f"case{case}", world.store)
        delay = rng.uniform(0.0, 3.0)
        a = Launched(world.command(folder, *SWEEP), folder, world.env)
        time.sleep(delay)
        b = Launched(world.command(folder, *SWEEP), folder, world.env)
        fa, fb = a.finish(LIMIT), b.finish(LIMIT)
        records = stores.runs(folder / "mlflow.db", artifacts=False)
        jobs = _jobs(records)
        computed = _features_computed(fa.output) + _features_computed(fb.output)
        trained = len(jobs)
        diffs = []
        for h, r in reference.items():
            done = [j for j in jobs if j.config_hash == h and j.status == "FINISHED"]
            if len(done) != 1:
                diffs.append(f"{h[:6]}: {len(done)} finished")
            else:
                diffs += stores.same_metrics(r, done[0])[:2]
        skipped = len(re.findall(r"already finished in this sweep", fa.output + fb.output))
        o = Outcome("concurrency", "two sweeps", f"second started {delay:.2f} s after the first",
                    survived=fa.returncode == 0 and fb.returncode == 0 and not [r for r in records if r.status == "RUNNING"],
                    identical=not diffs, redone=max(0, computed - clips) + max(0, trained - len(reference)),
                    lost=sum(not any(j.config_hash == h and j.status == "FINISHED" for j in jobs) for h in reference),
                    tracebacks=fa.tracebacks + fb.tracebacks, hangs=int(fa.timed_out) + int(fb.timed_out),
                    note=f"{trained} runs for {len(reference)} configs ({skipped} skipped as finished), features "
                         f"computed {computed} for {clips} clips; parents: "
                         f"{len([r for r in records if 'asc.parent' in r.tags])}" + (f"; differs: {diffs[:3]}" if diffs else ""))
        if not o.survived:
            o.note += f"; {fa.tail(600)} | {fb.tail(600)}"
        outcomes += share_time([o], t0)
    return outcomes
