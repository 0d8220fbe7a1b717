"""``python -m reliability`` (``make reliability``): every fault family at full scale, then the table.

    PYTHONPATH=tests python -m reliability                       # the full suite
    PYTHONPATH=tests python -m reliability --only kill:extract --scale 0.2 --keep
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from reliability import harness
from reliability.stages import STAGES


def machine() -> str:
    cpus = os.cpu_count()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.release()}, {cpus} CPU(s) ({model}), {mem:.0f} GiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reliability", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=[], help="stages to run, as family:stage or family (default: all)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of each stage's fault count (default: 1)")
    p.add_argument("--minutes", type=float, default=26.0,
                   help="time for injecting faults over the whole suite (default: 26): each stage gets at most its "
                        "share of what is left, in proportion to its own limit; reference runs come on top")
    p.add_argument("--stretch", type=float, default=1.0,
                   help="multiply every stage's own time limit (e.g. 3 on a loaded machine, with --only kill and more "
                        "--minutes, so that each kill stage reaches its full count; default: 1)")
    p.add_argument("--seed", type=int, default=0, help="the random seed of every draw (default: 0)")
    p.add_argument("--work", type=Path, help="working folder (default: a temporary folder, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.add_argument("--json", type=Path, help="write every outcome as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print every fault, not only those not survived")
    a = p.parse_args(argv)
    chosen = [s for s in STAGES if not a.only or s.key in a.only or s.family in a.only]
    if not chosen:
        p.error(f"--only {a.only}: no such stage; stages: {[s.key for s in STAGES]}")
    work = a.work or Path(tempfile.mkdtemp(prefix="asc-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    start, load = time.monotonic(), os.getloadavg()
    outcomes: list[harness.Outcome] = []
    print(f"reliability suite, seed {a.seed}, in {work}\nmachine: {machine()}, load average {load[0]:.2f}", flush=True)
    try:
        for i, stage in enumerate(chosen):
            count = stage.count if stage.fixed else max(1, round(stage.count * a.scale))
            left = a.minutes * 60 - (time.monotonic() - start)
            share = max(20.0, left * stage.seconds / sum(s.seconds for s in chosen[i:]))
            seconds = min(stage.seconds * a.stretch, share)
            t0 = time.monotonic()
            print(f"\n== {stage.key}: {count} fault(s), at most {seconds:.0f} s of faults", flush=True)
            try:
                got = stage.run(work / stage.key.replace(":", "-").replace(" ", "_"), count, a.seed, seconds)
            except Exception:  # noqa: BLE001 - the suite's own failure: reported as a fault not survived, then on
                got = [harness.Outcome(stage.family, stage.name, "the stage could not run", survived=False,
                                       note=traceback.format_exc()[-3000:])]
            outcomes += got
            for o in got:
                if a.verbose or not o.ok():
                    print(f"   {'ok    ' if o.ok() else 'FAILED'} {o.case}: {o.note}"
                          + ("" if o.ok() else f" {o}"), flush=True)
            print(f"   {len(got)} fault(s) in {time.monotonic() - t0:.0f} s, {len(harness.failures(got))} not survived "
                  "cleanly", flush=True)
    finally:
        minutes = (time.monotonic() - start) / 60
        end_load = os.getloadavg()
        print(f"\n{harness.table(outcomes)}\n\n{len(outcomes)} faults in {minutes:.1f} min; load average at the end "
              f"{end_load[0]:.2f} (1 min), {end_load[2]:.2f} (15 min)", flush=True)
        if a.json:
            harness.write_json(a.json, outcomes, {"seed": a.seed, "machine": machine(), "minutes": minutes,
                                                  "load_start": load, "load_end": end_load, "python": sys.version})
        if not a.keep and a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    bad = harness.failures(outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
