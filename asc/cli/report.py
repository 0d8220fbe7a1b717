"""``asc report [SWEEP_DIR]``: a sweep's table next to the published one (see :mod:`asc.runs.report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asc.runs.report import report
from asc.runs.sweep import SweepInfo, newest_sweep
from asc.tracking.store import TrackingStore


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc report",
        description="Summarise a sweep (mean ± std per window/mask cell) next to the published table; "
                    "write report.md, cells.csv, best_cell.csv, a heatmap and mean confusion matrices, "
                    "and log them to the sweep's MLflow parent run.",
    )
    p.add_argument("sweep_dir", nargs="?", type=Path, help="the sweep folder (default: the newest under multirun/)")
    p.add_argument("--parent-run", help="MLflow run id of the sweep's parent run (instead of SWEEP_DIR)")
    p.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, the sweep's, sqlite:///mlflow.db)")
    p.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/report or outputs/reports/<run id>)")
    p.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")
    args = p.parse_args(argv)
    store = None
    try:
        if args.parent_run:
            store = TrackingStore(args.tracking_uri, explicit=True)
            parent, out = args.parent_run, None
        else:
            sweep_dir = args.sweep_dir or newest_sweep()
            info = SweepInfo.read(sweep_dir)
            store = TrackingStore(args.tracking_uri or info.tracking_uri, explicit=bool(args.tracking_uri))
            parent, out = info.parent_run_id, Path(sweep_dir) / "report"
        if not store.exists():
            raise FileNotFoundError(f"no MLflow store at {store.uri}")
        store.get_run(parent)  # a clear error for a wrong id or store
    except Exception as err:  # noqa: BLE001 - one line for the user, not a traceback
        where = f" (MLflow store {store.uri}; --tracking-uri chooses another)" if store is not None else ""
        print(f"asc report: {err}{where}", file=sys.stderr)
        raise SystemExit(2) from None
    report(store, parent, args.out or out or Path("outputs/reports") / parent, echo=True, log_to_parent=not args.no_log)
