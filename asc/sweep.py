"""Grid sweeps: a run's scientific identity, the sweep's MLflow parent run, and resume.

    python train.py -m window=3,5,7 mask=0,0.1,0.2 seed=0,1,2      # 27 jobs, one MLflow parent run

:class:`SweepCallback` (a Hydra callback, configured in ``conf/config.yaml``) does the sweep's bookkeeping:

- ``on_multirun_start`` (the submitting process): opens the sweep's MLflow parent run -- or reopens the parent
  of the same sweep, which is what makes a rerun a resume -- and writes ``SWEEP_DIR/sweep.json`` (for
  ``asc report SWEEP_DIR``).
- ``on_job_start`` (each job's own process, also under the joblib and submitit launchers): exports the parent's
  id to the job through the environment; :func:`asc.train.run` then logs the job as a nested child run,
  tagged with its :func:`config_hash`, or skips it if that hash already FINISHED under the parent.
- ``on_multirun_end``: writes the summary (:func:`asc.report.report`) to the parent and closes it. Hydra skips
  this hook when a job fails, so an exit handler does the same for the jobs that did finish and marks the
  parent FAILED; ``asc report`` does it on demand.

Where "done" lives: in MLflow, as a FINISHED child run whose ``config_hash`` tag matches, under the parent run
of the same sweep. A crashed or killed job leaves a FAILED/KILLED/RUNNING child, which does not count.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from asc.files import atomic_write_text

log = logging.getLogger(__name__)

#: Config keys (dotted prefixes) that do not change the science: where things are, how fast, how it is logged.
#: They are left out of a run's :func:`config_hash` and of the sweep's identity. Hydra's
#: ``override_dirname.exclude_keys`` in ``conf/config.yaml`` leaves the same keys out of folder names.
NOT_SCIENCE: tuple[str, ...] = (
    "paths", "progress", "resume", "sweep_id", "logger",
    "data.root", "data.cache_dir", "data.num_workers", "data.extract_workers", "data.on_device",
    "trainer.accelerator", "trainer.devices", "trainer.log_every_n_steps", "model.channels_last",
    "model.compile", "model.embedding_cache.batch_size", "model.embedding_cache.steps_per_call",
)

#: Environment variables through which a job learns its sweep (set by :meth:`SweepCallback.on_job_start`).
ENV_PARENT = "ASC_SWEEP_PARENT_RUN_ID"
ENV_SWEEP = "ASC_SWEEP_ID"
#: The file in the sweep folder that names the parent run.
SWEEP_FILE = "sweep.json"
#: Tag that marks a parent run.
ROLE_TAG = "asc.role"


def _excluded(key: str, drop: Iterable[str] = NOT_SCIENCE) -> bool:
    key = key.lstrip("+~")
    return any(key == k or key.startswith(k + ".") or key.startswith(k + "/") for k in drop)


def _normalise(value: Any) -> Any:
    """Numbers as floats (``window=5`` and ``window=5.0`` are the same setting), containers recursively."""
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def scientific(cfg: DictConfig | Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """The resolved config without Hydra's node and without :data:`NOT_SCIENCE` (and ``drop``) keys."""
    if isinstance(cfg, DictConfig):  # resolve everything but Hydra's node (parts of it exist only inside a job)
        data = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                for k in cfg if k != "hydra"}
    else:
        data = {k: v for k, v in cfg.items() if k != "hydra"}
    skip = (*NOT_SCIENCE, *drop)

    def prune(node: dict[str, Any], prefix: str) -> dict[str, Any]:
        out = {}
        for key, value in node.items():
            name = f"{prefix}{key}"
            if _excluded(name, skip):
                continue
            out[key] = prune(value, f"{name}.") if isinstance(value, dict) else value
        return out

    return _normalise(prune(data, ""))


def digest(data: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def config_hash(cfg: DictConfig | Mapping[str, Any], drop: Iterable[str] = ()) -> str:
    """A run's identity: 16 hex digits of the hash of its :func:`scientific` config.

    ``drop=("seed",)`` gives the identity of its grid cell (the runs that are averaged together).
    """
    return digest(scientific(cfg, drop))


# -- the sweep's definition and identity --------------------------------------------------------------------
def sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep's scientific overrides: the sweeper's ``params`` then the command line's (as Hydra applies them)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    items = [f"{k}={v}" for k, v in params.items()]
    items += list(OmegaConf.select(config, "hydra.overrides.task") or [])
    return [o for o in items if not _excluded(o.split("=", 1)[0])]


def expected_jobs(overrides: list[str]) -> int | None:
    """How many jobs Hydra's basic sweeper makes of ``overrides`` (None if they cannot be parsed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

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


def sweep_identity(config: DictConfig) -> str:
    """``sweep_id`` if set, else a hash of the base config and the sweep's overrides: the same command, the same id."""
    if OmegaConf.select(config, "sweep_id"):
        return str(config.sweep_id)
    return "sweep-" + digest({"base": scientific(config), "overrides": sorted(sweep_overrides(config))}, 12)


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


# -- MLflow ---------------------------------------------------------------------------------------------------
def experiment_id(client, name: str, artifacts: str | None) -> str:
    """The experiment's id, created (with ``artifacts`` as its artifact folder) if missing."""
    from asc.tracking import artifact_location

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(artifacts))
    except Exception:  # noqa: BLE001 - created meanwhile by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_parent(client, exp_id: str, sweep_id: str):
    """The most recent parent run of sweep ``sweep_id``, or None."""
    runs = client.search_runs(
        [exp_id], filter_string=f"tags.sweep = '{sweep_id}' and tags.`{ROLE_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0] if runs else None


def children(client, parent_run_id: str, filter_string: str = "") -> list:
    """All child runs of a parent run (every page), newest first."""
    parent = client.get_run(parent_run_id)
    query = f"tags.`mlflow.parentRunId` = '{parent_run_id}'" + (f" and {filter_string}" if filter_string else "")
    out, token = [], None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
            max_results=1000, page_token=token,
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def finished_child(client, parent_run_id: str, run_hash: str):
    """The newest FINISHED child of ``parent_run_id`` with ``config_hash == run_hash``, or None."""
    runs = children(client, parent_run_id, f"tags.config_hash = '{run_hash}' and attributes.status = 'FINISHED'")
    return runs[0] if runs else None


@dataclass
class JobSweep:
    """The sweep a job belongs to, as the job sees it."""

    parent_run_id: str
    sweep_id: str


def job_sweep() -> JobSweep | None:
    """The sweep of the current job (from the environment :class:`SweepCallback` sets), or None outside sweeps."""
    parent = os.environ.get(ENV_PARENT)
    return JobSweep(parent, os.environ.get(ENV_SWEEP, "")) if parent else None


# -- the Hydra callback ---------------------------------------------------------------------------------------
class SweepCallback(Callback):
    """One MLflow parent run per sweep, nested child runs, resume, and the summary at the end (see module doc)."""

    def __init__(self, summary: bool = True) -> None:
        self.summary = summary
        self.info: SweepInfo | None = None
        self.sweep_dir: str | None = None
        self._ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from asc.tracking import absolute_uri, open_store, tracking_uri

        uri = open_store(absolute_uri(tracking_uri(config.logger.tracking_uri)))
        client = MlflowClient(uri)
        exp_id = experiment_id(client, config.logger.experiment, config.logger.get("artifacts"))
        sweep_id = sweep_identity(config)
        overrides = sweep_overrides(config)
        name = "sweep " + " ".join(overrides) if overrides else f"sweep {sweep_id}"
        jobs = expected_jobs(overrides)
        resume = bool(config.get("resume", True))
        parent = find_parent(client, exp_id, sweep_id) if resume else None
        if parent is not None:
            run_id = parent.info.run_id
            client.update_run(run_id, status="RUNNING")
            stale = children(client, run_id, "attributes.status = 'RUNNING'")
            for run in stale:  # left running by an attempt that was killed
                client.set_terminated(run.info.run_id, "KILLED")
            log.info("resuming sweep %s (MLflow parent run %s; %d stale run(s) marked KILLED)", sweep_id, run_id, len(stale))
        else:
            tags = {"sweep": sweep_id, ROLE_TAG: "sweep"}
            run_id = client.create_run(exp_id, run_name=name[:240], tags=tags).info.run_id
            log.info("sweep %s: MLflow parent run %s", sweep_id, run_id)
        self.sweep_dir = str(Path(str(config.hydra.sweep.dir)).resolve())
        client.set_tag(run_id, "sweep.overrides", " ".join(overrides))
        client.set_tag(run_id, "sweep.jobs", str(jobs) if jobs is not None else "")
        client.set_tag(run_id, "sweep.dir", self.sweep_dir)
        client.set_tag(run_id, "sweep.launcher", str(OmegaConf.select(config, "hydra.launcher._target_")).rsplit(".", 1)[-1])
        client.log_text(run_id, OmegaConf.to_yaml({k: v for k, v in config.items() if k != "hydra"}, resolve=True), "sweep_config.yaml")
        self.info = SweepInfo(sweep_id, run_id, exp_id, uri, name, jobs)
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

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish("FINISHED")

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
        self._ended = True
        atexit.unregister(self._abandoned)
        from mlflow import MlflowClient

        client = MlflowClient(self.info.tracking_uri)
        try:
            if self.summary:
                from asc.report import report

                report(client, self.info.parent_run_id, out=Path(self.sweep_dir or ".") / "report", echo=True)
        except Exception:  # noqa: BLE001 - the sweep's results are in MLflow; `asc report` can redo this
            log.exception("the sweep summary failed; run `asc report %s` to retry", self.sweep_dir)
        finally:
            client.set_terminated(self.info.parent_run_id, status)
            os.environ.pop(ENV_PARENT, None)
            os.environ.pop(ENV_SWEEP, None)
