"""The tracking store: the one object that talks to MLflow.

Made once at an entry point (a training run, a sweep, a study, a report, a prediction) from a tracking URI,
it owns the URI, the client, the creation of a new store, and every query the project asks: the finished
child run with a given config hash, a sweep's or a study's parent run, a sweep's children, the best run of an
experiment, a run's artifacts and its logged model. No other module builds an MLflow client.

- **URI.** ``MLFLOW_TRACKING_URI`` wins over the config's ``logger.tracking_uri``; the default is a SQLite
  file in the working folder (``sqlite:///mlflow.db``), made absolute so it names one file from any folder.
- **New stores.** Processes that open a new SQLite store at the same moment (two Optuna workers, a joblib
  sweep) would run the same schema migrations together and fail half-way ("table _alembic_tmp_... already
  exists"): the schema is created under a file lock beside the database (:func:`schema_lock`). Database
  servers serialise their own DDL.
- **Experiments** are created as model-training experiments (tag ``mlflow.experimentKind`` =
  ``custom_model_development``), so MLflow 3's UI opens them on their training runs, not on an empty GenAI
  overview of traces. On a tracking server (``http(s)://``) they get the server's artifact root (``asc server``:
  ``mlflow-artifacts:/``, artifacts proxied through the server), never a folder of the machine that created them.
- **A server that goes away.** A server that does not answer when a command starts is a :class:`TrackingError`
  within seconds (:mod:`asc.tracking.health`). One that stops answering during a run (after MLflow's own retries)
  stops the run with a :class:`TrackingError` that says where everything is: the checkpoints stay in the run's
  folder, and the metrics the server could not take are kept beside them (:class:`JournalledLogger`, ``unsent.jsonl``).
  Rerunning the command once the server is back resumes the run from its last checkpoint and sends them first
  (:meth:`TrackingStore.replay`). Resuming rather than training on blind: the end of a run (test, artifacts, model)
  needs the server anyway, and a resumed run is already the project's answer to any interruption.
- **Parent runs** of sweeps and studies carry one tagging scheme: ``asc.parent`` (``sweep`` or ``study``) and
  ``asc.parent.key`` (the sweep id or the study name). Children point at them with MLflow's own
  ``mlflow.parentRunId`` tag, which the UI nests.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from asc.files import atomic_write, disk_full, exclusive, free_space, no_space
from asc.tracking.confusion import confusion_csv, plot_confusion
from asc.tracking.health import (DEFAULT_URI, TrackingError, check_server, is_server, resolve_uri, stopped_answering,
                                 unreachable)

__all__ = ["DEFAULT_URI", "TrackingError", "TrackingStore", "resolve_uri"]
#: ``mlflow.experimentKind`` of the project's experiments: model training (the UI then opens on the runs).
EXPERIMENT_KIND = "custom_model_development"
#: Tags of a parent run: its kind (``sweep`` or ``study``) and its key (sweep id, study name).
PARENT_TAG = "asc.parent"
PARENT_KEY_TAG = "asc.parent.key"
#: MLflow's own tag that nests a run under its parent in the UI.
PARENT_RUN_TAG = "mlflow.parentRunId"


#: What to do when a run's artifact folder is full.
ARTIFACTS_HINT = " or give new experiments another artifact folder (logger.artifacts)"

#: The file beside a run's checkpoints that keeps the metrics a tracking server that went away could not take.
JOURNAL = "unsent.jsonl"

#: Where ``make ui`` serves a local store's UI.
LOCAL_UI = "http://127.0.0.1:5000"


def absolute_uri(uri: str) -> str:
    """A relative ``sqlite:///file.db`` made absolute, naming the same file from any folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (MLflow's or Optuna's), else None."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def schema_lock(url: str) -> AbstractContextManager:
    """An inter-process lock beside a SQLite database, held while a process creates or upgrades its schema.

    Used for MLflow's store here and for Optuna's storage (:func:`asc.runs.tune.make_storage`). Other URLs
    get no lock: database servers serialise their own DDL.
    """
    path = sqlite_file(url)
    if path is None or not path.parent.is_dir():  # no file, or a folder that is missing: the store says so itself
        return nullcontext()
    return exclusive(f"{path}.lock", f"{path}: another process is creating its tables; waiting", timeout=600)


def schema_template() -> Path:
    """Where this machine keeps an empty SQLite store of the installed MLflow's schema (no experiment in it), one file
    per MLflow and SQLAlchemy version: ``$ASC_CACHE_HOME``, else ``$XDG_CACHE_HOME/asc``, else ``~/.cache/asc``."""
    import sqlalchemy

    root = os.environ.get("ASC_CACHE_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asc"
    return Path(root) / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}-schema.db"


def _make_schema_template(template: Path) -> None:
    """Let MLflow create a store in a temporary file beside ``template`` (its ~50 migrations, each committed and so
    synced to disk: about 6 s of wall time on a plain disk), take out the default experiment MLflow adds when it
    opens a store without one (it names the artifact folder of the store it was made for), then rename the file to
    ``template``: a process that dies half-way leaves no template behind, and two that race both leave a whole one."""
    import sqlite3

    template.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{template.name}.", suffix=".tmp", dir=template.parent)
    os.close(fd)
    os.unlink(tmp)  # MLflow creates the tables only in a file that is missing or empty; it makes the file itself
    try:
        MlflowClient(f"sqlite:///{tmp}").search_experiments(max_results=1)
        with sqlite3.connect(tmp) as db:
            db.execute("DELETE FROM experiment_tags")
            db.execute("DELETE FROM experiments")
        db.close()
        os.replace(tmp, template)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_sqlite_store(path: Path) -> bool:
    """A new SQLite store at ``path`` as a copy of :func:`schema_template` (made once per MLflow version): the same
    tables MLflow's own creation gives (tests/test_tracking.py compares them), in milliseconds instead of the seconds
    its migrations take. MLflow adds the default experiment itself when it first opens the copy. False, leaving
    MLflow to create the store as usual, where the template cannot be made (a read-only home, say)."""
    template = schema_template()
    try:
        if not template.is_file():
            _make_schema_template(template)
    except Exception:  # noqa: BLE001 -- any failure here leaves the store to MLflow, which reports its own errors
        return False
    try:
        with open(template, "rb") as src:
            atomic_write(path, lambda f: shutil.copyfileobj(src, f))  # a whole store or none under its name
    except OSError:
        return False
    return True


def artifact_location(path: str | None) -> str | None:
    """A local artifact folder as a ``file://`` URI (used only when an experiment is created)."""
    return Path(path).resolve().as_uri() if path else None


class JournalledLogger(MLFlowLogger):
    """Lightning's MLflow logger, keeping what a tracking server that stopped answering could not take.

    When a call fails and the server no longer answers, the metrics go to :attr:`journal` (one JSON line per call)
    and the run stops with a :class:`TrackingError` that says where the checkpoints and the journal are;
    :meth:`TrackingStore.replay` sends them when the run is resumed. Other failures are raised as they are.
    """

    journal: Path | None = None  # set once the run's checkpoint folder is known
    server_down = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.server_down:  # teardown after the failure: keep, do not wait for the server again
            self._keep(metrics, step)
            return
        try:
            super().log_metrics(metrics, step)
        except (MlflowException, OSError) as err:
            why = unreachable(self._tracking_uri) if is_server(self._tracking_uri or "") else None
            if why is None:
                raise
            self.server_down = True
            self._keep(metrics, step)
            where = (f"the checkpoints are in {self.journal.parent} and the metrics it could not take in "
                     f"{self.journal}" if self.journal else "the checkpoints are in the run's folder")
            raise stopped_answering(self._tracking_uri, self.run_id, why, err, where, " and sends them first") from None

    def _keep(self, metrics: Mapping[str, float], step: int | None) -> None:
        if self.journal is None:
            return
        line = {"ms": int(time.time() * 1000), "step": step or 0, "metrics": {k: float(v) for k, v in metrics.items()}}
        with open(self.journal, "a") as f:
            f.write(json.dumps(line) + "\n")

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Lightning calls this when ``fit`` ends (and again after ``test``), but the run is not over then: a kill
        between fit and test would leave a FINISHED run without its test results, which a sweep's rerun skips as
        done (found by the reliability suite, kill:sweep). The run ends with :meth:`end`, once everything is recorded.
        """

    @rank_zero_only
    def end(self, status: str = "success") -> None:
        """End the MLflow run (FINISHED for ``success``), unless the server went away: the run then stays RUNNING and
        its next run resumes it."""
        if not self.server_down:
            super().finalize(status)


#: Stores whose schema this process has created or checked (one lock per store and process).
_OPENED: set[str] = set()


class TrackingStore:
    """An MLflow tracking store (a SQLite file, a server, a folder) and the project's questions to it."""

    def __init__(self, uri: str | None = None, explicit: bool = False) -> None:
        """``uri``: the config's store (``MLFLOW_TRACKING_URI`` wins over it), or with ``explicit`` one the user named
        on the command line (it wins over the variable)."""
        self.uri = absolute_uri(uri if explicit and uri else resolve_uri(uri))

    def __repr__(self) -> str:
        return f"TrackingStore({self.uri!r})"

    # -- the store itself -------------------------------------------------------------------------------------
    @property
    def is_server(self) -> bool:
        """Whether the store is a tracking server (artifacts then go where the server says)."""
        return self.uri.startswith(("http://", "https://"))

    def _artifact_root(self, artifacts: str | None) -> str | None:
        """The artifact root for a new experiment: the local folder ``artifacts``, or None (the server's) on a server."""
        return None if self.is_server else artifact_location(artifacts)

    def exists(self) -> bool:
        """False only for a SQLite store whose file is missing (opening it would create an empty store)."""
        path = sqlite_file(self.uri)
        return path is None or path.is_file()

    @cached_property
    def client(self) -> MlflowClient:
        """The client, after the store's schema exists (created one process at a time). A tracking server that does
        not answer is a :class:`TrackingError` within seconds (:func:`asc.tracking.health.check_server`)."""
        check_server(self.uri)
        if self.uri not in _OPENED:
            with schema_lock(self.uri):
                path = sqlite_file(self.uri)
                if path is not None and path.parent.is_dir() and not path.exists():
                    create_sqlite_store(path)
                MlflowClient(self.uri).search_experiments(max_results=1)
            _OPENED.add(self.uri)
        return MlflowClient(self.uri, registry_uri=self.uri)

    def experiments(self) -> list[tuple[str, str]]:
        """``(id, name)`` of every active experiment, by name."""
        found = self.client.search_experiments()
        return sorted(((e.experiment_id, e.name) for e in found), key=lambda e: e[1])

    def ui_url(self, experiment_id: str, run_id: str | None = None, base: str | None = None) -> str:
        """The UI page of an experiment's training runs (or of one run), opened in model-training mode.

        MLflow 3.17's UI takes its mode from the link (``workflowType``) or from the user's last choice in the
        browser, and otherwise opens every experiment on an empty GenAI overview of traces, whatever the
        experiment's ``mlflow.experimentKind``: the links asc prints say ``machine_learning``.
        """
        if base is None:
            base = self.uri if self.uri.startswith(("http://", "https://")) else LOCAL_UI
        base = base.rstrip("/")
        page = f"runs/{run_id}" if run_id else "runs"
        return f"{base}/#/experiments/{experiment_id}/{page}?workflowType=machine_learning"

    # -- experiments ------------------------------------------------------------------------------------------
    def experiment(self, name: str, artifacts: str | None = None) -> str:
        """The id of experiment ``name``, created if missing (as a model-training experiment, with ``artifacts``
        as its artifact folder). Safe when several processes create it at once."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            tags = {"mlflow.experimentKind": EXPERIMENT_KIND}
            try:
                return self.client.create_experiment(name, artifact_location=self._artifact_root(artifacts), tags=tags)
            except MlflowException:  # created meanwhile by another process
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if "mlflow.experimentKind" not in found.tags:  # made before experiments carried their kind
            self.client.set_experiment_tag(found.experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)
        return found.experiment_id

    # -- runs -------------------------------------------------------------------------------------------------
    def logger(self, experiment: str, run_name: str, tags: Mapping[str, Any], artifacts: str | None = None,
               run_id: str | None = None):
        """Lightning's MLFlowLogger on this store: a new run of ``experiment`` (or the existing ``run_id``)."""
        self.experiment(experiment, artifacts)  # created with its kind before Lightning looks it up
        return JournalledLogger(
            experiment_name=experiment, run_name=run_name, tracking_uri=self.uri,
            artifact_location=self._artifact_root(artifacts), tags={k: str(v) for k, v in tags.items()}, run_id=run_id,
        )

    def create_run(self, experiment_id: str, name: str, tags: Mapping[str, Any] | None = None,
                   parent: str | None = None) -> str:
        """A new RUNNING run (nested under ``parent`` if given); returns its id."""
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent:
            tags[PARENT_RUN_TAG] = parent
        return self.client.create_run(experiment_id, run_name=name[:250], tags=tags).info.run_id

    def get_run(self, run_id: str):
        try:
            return self.client.get_run(run_id)
        except MlflowException as err:
            raise TrackingError(f"no MLflow run {run_id!r} in {self.uri}; check the id and the tracking URI "
                                "(--tracking-uri or MLFLOW_TRACKING_URI)") from err

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def reopen_run(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    @contextmanager
    def failure_marked(self, run_id: str, kept: str = "") -> Iterator[None]:
        """A run that raises is marked KILLED (Ctrl-C, SIGTERM from a scheduler that preempts or requeues the job --
        Lightning and submitit turn it into ``SystemExit`` -- or a pruned trial) or FAILED, with the error as a tag,
        so it never stays RUNNING and a resumed sweep reruns it.

        A tracking server that stopped answering (any MLflow call of the run failed, and ``/health`` does not answer)
        is a :class:`TrackingError` saying what is ``kept`` locally (the run's checkpoints) and to rerun: the run
        stays RUNNING, and the next run of its config resumes it. (A server killed while the run logged its model
        ended in MLflow's traceback; the reliability suite found it.)"""
        try:
            yield
        except BaseException as err:
            if self.is_server and not isinstance(err, (KeyboardInterrupt, SystemExit)):
                why = unreachable(self.uri)
                if why is not None and isinstance(err, TrackingError):
                    raise  # said already (JournalledLogger)
                if why is not None:
                    raise stopped_answering(self.uri, run_id, why, err, kept) from None
            stopped = isinstance(err, (KeyboardInterrupt, SystemExit)) or type(err).__name__ == "TrialPruned"
            try:
                self.client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:5000])
                self.end_run(run_id, "KILLED" if stopped else "FAILED")
            except (MlflowException, OSError, TrackingError) as marking:  # the error itself says more
                err.add_note(f"(run {run_id} could not be marked {'KILLED' if stopped else 'FAILED'}: {marking})")
            raise

    def delete_tag(self, run_id: str, key: str) -> None:
        self.client.delete_tag(run_id, key)

    def replay(self, run_id: str, journal: Path) -> int:
        """Send the metrics a :class:`JournalledLogger` kept in ``journal`` to run ``run_id``, then delete the file;
        returns how many values were sent (a line cut short by a kill is skipped)."""
        if not journal.is_file():
            return 0
        items = []
        for line in journal.read_text().splitlines():
            try:
                rec = json.loads(line)
                items += [Metric(k, float(v), int(rec["ms"]), int(rec["step"])) for k, v in rec["metrics"].items()]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])
        journal.unlink()
        return len(items)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, run_id: str, text: str, path: str) -> None:
        with self.artifact_space(run_id, f"the artifact {path}", len(text.encode())):
            self.client.log_text(run_id, text, path)

    def log_artifact(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        with self.artifact_space(run_id, f"the artifact {Path(path).name}", Path(path).stat().st_size):
            self.client.log_artifact(run_id, str(path), folder)

    def log_artifacts(self, run_id: str, folder: str | Path, into: str | None = None) -> None:
        need = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        with self.artifact_space(run_id, f"the artifacts of {folder}", need):
            self.client.log_artifacts(run_id, str(folder), into)

    def local_artifacts(self, run_id: str) -> Path | None:
        """The folder of a run's artifacts when the store keeps them in a local folder (``file://``), else None."""
        uri = self.client.get_run(run_id).info.artifact_uri
        if uri.startswith("file://"):
            return Path(uri.removeprefix("file://"))
        return Path(uri) if uri.startswith("/") else None

    @contextmanager
    def artifact_space(self, run_id: str, what: str, need: int | None = None) -> Iterator[None]:
        """Artifacts written inside this block to a local folder: with less than ``need`` bytes free there, a
        :class:`asc.files.DiskFull` error before anything is written; a full disk on the way is the same error, and
        the files the block had begun are deleted (never left cut short under their names)."""
        folder = self.local_artifacts(run_id)
        if folder is not None and need and free_space(folder) < need:
            raise disk_full(folder, f"{what} of run {run_id}", need, ARTIFACTS_HINT)
        start = time.time() - 1
        try:
            yield
        except (OSError, MlflowException) as err:
            if folder is None or not (no_space(err) or no_space(err.__cause__) or no_space(err.__context__)):
                raise
            for f in folder.rglob("*"):  # begun, cut short by the full disk
                if f.is_file() and f.stat().st_mtime >= start:
                    f.unlink(missing_ok=True)
            raise disk_full(folder, f"{what} of run {run_id}", need, ARTIFACTS_HINT) from None

    def log_confusion(self, run_id: str, cm: np.ndarray, class_names: Sequence[str], stem: str = "confusion_test",
                      title: str = "") -> None:
        """``<stem>.csv`` and ``<stem>.png`` (rows true, columns predicted, class names on both axes)."""
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / f"{stem}.csv"
            csv.write_text(confusion_csv(cm, class_names))
            self.log_artifact(run_id, csv)
            self.log_artifact(run_id, plot_confusion(cm, class_names, Path(tmp) / f"{stem}.png", title))

    def download(self, run_id: str, path: str, dst: str | Path) -> Path:
        """A run's artifact (file or folder) downloaded into ``dst``."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        except (MlflowException, OSError) as err:
            raise TrackingError(f"run {run_id} in {self.uri} has no artifact {path!r} ({err})") from err

    def read_csv(self, run_id: str, path: str, **kwargs: Any) -> pd.DataFrame:
        """A run's CSV artifact read with :func:`pandas.read_csv` (``kwargs``); TrackingError if it has none."""
        with tempfile.TemporaryDirectory() as tmp:
            return pd.read_csv(self.download(run_id, path, tmp), **kwargs)

    # -- queries ----------------------------------------------------------------------------------------------
    def search(self, experiment_ids: Sequence[str], filter_string: str = "", order_by: Sequence[str] = (),
               max_results: int | None = None) -> list:
        """Every run matching ``filter_string`` (all pages), in ``order_by`` order (newest first by default)."""
        order = list(order_by) or ["attributes.start_time DESC"]
        out, token = [], None
        while True:
            page = self.client.search_runs(list(experiment_ids), filter_string=filter_string, order_by=order,
                                           max_results=min(max_results or 1000, 1000), page_token=token)
            out.extend(page)
            token = page.token
            if not token or (max_results is not None and len(out) >= max_results):
                return out[:max_results] if max_results is not None else out

    def children(self, parent_run_id: str, filter_string: str = "") -> list:
        """All child runs of a parent run, newest first."""
        parent = self.get_run(parent_run_id)
        query = f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'" + (f" and {filter_string}" if filter_string else "")
        return self.search([parent.info.experiment_id], query)

    def finished_child(self, parent_run_id: str, config_hash: str):
        """The newest FINISHED child of ``parent_run_id`` whose ``config_hash`` tag is ``config_hash``, or None."""
        runs = self.children(parent_run_id, f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'")
        return runs[0] if runs else None

    def parents(self, experiment_id: str, kind: str, key: str) -> list:
        """The parent runs of sweep/study ``key``, oldest first."""
        query = f"tags.`{PARENT_TAG}` = '{kind}' and tags.`{PARENT_KEY_TAG}` = '{key}'"
        return self.search([experiment_id], query, order_by=["attributes.start_time ASC"])

    def open_parent(self, experiment_id: str, kind: str, key: str, name: str, resume: bool = True,
                    tags: Mapping[str, Any] | None = None) -> tuple[str, bool]:
        """The parent run of sweep/study ``key``: the newest existing one when ``resume`` (``(run_id, True)``),
        else a new one (``(run_id, False)``).

        Processes that start together may each create one: all of them then keep the oldest of the runs that
        appeared meanwhile and delete their own, so they share one parent.
        """
        before = self.parents(experiment_id, kind, key)
        if resume and before:
            return before[-1].info.run_id, True
        mine = self.create_run(experiment_id, name, {PARENT_TAG: kind, PARENT_KEY_TAG: key, **(tags or {})})
        known = {r.info.run_id for r in before}
        rivals = [r.info.run_id for r in self.parents(experiment_id, kind, key) if r.info.run_id not in known]
        if resume and rivals and rivals[0] != mine:
            self.delete_run(mine)
            return rivals[0], True
        return mine, False

    def best_run(self, experiment: str, metric: str = "best_val/acc", sweep: str | None = None) -> str:
        """Id of the finished run with the highest ``metric`` in ``experiment`` (optionally one sweep's runs)."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            raise TrackingError(f"no MLflow experiment named {experiment!r} in {self.uri}")
        filters = ["attributes.status = 'FINISHED'"] + ([f"tags.sweep = '{sweep}'"] if sweep else [])
        runs = self.search([exp.experiment_id], " and ".join(filters), [f"metrics.`{metric}` DESC"], max_results=1)
        if not runs or metric not in runs[0].data.metrics:
            raise TrackingError(f"experiment {experiment!r} has no finished run"
                                f"{' of sweep ' + sweep if sweep else ''} with metric {metric!r}")
        return runs[0].info.run_id

    # -- models -----------------------------------------------------------------------------------------------
    def logged_model_id(self, run_id: str, name: str) -> str:
        """The id of the model ``name`` that run ``run_id`` logged."""
        run = self.get_run(run_id)
        models = self.client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' and name = '{name}'",
        )
        if not models:
            raise TrackingError(f"run {run_id} has no logged model {name!r} (trained before asc packaged its models?); "
                                "retrain it")
        return models[0].model_id

    def register(self, run_id: str, model_name: str, name: str):
        """Register the model ``model_name`` logged by run ``run_id`` as a new version of ``name``."""
        model_id = self.logged_model_id(run_id, model_name)
        with self.fluent():
            return mlflow.register_model(f"models:/{model_id}", name, tags={"run_id": run_id})

    def download_model(self, uri: str, dst: str | Path) -> Path:
        """A ``models:/...`` (or ``runs:/...``) URI downloaded into ``dst``."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=self.uri,
                                                        registry_uri=self.uri)
        except MlflowException as err:
            raise TrackingError(f"{uri}: no such registered model in {self.uri} ({err.message})") from err
        return Path(local)

    @contextmanager
    def fluent(self) -> Iterator[None]:
        """MLflow's fluent API (``mlflow.*``) on this store for a while. ``mlflow.set_tracking_uri`` also sets
        ``MLFLOW_TRACKING_URI`` in the environment, which would outlive the call: it is put back afterwards."""
        before = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before)
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
