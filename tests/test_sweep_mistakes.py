"""A sweep some of whose jobs cannot run: it runs the others; each bad job prints its one line and no traceback, the
summary at the end names it by its swept settings with its reason, and the command exits 2.

Two kinds: a job whose settings say it cannot run (a window longer than the clips it asks for) stops before it
writes anything; one whose data says so only once it is read (recordings of 2 s shorter than the clips of 3 s it
asks for, which ``data.pad=none`` cannot pad) stops in its run, marked FAILED. A sweep none of whose jobs can start
does not start (``test_mistakes.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from reliability.data import FEATURES, tau

pytestmark = pytest.mark.slow  # one job trains (one epoch of the small CNN on 50 clips of 2 s): about a minute


def test_a_sweep_runs_the_jobs_that_can_and_names_those_that_stopped_on_a_mistake(tmp_path):
    data = tau(tmp_path / "set")  # 50 clips of 2 s at 8 kHz
    work = tmp_path / "work"
    work.mkdir()
    cmd = [
        sys.executable, str(REPO / "train.py"), "-m", "experiment=demo_small_cnn", f"data.root={data}",
        "data.synthetic.duration=2.0", "data.synthetic.sample_rate=8000", *[f"features.{f}" for f in FEATURES],
        "model.image_size=32", "trainer.max_epochs=1", "progress=false",
        f"logger.tracking_uri=sqlite:///{work / 'mlflow.db'}", "hydra.sweep.dir=multirun/sweep",
        "data.clip_seconds=2,3", "window=1,3",  # 4 jobs: #0 trains, #1 window 3 > clips of 2, #2 and #3 short data
    ]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith(("MLFLOW_", "ASC_SWEEP"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    everything = out.stdout + out.stderr
    assert out.returncode == 2, everything[-4000:]
    assert "Traceback" not in everything and "Error executing job" not in everything
    too_long = "window=3: longer than the clips (data.clip_seconds=2 s)"
    short = f"50 recording(s) of {data} are shorter than a clip, data.clip_seconds=3 s"
    said = [ln.removeprefix("asc train: ") for ln in out.stderr.splitlines() if ln.startswith("asc train: ")]
    assert [ln.startswith(too_long) for ln in said[:1]] == [True] and sum(ln.startswith(short) for ln in said) == 2
    assert "window=1,mask=0.1,seed=0: test accuracy" in out.stdout  # job #0 trained

    # the summary: the jobs section names the three jobs that stopped, each with its one-line reason
    assert "Jobs: 4 expected, 1 finished, 2 failed, 1 stopped on a mistake in its input before it started." in out.stdout
    assert f"- `data.clip_seconds=2 window=3`: stopped on a mistake in its input: {too_long}" in out.stdout
    failed = [ln for ln in out.stdout.splitlines() if ln.startswith("- `window=") and ": FAILED (MLflow run " in ln]
    assert len(failed) == 2 and all(f"): {short}" in ln for ln in failed), failed
    assert said[-1].startswith("3 job(s) of the sweep stopped on a mistake in their input")

    sweep = work / "multirun" / "sweep"
    records = [json.loads(p.read_text()) for p in sorted((sweep / ".mistakes").glob("*.json"))]
    assert [r["num"] for r in records] == [1, 2, 3]
    jobs = [p for p in sweep.iterdir() if p.is_dir() and p.name not in (".mistakes", "report")]
    assert len(jobs) == 3  # the job that stopped before it started left no folder
    from asc.tracking.store import TrackingStore

    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}", explicit=True)
    parent = json.loads((sweep / "sweep.json").read_text())["parent_run_id"]
    assert store.get_run(parent).info.status == "FAILED"  # the sweep did not do all it was asked
    assert sorted(run.info.status for run in store.children(parent)) == ["FAILED", "FAILED", "FINISHED"]
