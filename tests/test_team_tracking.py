"""Team tracking on real engines: a PostgreSQL cluster, the MLflow server on it as users start it (`asc server`,
artifacts proxied through the server), a parallel sweep logging into it whose jobs each take their own GPU,
`asc report` reading it back over HTTP, and an Optuna study whose two workers share the PostgreSQL server.

The tests share the module's server and run in file order (the report reads the sweep's runs).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import clusters
from conftest import REPO, SHRINK, TINY_OVERRIDES, experiment_file

pytestmark = pytest.mark.slow

GRID = ["window=1,2", "mask=0", "seed=0,1"]  # 4 jobs
GPUS = "5,7"  # the node's GPUs as the sweep command sees them (CUDA_VISIBLE_DEVICES); jobs get one each
TIMEOUT = 900


class Team:
    """The module's engines and the folders the commands run in."""

    def __init__(self, root: Path, server: dict, optuna_db: str, data_root: Path, cache: Path) -> None:
        self.root, self.server, self.optuna_db, self.data_root, self.cache = root, server, optuna_db, data_root, cache
        self.url = server["url"]
        self.work = root / "work"  # the commands' working folder: nothing of the store may land here
        self.work.mkdir()
        self.conf = root / "conf"
        experiment_file(self.conf, data_root)
        self.timings: dict[str, float] = {"server_start_s": server["started_in"]}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "ASC_", "CUDA_VISIBLE"))}
        return {**env, "MLFLOW_TRACKING_URI": self.url, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **extra}

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.url)


@pytest.fixture(scope="module")
def team(tmp_path_factory, tiny_tau, tiny_cache):
    root = tmp_path_factory.mktemp("team")
    with clusters.postgres() as pg:
        mlflow_db, optuna_db = pg.create_database("mlflow"), pg.create_database("optuna")
        with clusters.asc_server(root / "server", mlflow_db) as server:
            t = Team(root, server, optuna_db, tiny_tau, tiny_cache)
            t.timings["postgres_start_s"] = pg.started_in
            yield t
            (REPO / "test-artifacts").mkdir(exist_ok=True)
            (REPO / "test-artifacts" / "team-tracking-timings.json").write_text(json.dumps(t.timings, indent=1) + "\n")


@pytest.fixture(scope="module")
def sweep(team):
    """The 4-job grid under the joblib launcher, 2 jobs at once, one per GPU (`hydra/launcher=gpus sweep_gpus=2`)."""
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "experiment=tiny_sweep", f"hydra.searchpath=[file://{team.conf}]",
           "progress=false", f"paths.cache={team.cache}", f"paths.outputs={team.root / 'outputs'}",
           f"hydra.sweep.dir={team.root / 'multirun' / 'gpus'}", "hydra/launcher=gpus", "sweep_gpus=2", *GRID]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=team.work, env=team.env(CUDA_VISIBLE_DEVICES=GPUS), capture_output=True, text=True,
                          timeout=TIMEOUT)
    team.timings["sweep_4_jobs_2_at_once_s"] = time.perf_counter() - t0
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    exp = team.client.get_experiment_by_name("asc-demo")
    (parent,) = team.client.search_runs([exp.experiment_id], "tags.`asc.parent` = 'sweep'")
    kids = team.client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return exp, parent, kids


def test_sweep_logs_through_the_server_with_artifacts_proxied(team, sweep):
    exp, parent, kids = sweep
    # new experiments take the server's proxied root, never a folder of the machine that created them
    assert exp.artifact_location.startswith("mlflow-artifacts:/"), exp.artifact_location
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.launcher"] == "JoblibLauncher"
    assert parent.data.tags["sweep.jobs"] == "4" and parent.data.metrics["jobs/finished"] == 4
    assert len(kids) == 4 and {k.info.status for k in kids} == {"FINISHED"}
    assert {k.info.run_name for k in kids} == {f"window={w},mask=0,seed={s}" for w in (1, 2) for s in (0, 1)}

    # summary and per-run artifacts went through the server into its artifacts folder...
    files = {f.path for f in team.client.list_artifacts(parent.info.run_id, "summary")}
    assert {"summary/report.md", "summary/cells.csv", "summary/heatmap.png"} <= files
    stored = team.server["artifacts"]
    assert len(list(stored.rglob("summary/report.md"))) == 1
    assert len(list(stored.rglob("confusion_test.csv"))) == 4 and len(list(stored.rglob("best.ckpt"))) >= 4
    # ...and nothing of the store was written where the jobs ran
    assert not (team.work / "mlartifacts").exists() and not (team.work / "mlflow.db").exists()
    assert not (team.root / "outputs" / "mlartifacts").exists()


def test_each_parallel_job_has_its_own_gpu(sweep):
    _, _, kids = sweep
    tags = [k.data.tags for k in kids]
    gpus = {t["job.gpu_slot"]: t["job.cuda_visible_devices"] for t in tags}
    assert gpus == {"0": "5", "1": "7"}, gpus  # slot k is the k-th GPU the sweep command was given
    by_process = {}
    for t in tags:  # a worker process keeps its GPU for every job it runs
        assert by_process.setdefault(t["job.pid"], t["job.cuda_visible_devices"]) == t["job.cuda_visible_devices"]
    assert len(by_process) == 2
    overlapping = 0
    for a, b in itertools.combinations(kids, 2):  # jobs that ran at the same time never shared a GPU
        if a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time:
            overlapping += 1
            assert a.data.tags["job.cuda_visible_devices"] != b.data.tags["job.cuda_visible_devices"], (a, b)
    assert overlapping >= 1  # the jobs did run two at a time


def test_report_reads_the_sweep_back_from_the_server(team, sweep, capsys):
    from asc.cli.report import main

    _, parent, kids = sweep
    sweep_dir = team.root / "multirun" / "gpus"
    assert json.loads((sweep_dir / "sweep.json").read_text())["tracking_uri"] == team.url
    t0 = time.perf_counter()
    main([str(sweep_dir), "--out", str(team.root / "report"), "--no-log"])  # the store comes from sweep.json
    team.timings["report_s"] = time.perf_counter() - t0
    printed = capsys.readouterr().out
    assert "Jobs: 4 expected, 4 finished." in printed
    cells = pd.read_csv(team.root / "report" / "cells.csv")
    assert list(cells["window"]) == [1.0, 2.0] and list(cells["n"]) == [2, 2]
    cell = [k for k in kids if k.data.tags["cell"] == "window=2,mask=0"]
    assert cells["test_acc_mean"][1] == pytest.approx(100 * sum(k.data.metrics["test/acc"] for k in cell) / 2, abs=0.05)
    confusion = pd.read_csv(team.root / "report" / "confusion" / "window_2_mask_0.csv", index_col=0)
    assert confusion.shape == (10, 10)  # downloaded through the proxy from the runs' artifacts


def test_two_study_workers_share_the_postgres_server(team, sweep):
    import optuna

    space = ["~tune.space", "+tune.space={window: {type: float, low: 1.0, high: 3.0}}", "tune.seeds=[0]",
             "tune.pruner.name=none", "tune.retrain=false", "tune.n_trials=3", "tune.study_name=team"]
    cmd = [sys.executable, "-m", "asc", "tune", *TINY_OVERRIDES, *SHRINK, *space, f"data.root={team.data_root}",
           f"paths.cache={team.cache}", f"paths.outputs={team.root / 'outputs'}",
           f"tune.storage={team.optuna_db}"]
    t0 = time.perf_counter()
    workers = [subprocess.Popen(cmd, cwd=team.work, env=team.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=TIMEOUT)
        assert w.returncode == 0, (out + err)[-5000:]
    team.timings["study_3_trials_2_workers_s"] = time.perf_counter() - t0

    study = optuna.load_study(study_name="team", storage=team.optuna_db)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 3 <= len(finished) <= 4 and len({t.number for t in finished}) == len(finished)
    assert {t.state.name for t in finished} == {"COMPLETE"}
    # one study parent in MLflow (both workers found it), a nested child per trial
    exp = team.client.get_experiment_by_name("asc-demo")
    (parent,) = team.client.search_runs([exp.experiment_id], "tags.`asc.parent` = 'study'")
    trials = team.client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trials) == sorted(t.number for t in finished)
    assert not (team.work / "optuna.db").exists()
