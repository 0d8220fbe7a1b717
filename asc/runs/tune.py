"""Hyperparameter search with Optuna: resumable, pruned, shareable between workers, tracked in MLflow.

    asc tune                                         # the default space (conf/tune/default.yaml)
    asc tune experiment=demo_small_cnn tune.n_trials=30        # the same Hydra overrides as asc train / train.py
    asc tune tune.storage=postgresql://host/optuna   # many machines, one study

The objective of a trial is the mean validation accuracy over ``tune.seeds``. The first seed's run reports
its validation accuracy every epoch to the pruner (Optuna's Lightning pruning callback); a pruned trial
stops there. The study lives in ``tune.storage`` (SQLite by default): rerunning the command resumes it,
and several processes or machines pointed at one storage share it, stopping once ``tune.n_trials``
trials are finished between them.

In MLflow the study is one parent run, each trial a nested child (its sampled params, objective, state)
and each seed's training run a child of its trial. At the end the parent gets the best params and
Optuna's plots; with ``tune.retrain=true`` the best configuration is retrained over ``tune.retrain_seeds``
and its test accuracy (mean ± std) is logged beside the paper's best cell.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from alembic.util import CommandError
from matplotlib import pyplot as plt
from omegaconf import DictConfig, OmegaConf
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from optuna.visualization import matplotlib as ov
from optuna_integration import PyTorchLightningPruningCallback

from asc.errors import UserMistake
from asc.runs import published
from asc.runs.train import run
from asc.tracking.store import TrackingStore, schema_lock

log = logging.getLogger(__name__)



class TuneConfigError(ValueError, UserMistake):
    """The search space or the storage is unusable; raised before any trial runs."""


# -- search space --------------------------------------------------------------------------------------
def check_space(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Validate ``tune.space`` against the run config: every path exists, every range is non-empty; and
    ``tune.seeds``."""
    if not cfg.tune.seeds:
        raise TuneConfigError("tune.seeds is empty: the objective needs at least one seed")
    space = OmegaConf.to_container(cfg.tune.space, resolve=True)
    if not space:
        raise TuneConfigError("tune.space is empty: nothing to search")
    for path, dist in space.items():
        if OmegaConf.select(cfg, path, default="__missing__") == "__missing__":
            raise TuneConfigError(f"tune.space.{path}: no setting {path!r} in the run config (check the spelling)")
        kind = dist.get("type")
        if kind in ("float", "int"):
            low, high = dist.get("low"), dist.get("high")
            if low is None or high is None or not low < high:
                raise TuneConfigError(f"tune.space.{path}: empty range low={low}, high={high} (need low < high)")
            if dist.get("log") and low <= 0:
                raise TuneConfigError(f"tune.space.{path}: a log scale needs low > 0 (got {low})")
        elif kind == "categorical":
            if not dist.get("choices"):
                raise TuneConfigError(f"tune.space.{path}: categorical with no choices")
        else:
            raise TuneConfigError(f"tune.space.{path}: type {kind!r} is not one of float, int, categorical")
    return space


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per path, drawn by the trial."""
    params: dict[str, Any] = {}
    for path, dist in space.items():
        kind = dist["type"]
        if kind == "float":
            params[path] = trial.suggest_float(path, dist["low"], dist["high"], log=bool(dist.get("log")))
        elif kind == "int":
            params[path] = trial.suggest_int(path, dist["low"], dist["high"], log=bool(dist.get("log")))
        else:
            # categorical choices may be lists (e.g. hidden sizes): Optuna stores their string form
            choices = dist["choices"]
            labels = [str(c) for c in choices]
            params[path] = choices[labels.index(trial.suggest_categorical(path, labels))]
    return params


def apply(cfg: DictConfig, params: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with ``params`` (dotted paths) set."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for path, value in params.items():
        OmegaConf.update(out, path, value, merge=False)
    return out


# -- Optuna objects from config -------------------------------------------------------------------------
def _first_open(open_fn, tries: int = 5):
    """Retry opening a storage that a concurrent worker is creating on a database server (SQLite stores are
    created under :func:`asc.tracking.store.schema_lock` instead)."""
    for attempt in range(tries):
        try:
            return open_fn()
        # PostgreSQL reports the loser of a CREATE TABLE race as IntegrityError (pg_type) or
        # ProgrammingError (DuplicateTable), depending on which statement it lost
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError,
                CommandError):
            if attempt == tries - 1:
                raise
            time.sleep(0.5 + random.random() * (attempt + 1))


def make_storage(url: str):
    def _open():
        with schema_lock(url):
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
            storage.get_all_studies()
        return storage

    try:
        return _first_open(_open)
    except Exception as err:  # noqa: BLE001 - bad URL, missing driver, unreachable server, unwritable file
        raise TuneConfigError(f"tune.storage: cannot open {url!r} ({type(err).__name__}: {err})") from err


def make_pruner(spec: DictConfig):
    name = spec.get("name", "median")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.get("n_startup_trials", 5), n_warmup_steps=spec.get("n_warmup_steps", 5))
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.get("min_resource", "auto"), reduction_factor=spec.get("reduction_factor", 3))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneConfigError(f"tune.pruner.name: {name!r} is not one of median, successive_halving, none")


def make_sampler(spec: DictConfig):
    name = spec.get("name", "tpe")
    kinds = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    if name not in kinds:
        raise TuneConfigError(f"tune.sampler.name: {name!r} is not one of tpe, random")
    seed = spec.get("seed")
    return kinds[name](seed=None) if seed is None else PerTrialSeed(kinds[name], int(seed))


class PerTrialSeed(optuna.samplers.BaseSampler):
    """A seeded sampler made afresh before each trial, its seed drawn from the study's and the number of trials
    finished or running before it: a study resumed after a kill draws what an uninterrupted one would have drawn.
    (A sampler seeded once per process drew trial 0's parameters again after every restart; the reliability suite
    found it.) TPE and random sampling keep nothing between trials but their random state: the history they learn
    from is the study's."""

    def __init__(self, kind: type, seed: int) -> None:
        self.kind, self.seed = kind, seed
        self.inner = kind(seed=seed)

    def before_trial(self, study, trial) -> None:
        before = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        index = sum(t.number != trial.number for t in before)
        self.inner = self.kind(seed=(self.seed * 1_000_003 + index) % 2**32)
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


# -- trials of processes that died ---------------------------------------------------------------------------------
#: The user attribute naming the process that runs a trial (host:pid:start time), see :func:`fail_dead_trials`.
PROCESS_ATTR = "asc.process"


def _start_ticks(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def process_gone(tag: str | None) -> bool:
    """Whether the process a trial's :data:`PROCESS_ATTR` names has ended (only known for this host)."""
    if not tag or tag.count(":") < 2:
        return False
    host, pid, ticks = tag.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    now = _start_ticks(int(pid))
    return now is None or (ticks != "None" and now != ticks)  # no such process, or the pid was reused


def fail_dead_trials(study, store: TrackingStore, exp_id: str, parent: str) -> list[int]:
    """Trials left RUNNING by a process of this host that died (SIGKILL, out of memory): marked FAIL at once, their
    MLflow runs KILLED. Optuna's heartbeat (``heartbeat_interval``, ``grace_period``) does the same for other hosts'
    trials, minutes later. Returns the trial numbers."""
    dead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if process_gone(t.user_attrs.get(PROCESS_ATTR))]
    for t in dead:
        study.tell(t.number, state=TrialState.FAIL)
        for trial_run in store.children(parent, f"tags.`optuna.trial` = '{t.number}'"):
            for child in [trial_run, *store.children(trial_run.info.run_id, "attributes.status = 'RUNNING'")]:
                if child.info.status == "RUNNING":
                    store.end_run(child.info.run_id, "KILLED")
            store.set_tags(trial_run.info.run_id, {"optuna.state": "FAIL"})
    if dead:
        log.info("study %s: trial(s) %s left running by a process that died: marked FAIL", study.study_name,
                 [t.number for t in dead])
    return [t.number for t in dead]


# -- MLflow ---------------------------------------------------------------------------------------------
def study_parent_run(store: TrackingStore, exp_id: str, cfg: DictConfig, study) -> str:
    """The study's MLflow parent run: every worker and every resume of the study shares one (found by its tags;
    workers that start together agree on the oldest, see :meth:`TrackingStore.open_parent`)."""
    run_id, resumed = store.open_parent(exp_id, "study", study.study_name, f"study={study.study_name}",
                                        tags={"study": study.study_name})
    if not resumed:
        store.log_text(run_id, OmegaConf.to_yaml(cfg.tune, resolve=True), "tune.yaml")
    else:  # running again until the study reaches its target (tune() ends it then)
        store.reopen_run(run_id)
    return run_id


def trial_run(store: TrackingStore, exp_id: str, parent: str, trial, params: dict[str, Any]) -> str:
    run_id = store.create_run(exp_id, f"trial={trial.number}", parent=parent,
                              tags={"study": trial.study.study_name, "optuna.trial": trial.number})
    store.log_params(run_id, params)
    return run_id


# -- the search -----------------------------------------------------------------------------------------
def objective_for(cfg: DictConfig, space: dict[str, dict[str, Any]], store: TrackingStore, exp_id: str, parent: str):
    seeds = list(cfg.tune.seeds)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(PROCESS_ATTR, this_process())
        params = suggest(trial, space)
        trial_cfg = apply(cfg, params)
        trial_id = trial_run(store, exp_id, parent, trial, params)
        values: list[float] = []
        try:
            for i, seed in enumerate(seeds):
                seed_cfg = apply(trial_cfg, {"seed": seed})
                callbacks = [PyTorchLightningPruningCallback(trial, monitor="val/acc")] if i == 0 else []
                result = run(seed_cfg, callbacks=callbacks, parent_run_id=trial_id, tags={"trial": trial.number})
                values.append(result.val_acc)
                store.log_metrics(trial_id, {"val/acc": result.val_acc}, step=i)
        except optuna.TrialPruned:
            store.set_tags(trial_id, {"optuna.state": "PRUNED"})
            store.end_run(trial_id, "KILLED")
            raise
        except BaseException:
            store.set_tags(trial_id, {"optuna.state": "FAIL"})
            store.end_run(trial_id, "FAILED")
            raise
        value = statistics.fmean(values)
        store.log_metrics(trial_id, {"objective": value})
        store.set_tags(trial_id, {"optuna.state": "COMPLETE"})
        store.end_run(trial_id, "FINISHED")
        return value

    return objective


def summarise(store: TrackingStore, study, parent: str) -> None:
    """Best params (tags ``best.<key>``, overwritten when a resumed study finds a better trial), ``best/objective``
    per number of completed trials, and Optuna's matplotlib plots on the parent run."""
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    store.log_metrics(parent, {f"trials/{s.name.lower()}": sum(t.state == s for t in study.trials) for s in TrialState})
    if not done:
        log.warning("no completed trial yet: nothing to summarise")
        return
    # tags, not params: a study that grows on resume gets a new best, and MLflow refuses to change a param
    store.set_tags(parent, {f"best.{key}": value for key, value in study.best_params.items()})
    store.log_metrics(parent, {"best/objective": study.best_value}, step=len(done))  # its history over the trials
    store.set_tags(parent, {"best_trial": study.best_trial.number})
    plots = {"optimization_history": ov.plot_optimization_history, "slice": ov.plot_slice}
    if len(done) >= 2:
        plots["param_importances"] = ov.plot_param_importances
    with tempfile.TemporaryDirectory() as tmp:
        for name, plot in plots.items():
            try:
                ax = plot(study)
            except Exception as err:  # noqa: BLE001 - a plot Optuna cannot draw for this study is skipped
                log.warning("plot %s skipped: %s", name, err)
                continue
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(max(fig.get_size_inches()[0], 8), max(fig.get_size_inches()[1], 5))
            fig.tight_layout()
            path = Path(tmp) / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)  # Optuna draws with pyplot
            store.log_artifact(parent, path, "plots")
        study.trials_dataframe().to_csv(Path(tmp) / "trials.csv", index=False)
        store.log_artifact(parent, Path(tmp) / "trials.csv")


def retrain_best(cfg: DictConfig, space: dict[str, dict[str, Any]], study, store: TrackingStore,
                 parent: str) -> dict[str, float]:
    """Train the best configuration over ``tune.retrain_seeds``; test mean ± std, beside the paper's best cell."""
    best = {path: _decode(space[path], value) for path, value in study.best_params.items()}
    best_cfg = apply(cfg, best)
    accs = []
    for seed in cfg.tune.retrain_seeds:
        result = run(apply(best_cfg, {"seed": seed}), parent_run_id=parent, tags={"retrain": "best"})
        accs.append(result.test_acc)
    mean = statistics.fmean(accs)
    std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
    store.log_metrics(parent, {"retrain/test_acc_mean": mean, "retrain/n": len(accs)}
                      | ({} if math.isnan(std) else {"retrain/test_acc_std": std}))
    pw, pm = published.BEST_CELL
    text = (
        f"best params: {best}\n"
        f"retrained over seeds {list(cfg.tune.retrain_seeds)}: test accuracy {100 * mean:.1f} ± {100 * std:.1f} % "
        f"(n={len(accs)}); the paper's best cell: {published.TEST_ACC:.1f} % ({pw:g} s window, mask {100 * pm:g} %, "
        "TAU 2019, its own split)\n"
    )
    store.log_text(parent, text, "retrain.md")
    print(text)
    return {"mean": mean, "std": std, "n": len(accs)}


def _decode(dist: dict[str, Any], value: Any) -> Any:
    if dist["type"] == "categorical":
        labels = [str(c) for c in dist["choices"]]
        return dist["choices"][labels.index(value)]
    return value


def tune(cfg: DictConfig) -> Any:
    """Run (or resume, or join) the study described by ``cfg.tune``; returns the study."""
    space = check_space(cfg)
    storage = make_storage(cfg.tune.storage)
    study = optuna.create_study(
        study_name=cfg.tune.study_name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=make_sampler(cfg.tune.sampler),
        pruner=make_pruner(cfg.tune.pruner),
    )
    for params in cfg.tune.get("enqueue") or []:
        study.enqueue_trial(OmegaConf.to_container(params, resolve=True), skip_if_exists=True)
    store = TrackingStore(cfg.logger.tracking_uri)
    exp_id = store.experiment(cfg.logger.experiment, cfg.logger.get("artifacts"))
    parent = study_parent_run(store, exp_id, cfg, study)
    fail_dead_trials(study, store, exp_id, parent)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    already = sum(t.state in finished for t in study.trials)
    log.info("study %s: %d trial(s) finished before, target %d", study.study_name, already, cfg.tune.n_trials)
    study.optimize(
        objective_for(cfg, space, store, exp_id, parent),
        n_trials=max(0, int(cfg.tune.n_trials) - already),
        callbacks=[MaxTrialsCallback(int(cfg.tune.n_trials), states=finished)],
        catch=(),
        gc_after_trial=True,
    )
    summarise(store, study, parent)
    if cfg.tune.retrain and any(t.state == TrialState.COMPLETE for t in study.trials):
        retrain_best(cfg, space, study, store, parent)
    # The study's parent run ends once the study has its trials (a study killed before stays RUNNING until a rerun
    # completes it: the reliability suite found parents left RUNNING by completed studies).
    if sum(t.state in finished for t in study.trials) >= int(cfg.tune.n_trials):
        store.end_run(parent, "FINISHED")
    return study
