"""The sweep on a real one-node SLURM cluster (munged, slurmctld, slurmd from Debian's slurm-wlm), launched as users
launch it (`hydra/launcher=slurm`, submitit array jobs): the MLflow parent run, a job that the scheduler kills
mid-training and requeues resuming its run from the last checkpoint to the end, the summary, and a rerun that skips
the finished jobs.

Two ways a job is stopped in the middle of its training and requeued (:data:`KILLS`): by the scheduler
(`scontrol requeue`, what SLURM does to a preempted job under PreemptMode=REQUEUE: SIGTERM to the job's processes,
Lightning stops at the next batch, the run is marked KILLED, then the batch script starts again from the top), and by
submitit on its preemption/timeout signal (SIGUSR2: it saves the job's call, requeues it and exits). SLURM holds a
requeued job for about two minutes before it may start (its BeginTime); the test lets it start at once
(`scontrol update StartTime=now`), as an idle cluster's administrator could.

The test cluster has no accounting daemon, so `sacct` fails and submitit learns that a job ended from its result
file only (it logs "Bypassing sacct error"): a job killed for good without a requeue would not be noticed here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clusters
from conftest import REPO, experiment_file

pytestmark = pytest.mark.slow

GRID = ["window=1,2", "mask=0", "seed=0"]  # 2 jobs: one array job of two tasks
#: Every run trains for 8 s of wall time, on any machine: long enough to be caught in the middle, short enough to rerun.
EPOCHS = ["trainer.max_epochs=100000", "trainer.patience=100000", "trainer.max_time=00:00:00:08"]
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=30"]
TIMEOUT = 900


class Sweeps:
    """A temporary project on the cluster: config, SQLite store (the node shares this file system), sweep folders."""

    def __init__(self, cluster: clusters.Slurm, root: Path, data_root: Path, cache: Path) -> None:
        self.cluster, self.root, self.cache = cluster, root, cache
        self.conf = root / "conf"
        experiment_file(self.conf, data_root, *EPOCHS)
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.timings: dict[str, float] = {"slurm_start_s": cluster.started_in}

    def command(self, name: str) -> list[str]:
        return [sys.executable, str(REPO / "train.py"), "-m", "experiment=tiny_sweep", f"hydra.searchpath=[file://{self.conf}]",
                "progress=false", f"paths.cache={self.cache}", f"paths.outputs={self.root / 'outputs'}",
                f"logger.tracking_uri={self.uri}", f"logger.artifacts={self.root / 'mlartifacts'}",
                f"hydra.sweep.dir={self.root / 'multirun' / name}", *LAUNCHER, *GRID]

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in self.cluster.env.items() if not k.startswith(("MLFLOW_TRACKING", "ASC_SWEEP"))}
        return {**env, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    def runs(self) -> list:
        exp = self.client.get_experiment_by_name("asc-demo")
        return [] if exp is None else self.client.search_runs([exp.experiment_id])

    def job_logs(self, name: str) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.root / "multirun" / name / ".submitit").rglob("*_log.*"))


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, tiny_tau, tiny_cache):
    root = tmp_path_factory.mktemp("slurm")
    with clusters.slurm(root / "cluster") as cluster:
        s = Sweeps(cluster, root, tiny_tau, tiny_cache)
        yield s
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        (REPO / "test-artifacts" / "slurm-timings.json").write_text(json.dumps(s.timings, indent=1) + "\n")


def wait_for(what: str, check, proc: subprocess.Popen, sweeps: Sweeps, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            raise AssertionError(f"no {what} (sweep exit {proc.poll()})\n{out[-3000:]}\n{sweeps.job_logs('first')[-3000:]}\n"
                                 f"{sweeps.cluster.logs()}")
        time.sleep(0.5)


#: How each job of the grid is stopped in the middle of its training.
KILLS = {
    "window=2,mask=0,seed=0": ("scontrol", "requeue"),  # by the scheduler: SIGTERM, then the batch script starts again
    "window=1,mask=0,seed=0": ("scancel", "--signal=USR2"),  # submitit's preemption/timeout signal: it requeues itself
}


def test_jobs_killed_and_requeued_mid_training_run_again_to_the_end(sweeps):
    t0 = time.perf_counter()
    proc = subprocess.Popen(sweeps.command("first"), cwd=sweeps.root, env=sweeps.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    jobs: dict[str, str] = {}
    try:
        def in_training() -> bool:  # each job, once it has a last checkpoint, is stopped as KILLS says
            for r in sweeps.runs():
                name = r.info.run_name
                checkpointed = (Path(r.data.tags.get("checkpoint_dir", "/nonexistent")) / "last.ckpt").is_file()
                if name in KILLS and name not in jobs and r.info.status == "RUNNING" and checkpointed:
                    assert r.data.tags["job.slurm_restarts"] == "0"
                    jobs[name] = r.data.tags["job.slurm_id"]
                    sweeps.cluster.run(*KILLS[name], jobs[name])
            return len(jobs) == len(KILLS)

        wait_for("both jobs in training", in_training, proc, sweeps)
        for job in jobs.values():
            wait_for(f"requeued job {job} pending", lambda j=job: sweeps.cluster.jobs().get(j) == "PENDING", proc,
                     sweeps, 120)
            sweeps.cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")  # skip SLURM's requeue hold
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    sweeps.timings["sweep_2_jobs_both_requeued_s"] = time.perf_counter() - t0
    assert proc.returncode == 0, out[-5000:]

    runs = sweeps.runs()
    (parent,) = [r for r in runs if r.data.tags.get("asc.parent") == "sweep"]
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.launcher"] == "SlurmLauncher"
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    by_name: dict[str, list] = {}
    for k in sorted(kids, key=lambda r: r.info.start_time):
        by_name.setdefault(k.info.run_name, []).append(k)
    assert sorted(by_name) == sorted(KILLS)
    for name, job in jobs.items():
        (run,) = by_name[name]  # the requeued job resumed the stopped run from its last checkpoint: one run per job
        assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "1", (name, run.info, run.data.tags)
        assert run.data.tags["job.slurm_id"] == job and run.data.tags["job.slurm_restarts"] == "1"
        assert "error" not in run.data.tags and run.data.metrics["test/acc"] >= 0
    # Lightning stops at the next batch on the scheduler's SIGTERM; submitit exits after requeueing on SIGUSR2
    assert by_name["window=2,mask=0,seed=0"][0].data.tags["resumed.after"].startswith("SIGTERMException")
    assert by_name["window=1,mask=0,seed=0"][0].data.tags["resumed.after"].startswith("SystemExit")
    assert f"Requeued job {jobs['window=1,mask=0,seed=0']}" in sweeps.job_logs("first")
    # the summary counts each job once, from its finished run
    assert parent.data.metrics["jobs/finished"] == 2
    assert parent.data.metrics["cell/window_1_mask_0/n"] == parent.data.metrics["cell/window_2_mask_0/n"] == 1
    assert "summary/report.md" in {f.path for f in sweeps.client.list_artifacts(parent.info.run_id, "summary")}
    sweeps.parent_id, sweeps.kids = parent.info.run_id, {k.info.run_id for k in kids}


def test_rerun_on_slurm_skips_the_finished_jobs(sweeps):
    t0 = time.perf_counter()
    proc = subprocess.run(sweeps.command("again"), cwd=sweeps.root, env=sweeps.env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    sweeps.timings["rerun_2_jobs_skipped_s"] = time.perf_counter() - t0
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert len(re.findall("already finished in this sweep", sweeps.job_logs("again"))) == 2
    runs = sweeps.runs()
    (parent,) = [r for r in runs if r.data.tags.get("asc.parent") == "sweep"]  # the same sweep, the same parent
    assert parent.info.run_id == sweeps.parent_id and parent.info.status == "FINISHED"
    assert {r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id} == sweeps.kids
