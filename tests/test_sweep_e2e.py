"""The grid search as users run it: `train.py -m` in a subprocess on a tiny synthetic set, then resume, a failed
job, `asc report`, and the MLflow UI in headless Chromium over the resulting store.

The tests share one store and run in file order (each builds on the one before); the UI test only needs the first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asc.runs.train import run_name
from asc.tracking.store import TrackingStore
from conftest import REPO, experiment_file

pytestmark = pytest.mark.slow

GRID = ["window=1,2", "mask=0,0.2", "seed=0,1"]  # 2 x 2 x 2 = 8 jobs
JOB_TIMEOUT = 600


class Store:
    """A temporary project: extra config folder, data, cache, MLflow store; runs `train.py -m` against it."""

    def __init__(self, root: Path, data_root: Path, cache: Path) -> None:
        self.root, self.cache = root, cache
        self.conf = root / "conf"
        experiment_file(self.conf, data_root)
        self.uri = f"sqlite:///{root / 'mlflow.db'}"

    def sweep(self, name: str, *overrides: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable, "train.py", "-m", "experiment=tiny_sweep", f"hydra.searchpath=[file://{self.conf}]",
            "progress=false", f"paths.data={self.root / 'data'}", f"paths.cache={self.cache}",
            f"paths.outputs={self.root / 'outputs'}", f"logger.tracking_uri={self.uri}",
            f"logger.artifacts={self.root / 'mlartifacts'}", f"hydra.sweep.dir={self.sweep_dir(name)}", *overrides,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "ASC_SWEEP"))}
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT)

    def sweep_dir(self, name: str) -> Path:
        return self.root / "multirun" / name

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    def parents(self) -> list:
        exp = self.client.get_experiment_by_name("asc-demo")
        return self.client.search_runs([exp.experiment_id], "tags.`asc.parent` = 'sweep'")

    def children(self, parent_id: str) -> list:
        from asc.tracking.store import TrackingStore

        return TrackingStore(self.uri, explicit=True).children(parent_id)


def check(proc: subprocess.CompletedProcess, ok: bool = True) -> str:
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, f"exit {proc.returncode}\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_tau, tiny_cache) -> Store:
    """The 8-job grid, run serially: one parent, 8 children, a summary (images from the session's feature cache)."""
    s = Store(tmp_path_factory.mktemp("sweep"), tiny_tau, tiny_cache)
    t0 = time.perf_counter()
    s.first_output = check(s.sweep("first", *GRID))
    s.first_seconds = time.perf_counter() - t0
    return s


def test_grid_sweep_logs_a_parent_with_nested_children_and_a_summary(store, tmp_path):
    (parent,) = store.parents()
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "sweep experiment=tiny_sweep window=1,2 mask=0,0.2 seed=0,1"
    assert parent.data.tags["sweep.jobs"] == "8"
    kids = store.children(parent.info.run_id)
    assert len(kids) == 8 and {k.info.status for k in kids} == {"FINISHED"}
    expected = {run_name(w, m, s) for w in (1, 2) for m in (0, 0.2) for s in (0, 1)}
    assert {k.info.run_name for k in kids} == expected
    assert {k.data.tags["mlflow.parentRunId"] for k in kids} == {parent.info.run_id}
    assert len({k.data.tags["config_hash"] for k in kids}) == 8 and len({k.data.tags["settings_hash"] for k in kids}) == 4

    # folders named by the settings, and the sweep file that `asc report SWEEP_DIR` reads
    sweep_dir = store.sweep_dir("first")
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name != "report")
    assert "experiment=tiny_sweep,mask=0.2,seed=1,window=2" in jobs and len(jobs) == 8
    assert json.loads((sweep_dir / "sweep.json").read_text())["parent_run_id"] == parent.info.run_id

    # per-cell mean and sample std on the parent, from the children's own numbers
    cell = [k for k in kids if k.data.tags["cell"] == "window=2,mask=0.2"]
    vals = [k.data.metrics["best_val/acc"] for k in cell]
    tests = [k.data.metrics["test/acc"] for k in cell]
    m = parent.data.metrics
    assert m["cell/window_2_mask_0.2/n"] == 2
    assert m["cell/window_2_mask_0.2/val_acc_mean"] == pytest.approx(statistics.mean(vals))
    assert m["cell/window_2_mask_0.2/test_acc_std"] == pytest.approx(statistics.stdev(tests))
    assert m["jobs/finished"] == 8

    # the summary artifacts, and one cell's mean confusion matrix checked against its runs'
    client = store.client
    files = {f.path for f in client.list_artifacts(parent.info.run_id, "summary")}
    assert {"summary/report.md", "summary/cells.csv", "summary/best_cell.csv", "summary/heatmap.png"} <= files
    confusion = {f.path for f in client.list_artifacts(parent.info.run_id, "summary/confusion")}
    for w in (1, 2):
        for mask in (0, 0.2):
            assert {f"summary/confusion/window_{w}_mask_{mask:g}.{ext}" for ext in ("csv", "png")} <= confusion
    mean = pd.read_csv(client.download_artifacts(parent.info.run_id, "summary/confusion/window_2_mask_0.2.csv", str(tmp_path)), index_col=0)
    runs = [pd.read_csv(client.download_artifacts(k.info.run_id, "confusion_test.csv", str(tmp_path / k.info.run_id)), index_col=0)
            for k in cell]
    np.testing.assert_allclose(mean.to_numpy(), np.mean([r.to_numpy() for r in runs], axis=0), atol=1e-3)
    cells = pd.read_csv(client.download_artifacts(parent.info.run_id, "summary/cells.csv", str(tmp_path)))
    assert len(cells) == 4 and list(cells["n"]) == [2, 2, 2, 2]


def test_rerun_skips_exactly_the_finished_jobs_also_under_joblib(store):
    (parent,) = store.parents()
    kids = {k.info.run_name: k for k in store.children(parent.info.run_id)}
    crashed, killed = kids["window=1,mask=0,seed=1"], kids["window=2,mask=0.2,seed=0"]
    client = store.client
    client.set_terminated(crashed.info.run_id, "FAILED")    # a job that raised before its first checkpoint
    (Path(crashed.data.tags["checkpoint_dir"]) / "last.ckpt").unlink()
    client.update_run(killed.info.run_id, status="RUNNING")  # a job whose process was killed after a checkpoint

    out = check(store.sweep("again", *GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"))
    assert len(re.findall(r"already finished in this sweep", out)) == 6, out[-3000:]
    (same,) = store.parents()  # the same sweep: the same parent run, no second one
    assert same.info.run_id == parent.info.run_id and same.info.status == "FINISHED"
    after = store.children(parent.info.run_id)
    assert len(after) == 9  # the crashed job trained afresh; the killed one continued its own run
    by_name = pd.Series([k.info.run_name for k in after]).value_counts()
    assert set(by_name[by_name == 2].index) == {crashed.info.run_name}
    assert client.get_run(crashed.info.run_id).info.status == "FAILED"  # kept as it was, beside the new run
    resumed = client.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed"] == "1"
    assert resumed.data.tags["resumed.after"] == "left KILLED"  # marked KILLED when the sweep resumed
    new = [k for k in after if k.info.run_id not in {c.info.run_id for c in kids.values()}]
    assert len(new) == 1 and {k.info.status for k in new} == {"FINISHED"}  # trained in a joblib worker, nested
    assert {k.data.tags["mlflow.parentRunId"] for k in new} == {parent.info.run_id}
    assert store.client.get_run(parent.info.run_id).data.metrics["cell/window_1_mask_0/n"] == 2


def test_report_after_a_failed_job(store, capsys, tmp_path, monkeypatch):
    from asc.cli.report import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # window=9 s is longer than the 4 s clips: that job stops on the mistake before it writes anything (no MLflow
    # run); the other job runs, and the sweep ends with status 2 and a summary that names the one that stopped
    proc = store.sweep("broken", "window=2,9", "mask=0", "seed=0")
    out = check(proc, ok=False)
    assert proc.returncode == 2 and "Traceback" not in out
    assert "asc train: window=9: longer than the clips (data.clip_seconds=4 s)" in out
    parent = next(p for p in store.parents() if "window=2,9" in p.info.run_name)
    assert parent.info.status == "FAILED"  # closed at the end of the sweep, with a summary of what finished
    assert "summary/report.md" in {f.path for f in store.client.list_artifacts(parent.info.run_id, "summary")}
    status = {k.info.run_name: k.info.status for k in store.children(parent.info.run_id)}
    assert status == {"window=2,mask=0,seed=0": "FINISHED"}

    sweep_dir = store.sweep_dir("broken")
    main([str(sweep_dir)])
    printed = capsys.readouterr().out
    assert "Jobs: 2 expected, 1 finished, 1 stopped on a mistake in its input before it started." in printed
    assert "- `window=9`: stopped on a mistake in its input: window=9: longer than the clips" in printed
    assert re.search(r"\| 2 s \| \*\*\d+\.\d \(n=1\)\*\*", printed), printed
    assert "69.7 %" in printed  # the best cell next to the published test accuracy ...
    assert "**Not the paper's setup**" in printed and "data: synthetic scenes, not TAU 2019" in printed  # ... as context
    assert "Δ" not in printed.split("Test accuracy")[0]  # no difference to beat in the validation grid
    cells = pd.read_csv(sweep_dir / "report" / "cells.csv")
    assert list(cells["window"]) == [2.0] and list(cells["n"]) == [1] and np.isnan(cells["val_acc_std"][0])

    main(["--parent-run", parent.info.run_id, "--tracking-uri", store.uri, "--out", str(tmp_path / "r"), "--no-log"])
    assert (tmp_path / "r" / "report.md").read_text().startswith("# Sweep report: sweep experiment=tiny_sweep window=2,9")


# -- the UI -----------------------------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture
def mlflow_server(store):
    """The real `mlflow server` on a free 127.0.0.1 port over the sweep's store."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = open(store.root / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, "server", "--backend-store-uri", store.uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=store.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{(store.root / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker, which this fixture started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_mlflow_ui_shows_the_sweep(store, mlflow_server):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the ui-test extra (uv sync --all-extras)")
    base = mlflow_server
    exp = get_json(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=asc-demo")["experiment"]["experiment_id"]
    (parent,) = [p for p in store.parents() if "window=1,2" in p.info.run_name]
    kids = [k for k in store.children(parent.info.run_id) if k.info.status == "FINISHED"]

    # the artifacts, through the server's REST API
    listed = get_json(f"{base}/api/2.0/mlflow/artifacts/list?run_id={parent.info.run_id}&path=summary")
    names = {f["path"] for f in listed["files"]}
    assert {"summary/report.md", "summary/cells.csv", "summary/heatmap.png", "summary/confusion"} <= names
    listed = get_json(f"{base}/api/2.0/mlflow/artifacts/list?run_id={parent.info.run_id}&path=summary/confusion")
    assert sum(f["path"].endswith(".png") for f in listed["files"]) == 4
    listed = get_json(f"{base}/api/2.0/mlflow/artifacts/list?run_id={kids[0].info.run_id}")
    assert "confusion_test.csv" in {f["path"] for f in listed["files"]}

    # a model-training experiment (MLflow 3 would otherwise treat it as GenAI and open on an empty trace overview)
    tags = get_json(f"{base}/api/2.0/mlflow/experiments/get?experiment_id={exp}")["experiment"]["tags"]
    assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in tags

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 2200, "height": 1100})
            page.set_default_timeout(90_000)
            # the page a user lands on from the link a run prints: the experiment's training runs
            page.goto(TrackingStore(base, explicit=True).ui_url(exp))
            page.get_by_text(parent.info.run_name).first.wait_for()  # the training runs, the parent listed
            assert "/runs" in page.url and "workflowType=machine_learning" in page.url, page.url
            page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-landing.png"))
            page.goto(f"{base}/#/experiments/{exp}/runs")
            page.get_by_text(parent.info.run_name).first.wait_for()  # the parent run is listed
            close = page.get_by_role("button", name="Close", exact=True)  # the assistant side panel, if shown
            if close.count() == 1:
                close.click()

            # show window, mask, seed and test/acc as columns (params and the metric)
            page.get_by_role("button", name="Columns").click()
            search = page.get_by_placeholder("Search columns")
            for column in ("window", "mask", "seed", "test/acc"):
                search.fill(column)
                title = page.locator(".du-bois-light-tree-title", has_text=re.compile(f"^{re.escape(column)}$"))
                title.first.click()
            page.keyboard.press("Escape")

            # expand the parent: its children appear nested under it, with their numbers
            page.get_by_role("gridcell").filter(has_text=parent.info.run_name).first.locator("button").first.click()
            for kid in kids:
                page.get_by_text(kid.info.run_name, exact=True).first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-sweep-runs.png"))
            for kid in kids:
                row = page.locator(f'[role=row]:has(a[href$="/runs/{kid.info.run_id}"])').first  # not a rerun's twin
                index = row.get_attribute("row-index")
                cells = {c.get_attribute("col-id"): c.inner_text().strip()
                         for c in page.locator(f'[role=row][row-index="{index}"] [role=gridcell]').all()}
                for key in ("window", "mask", "seed"):
                    assert cells["params.`%s`" % key] == kid.data.params[key], (key, cells)
                assert float(cells["metrics.`test/acc`"]) == pytest.approx(kid.data.metrics["test/acc"]), cells

            # the parent's artifacts page lists the summary
            page.goto(f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}/artifacts")
            page.get_by_text("summary", exact=True).first.click()
            page.get_by_text("report.md", exact=True).first.wait_for()
            page.get_by_text("heatmap.png", exact=True).first.click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-sweep-summary.png"))
        finally:
            browser.close()
    assert (SCREENSHOTS / "mlflow-ui-sweep-runs.png").stat().st_size > 10_000
