"""``asc register``: a training run's MLflow model (or the best run of an experiment) under a name."""

from __future__ import annotations

import argparse
import sys

from asc.tracking.packaging import MODEL_NAME
from asc.tracking.store import TrackingError, TrackingStore


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc register",
        description="Register a training run's logged model (or the best run of an experiment) under a name.",
    )
    p.add_argument("args", nargs="+", metavar="[RUN_ID] NAME", help="run id and model name; only NAME with --best")
    p.add_argument("--best", metavar="EXPERIMENT", help="take the experiment's best finished run by --metric")
    p.add_argument("--metric", default="best_val/acc", help="metric that ranks runs for --best (default: best_val/acc)")
    p.add_argument("--sweep", help="with --best: only runs tagged with this sweep id")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    a = p.parse_args(argv)
    if len(a.args) != (1 if a.best else 2):
        p.error("give RUN_ID NAME, or --best EXPERIMENT NAME")
    store = TrackingStore(a.tracking_uri, explicit=True)
    try:
        if not store.exists():
            raise TrackingError(f"no MLflow store at {store.uri}: train first, or point --tracking-uri at the store")
        run_id = store.best_run(a.best, a.metric, a.sweep) if a.best else a.args[0]
        mv = store.register(run_id, MODEL_NAME, a.args[-1])
    except TrackingError as err:
        print(f"asc register: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"registered run {run_id} as models:/{mv.name}/{mv.version}")
