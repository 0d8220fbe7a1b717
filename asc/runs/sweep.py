"""Grid sweeps: the sweep's MLflow parent run, resume, and the summary at the end (a Hydra callback).

    python train.py -m window=3,5,7 mask=0,0.1,0.2 seed=0,1,2      # 27 jobs, one MLflow parent run

:class:`SweepCallback` (configured in ``conf/config.yaml``) does the sweep's bookkeeping:

- ``on_multirun_start`` (the submitting process): opens the sweep's MLflow parent run -- or reopens the parent
  of the same sweep, which is what makes a rerun a resume -- and writes ``SWEEP_DIR/sweep.json`` (for
  ``asc report SWEEP_DIR``).
- ``on_job_start`` (each job's own process, also under the joblib and submitit launchers): exports the parent's
  id to the job through the environment; :func:`asc.runs.train.run` then logs the job as a nested child run,
  tagged with its :func:`~asc.runs.identity.config_hash`, or skips it if that hash already FINISHED under the
  parent. With ``sweep_gpus=N`` (``hydra/launcher=gpus``) the job's process first takes its own GPU
  (:func:`asc.runs.placement.claim_gpu`).
- ``on_job_end``: a job that stopped on a mistake in its input (:class:`asc.errors.UserMistake`: it printed its one
  line) is noted in ``SWEEP_DIR/.mistakes/`` (:data:`asc.runs.report.MISTAKES`) and handed back to Hydra as done,
  so that Hydra prints no traceback for it at the end of the sweep.
- ``on_multirun_end``: writes the summary (:func:`asc.runs.report.report`) to the parent and closes it; the
  summary's jobs section names each job that stopped on a mistake, by its swept settings, with its one-line reason
  (the parent FAILED then, and the command exits with status 2). Hydra skips this hook when a job fails otherwise
  (a bug: its traceback), so an exit handler does the same for the jobs that did finish and marks the parent
  FAILED; ``asc report`` does it on demand.

Hydra makes this callback for every command, single runs too: MLflow and the report are imported when it needs
them, so that ``asc train`` can say in seconds that a tracking server is down.

Where "done" lives: in MLflow, as a FINISHED child run whose ``config_hash`` tag matches, under the parent run
of the same sweep (:meth:`asc.tracking.store.TrackingStore.finished_child`). A crashed or killed job leaves a
FAILED/KILLED/RUNNING child, which does not count.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from asc.errors import UserMistake
from asc.files import atomic_write_text, held
from asc.runs.identity import config_hash, config_lock, digest, excluded, scientific
from asc.runs.placement import PlacementError, claim_gpu
from asc.tracking.health import TrackingError, check_server, resolve_uri

log = logging.getLogger(__name__)

#: Environment variables through which a job learns its sweep (set by :meth:`SweepCallback.on_job_start`).
ENV_PARENT = "ASC_SWEEP_PARENT_RUN_ID"
ENV_SWEEP = "ASC_SWEEP_ID"
#: The file in the sweep folder that names the parent run.
SWEEP_FILE = "sweep.json"


# -- the sweep's definition and identity --------------------------------------------------------------------
def sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep's scientific overrides: the sweeper's ``params`` then the command line's (as Hydra applies them)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    items = [f"{k}={v}" for k, v in params.items()]
    items += list(OmegaConf.select(config, "hydra.overrides.task") or [])
    return [o for o in items if not excluded(o.split("=", 1)[0])]


def expected_jobs(overrides: list[str]) -> int | None:
    """How many jobs Hydra's basic sweeper makes of ``overrides`` (None if they cannot be parsed)."""
    sizes: dict[str, int] = {}
    try:
        for o in OverridesParser.create().parse_overrides(overrides):
            sizes[o.get_key_element()] = len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1
    except Exception:  # noqa: BLE001 - ranges/intervals (another sweeper's syntax): the count is unknown
        return None
    n = 1
    for size in sizes.values():
        n *= size
    return n


def swept_keys(config: DictConfig) -> set[str]:
    """The keys the sweep varies (``window`` of ``window=3,5,7``): what tells its jobs apart (the parent run's tag
    ``sweep.swept``)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    items = [f"{k}={v}" for k, v in params.items()] + list(OmegaConf.select(config, "hydra.overrides.task") or [])
    try:
        return {o.get_key_element() for o in OverridesParser.create().parse_overrides(items) if o.is_sweep_override()}
    except Exception:  # noqa: BLE001 - another sweeper's syntax: name the jobs by all their overrides
        return set()


def sweep_identity(config: DictConfig) -> str:
    """``sweep_id`` if set, else a hash of the base config and the sweep's overrides: the same command, the same id."""
    if OmegaConf.select(config, "sweep_id"):
        return str(config.sweep_id)
    return "sweep-" + digest({"base": scientific(config), "overrides": sorted(sweep_overrides(config))}, 12)


def check_gpu_slots(config: DictConfig) -> None:
    """``sweep_gpus=N`` spreads one node's jobs over its N GPUs: it needs at most N jobs at once, on this node."""
    slots = config.get("sweep_gpus")
    if not slots:
        if OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher") == "gpus":
            raise PlacementError("hydra/launcher=gpus needs sweep_gpus=N: the number of GPUs to run jobs on at once")
        return
    target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    if "submitit" in target:
        raise PlacementError("sweep_gpus is for a sweep on one node (hydra/launcher=gpus); under SLURM each job gets "
                             "its GPU from the scheduler (hydra.launcher.gpus_per_node): drop sweep_gpus")
    n_jobs = OmegaConf.select(config, "hydra.launcher.n_jobs")
    if n_jobs is not None and (int(n_jobs) < 1 or int(n_jobs) > int(slots)):
        raise PlacementError(f"hydra.launcher.n_jobs={n_jobs} with sweep_gpus={slots}: at most one job per GPU at once "
                             "(hydra/launcher=gpus sets n_jobs to sweep_gpus)")


@dataclass
class SweepInfo:
    """What ``SWEEP_DIR/sweep.json`` holds."""

    sweep_id: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    name: str
    jobs: int | None = None

    def write(self, sweep_dir: str | Path) -> Path:
        path = Path(sweep_dir) / SWEEP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, sweep_dir: str | Path) -> SweepInfo:
        path = Path(sweep_dir) / SWEEP_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such file; a sweep folder is the folder `python train.py -m ...` printed "
                "(multirun/<date>/<time>), or pass --parent-run RUN_ID"
            )
        return cls(**json.loads(path.read_text()))


@dataclass
class JobSweep:
    """The sweep a job belongs to, as the job sees it."""

    parent_run_id: str
    sweep_id: str


def job_sweep() -> JobSweep | None:
    """The sweep of the current job (from the environment :class:`SweepCallback` sets), or None outside sweeps."""
    parent = os.environ.get(ENV_PARENT)
    return JobSweep(parent, os.environ.get(ENV_SWEEP, "")) if parent else None


def newest_sweep(root: str | Path = "multirun") -> Path:
    """The most recently written sweep folder under ``root`` (one holding ``sweep.json``)."""
    found = sorted(Path(root).glob(f"**/{SWEEP_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no sweep folder (with {SWEEP_FILE}) under {Path(root).resolve()}; "
                                "run `python train.py -m ...` first or pass SWEEP_DIR / --parent-run")
    return found[-1].parent


# -- the Hydra callback ---------------------------------------------------------------------------------------
class SweepCallback(Callback):
    """One MLflow parent run per sweep, nested child runs, resume, and the summary at the end (see module doc)."""

    def __init__(self, summary: bool = True) -> None:
        self.summary = summary
        self.info: SweepInfo | None = None
        self.sweep_dir: str | None = None
        self.swept: set[str] = set()
        self._ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_gpu_slots(config)
        try:
            check_server(resolve_uri(config.logger.tracking_uri))  # in seconds, before MLflow is loaded
        except TrackingError as err:  # no server: said in one line, before any job
            print(f"asc train: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2 if isinstance(err, UserMistake) else 1) from None
        from asc.tracking.store import TrackingStore

        store = TrackingStore(config.logger.tracking_uri)
        exp_id = store.experiment(config.logger.experiment, config.logger.get("artifacts"))
        sweep_id = sweep_identity(config)
        overrides = sweep_overrides(config)
        name = "sweep " + " ".join(overrides) if overrides else f"sweep {sweep_id}"
        jobs = expected_jobs(overrides)
        run_id, resumed = store.open_parent(exp_id, "sweep", sweep_id, name, resume=bool(config.get("resume", True)),
                                            tags={"sweep": sweep_id})
        if resumed:
            store.reopen_run(run_id)
            stale = [run for run in store.children(run_id, "attributes.status = 'RUNNING'")  # left by a killed attempt,
                     if not held(config_lock(config.paths.outputs, exp_id, run_id, run.data.tags.get("config_hash", "")))]
            for run in stale:  # (a run whose lock a process holds is alive: another command of this sweep runs it)
                store.end_run(run.info.run_id, "KILLED")
            log.info("resuming sweep %s (MLflow parent run %s; %d stale run(s) marked KILLED)", sweep_id, run_id, len(stale))
        else:
            log.info("sweep %s: MLflow parent run %s", sweep_id, run_id)
        self.sweep_dir = str(Path(str(config.hydra.sweep.dir)).resolve())
        self.swept = swept_keys(config)
        from asc.runs.report import MISTAKES

        for old in (Path(self.sweep_dir) / MISTAKES).glob("*.json"):  # of an earlier command in this folder
            old.unlink()
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_")).rsplit(".", 1)[-1]
        store.set_tags(run_id, {"sweep.overrides": " ".join(overrides), "sweep.jobs": "" if jobs is None else jobs,
                                "sweep.dir": self.sweep_dir, "sweep.launcher": launcher,
                                "sweep.swept": ",".join(sorted(self.swept))})
        store.log_text(run_id, OmegaConf.to_yaml({k: v for k, v in config.items() if k != "hydra"}, resolve=True),
                       "sweep_config.yaml")
        self.info = SweepInfo(sweep_id, run_id, exp_id, store.uri, name, jobs)
        self.info.write(self.sweep_dir)
        self._ended = False
        self._export()
        atexit.register(self._abandoned)

    def _export(self) -> None:
        if self.info is not None:
            os.environ[ENV_PARENT] = self.info.parent_run_id
            os.environ[ENV_SWEEP] = self.info.sweep_id

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._export()  # in the job's process (a joblib/submitit worker has its own environment)
        if config.get("sweep_gpus"):  # before the job imports anything that initialises CUDA
            claim_gpu(int(config.sweep_gpus), Path(self.sweep_dir or str(config.hydra.sweep.dir)) / ".gpu-slots")

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """A job that stopped on a :class:`~asc.errors.UserMistake` (it printed its line): noted for the summary
        (a file, since the job may run in another process or on another node) and handed back to Hydra as done."""
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        err = getattr(job_return, "_return_value", None)
        if job_return is None or job_return.status != JobStatus.FAILED or not isinstance(err, UserMistake):
            return
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:  # a single run says it itself
            return
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # Hydra shows it with its traceback
            return
        from asc.runs.report import MISTAKES

        folder = Path(self.sweep_dir or str(config.hydra.sweep.dir)) / MISTAKES
        folder.mkdir(parents=True, exist_ok=True)
        num = OmegaConf.select(config, "hydra.job.num", default=0)
        record = {"num": num, "overrides": list(job_return.overrides or []), "error": str(err),
                  "config_hash": config_hash(job_return.cfg) if job_return.cfg is not None else None}
        atomic_write_text(folder / f"{int(num):06d}.json", json.dumps(record) + "\n")
        job_return.status = JobStatus.COMPLETED
        job_return.return_value = float("nan")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from asc.runs.report import read_mistakes

        failed = read_mistakes(self.sweep_dir or ".")
        self._finish("FAILED" if failed else "FINISHED")
        if failed:  # the summary has named them: status 2, as a single run with the mistake
            print(f"asc train: {len(failed)} job(s) of the sweep stopped on a mistake in their input (listed above); "
                  "fix them and rerun the same command: the jobs that finished are skipped", file=sys.stderr, flush=True)
            raise SystemExit(2)

    def _abandoned(self) -> None:
        if not self._ended and self.info is not None:
            log.warning(
                "sweep %s did not end normally (a job failed or it was interrupted); summarising the finished jobs. "
                "Rerun the same command to run only the missing ones.", self.info.sweep_id,
            )
            self._finish("FAILED")

    def _finish(self, status: str) -> None:
        if self.info is None or self._ended:
            return
        from asc.runs.report import job_name, read_mistakes, report  # lazy: MLflow loads only after the server check
        from asc.tracking.store import TrackingStore

        self._ended = True
        atexit.unregister(self._abandoned)
        store = TrackingStore(self.info.tracking_uri)
        try:
            if self.summary:  # its jobs section names the jobs that stopped on a mistake, with their reasons
                report(store, self.info.parent_run_id, out=Path(self.sweep_dir or ".") / "report", echo=True)
            else:
                for job in read_mistakes(self.sweep_dir or "."):
                    print(f"- `{job_name(job['overrides'], self.swept)}`: {job['error']}", flush=True)
        except Exception:  # noqa: BLE001 - the sweep's results are in MLflow; `asc report` can redo this
            log.exception("the sweep summary failed; run `asc report %s` to retry", self.sweep_dir)
        finally:
            store.end_run(self.info.parent_run_id, status)
            os.environ.pop(ENV_PARENT, None)
            os.environ.pop(ENV_SWEEP, None)
