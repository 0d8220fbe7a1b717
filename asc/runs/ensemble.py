"""Seed ensembles: the test-set class probabilities a run writes, and their mean over several runs.

Each run logs ``test_probabilities.csv`` (:data:`ARTIFACT`): one row per test recording, in the table's order --
``filename``, ``label`` and one column of probabilities per class (what the test step scored: the mean over the
recording's evaluation views). :func:`ensemble_accuracy` averages the runs' probabilities recording by recording (the
seeds of one recipe see the same test recordings) and scores the mean: ``asc compare``'s ensemble column.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from asc.tracking.store import TrackingError, TrackingStore

ARTIFACT = "test_probabilities.csv"


def probabilities_csv(names: Sequence[str], labels: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> str:
    """The CSV text of :data:`ARTIFACT` for test recordings ``names`` with true class indices ``labels`` and
    probabilities ``probs`` ``[N, classes]``."""
    if not len(names) == len(labels) == len(probs):
        raise ValueError(f"{len(names)} names, {len(labels)} labels and {len(probs)} rows of probabilities")
    frame = pd.DataFrame(np.asarray(probs, dtype=np.float64), columns=list(classes))
    frame.insert(0, "label", [classes[i] for i in labels])
    frame.insert(0, "filename", list(names))
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def ensemble(tables: Sequence[pd.DataFrame]) -> float:
    """The accuracy of the mean of ``tables``' probabilities (:data:`ARTIFACT`'s columns), recording by recording;
    NaN unless every table has the same recordings, labels and classes."""
    if not tables:
        return math.nan
    first = tables[0].set_index("filename").sort_index()
    classes = [c for c in first.columns if c != "label"]
    total = np.zeros((len(first), len(classes)))
    for table in tables:
        t = table.set_index("filename").sort_index()
        if list(t.index) != list(first.index) or list(t.columns) != list(first.columns) or not t["label"].equals(first["label"]):
            return math.nan
        total += t[classes].to_numpy(dtype=np.float64)
    predicted = np.asarray(classes)[total.argmax(axis=1)]
    return float((predicted == first["label"].to_numpy()).mean())


def ensemble_accuracy(store: TrackingStore, run_ids: Sequence[str]) -> float:
    """:func:`ensemble` of the runs' :data:`ARTIFACT`; NaN if fewer than two runs, or one of them has none (a run
    made before asc wrote it, or on several devices)."""
    if len(run_ids) < 2:
        return math.nan
    try:
        tables = [store.read_csv(run_id, ARTIFACT) for run_id in run_ids]
    except TrackingError:
        return math.nan
    return ensemble(tables)
