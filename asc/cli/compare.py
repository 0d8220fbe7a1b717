"""``asc compare [PARENT[=LABEL] ...]``: recipes (sweeps) side by side (see :mod:`asc.runs.compare`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asc.runs.compare import compare, sweep_parents
from asc.tracking.store import TrackingStore


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc compare",
        description="Recipes side by side: one row per sweep (test and validation accuracy mean ± std over seeds, "
                    "the difference to the paper's setup, epochs, wall time per seed, parameters, FLOPs), as "
                    "compare.md, compare.csv and a bar chart compare.png, logged to MLflow (experiment 'comparisons').",
    )
    p.add_argument("sweeps", nargs="*", metavar="PARENT[=LABEL]",
                   help="sweep parent run ids, each with an optional label (default: every sweep of --experiment)")
    p.add_argument("--experiment", action="append", help="only the sweeps of this MLflow experiment (repeatable)")
    p.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, then sqlite:///mlflow.db)")
    p.add_argument("--out", type=Path, default=Path("outputs/compare"), help="output folder (default: %(default)s)")
    p.add_argument("--baseline", type=int, help="the row (0 = first) the others are measured against "
                   "(default: the first of the paper's setup, else the first)")
    p.add_argument("--combine", action="append", metavar="A+B",
                   help="add a row for an ensemble of recipes A and B (row labels or numbers, 0 = first; more with "
                        "'+'): each seed's models averaged across the recipes (repeatable)")
    p.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")
    args = p.parse_args(argv)
    store = None
    try:
        store = TrackingStore(args.tracking_uri, explicit=bool(args.tracking_uri))
        if not store.exists():
            raise FileNotFoundError(f"no MLflow store at {store.uri}")
        sweeps = [(spec.partition("=")[0], spec.partition("=")[2] or None) for spec in args.sweeps]
        everything = not sweeps
        if everything:
            sweeps = [(pid, None) for pid in sweep_parents(store, args.experiment)]
        result = compare(store, sweeps, args.out, log_to=None if args.no_log else "comparisons",
                         skip_unfinished=everything, baseline=args.baseline,
                         combine=args.combine)
    except Exception as err:  # noqa: BLE001 - one line for the user, not a traceback
        where = f" (MLflow store {store.uri}; --tracking-uri chooses another)" if store is not None else ""
        print(f"asc compare: {err}{where}", file=sys.stderr)
        raise SystemExit(2) from None
    print(result.markdown)
    print(f"\nwritten: {result.out / 'compare.md'}, compare.csv, compare.png"
          + (f"; logged to MLflow run {result.run_id} (experiment 'comparisons')" if result.run_id else ""))
