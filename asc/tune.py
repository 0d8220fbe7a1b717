"""Hyperparameter search with Optuna: resumable, pruned, shareable between workers, tracked in MLflow.

    python -m asc.tune                                    # the default space (conf/tune/default.yaml)
    python -m asc.tune experiment=demo tune.n_trials=30   # same Hydra overrides as train.py
    python -m asc.tune tune.storage=postgresql://host/optuna   # many machines, one study

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
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STUDY_TAG = "asc.study"


class TuneConfigError(ValueError):
    """The search space or the storage is unusable; raised before any trial runs."""


# -- search space --------------------------------------------------------------------------------------
def check_space(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Validate ``tune.space`` against the run config: every path exists, every range is non-empty."""
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
    created under :func:`asc.tracking.schema_lock` instead)."""
    import sqlalchemy.exc
    from alembic.util import CommandError

    for attempt in range(tries):
        try:
            return open_fn()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, CommandError):
            if attempt == tries - 1:
                raise
            time.sleep(0.5 + random.random() * (attempt + 1))


def make_storage(url: str):
    import optuna

    from asc.tracking import schema_lock

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
    import optuna

    name = spec.get("name", "median")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.get("n_startup_trials", 5), n_warmup_steps=spec.get("n_warmup_steps", 5))
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.get("min_resource", "auto"), reduction_factor=spec.get("reduction_factor", 3))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneConfigError(f"tune.pruner.name: {name!r} is not one of median, successive_halving, none")


def make_sampler(spec: DictConfig):
    import optuna

    name = spec.get("name", "tpe")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=spec.get("seed"))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=spec.get("seed"))
    raise TuneConfigError(f"tune.sampler.name: {name!r} is not one of tpe, random")


# -- MLflow ---------------------------------------------------------------------------------------------
def _client(cfg: DictConfig):
    import mlflow

    from asc.sweep import experiment_id
    from asc.tracking import open_store, tracking_uri

    client = mlflow.MlflowClient(open_store(tracking_uri(cfg.logger.tracking_uri)))
    return client, experiment_id(client, cfg.logger.experiment, cfg.logger.get("artifacts"))


def _study_parents(client, exp_id: str, name: str) -> list:
    runs = client.search_runs([exp_id], filter_string=f"tags.`{STUDY_TAG}` = '{name}' and tags.kind = 'study'")
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def study_parent_run(cfg: DictConfig, study) -> str:
    """The study's MLflow parent run, found by its tag: every worker and every resume uses the same one.

    Workers that start together may each create one; all then keep the oldest and delete their own.
    """
    client, exp_id = _client(cfg)
    parents = _study_parents(client, exp_id, study.study_name)
    if parents:
        return parents[0].info.run_id
    mine = client.create_run(exp_id, run_name=f"study={study.study_name}", tags={STUDY_TAG: study.study_name, "kind": "study"})
    client.log_text(mine.info.run_id, OmegaConf.to_yaml(cfg.tune, resolve=True), "tune.yaml")
    oldest = _study_parents(client, exp_id, study.study_name)[0].info.run_id
    if oldest != mine.info.run_id:
        client.delete_run(mine.info.run_id)
    return oldest


def trial_run(cfg: DictConfig, parent: str, trial, params: dict[str, Any]) -> str:
    client, exp_id = _client(cfg)
    run = client.create_run(
        exp_id,
        run_name=f"trial={trial.number}",
        tags={"mlflow.parentRunId": parent, STUDY_TAG: trial.study.study_name, "kind": "trial", "trial": str(trial.number)},
    )
    for path, value in params.items():
        client.log_param(run.info.run_id, path, value)
    return run.info.run_id


# -- the search -----------------------------------------------------------------------------------------
def objective_for(cfg: DictConfig, space: dict[str, dict[str, Any]], parent: str):
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from asc.train import run

    seeds = list(cfg.tune.seeds)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        trial_cfg = apply(cfg, params)
        client, _ = _client(cfg)
        trial_id = trial_run(cfg, parent, trial, params)
        values: list[float] = []
        try:
            for i, seed in enumerate(seeds):
                seed_cfg = apply(trial_cfg, {"seed": seed})
                callbacks = [PyTorchLightningPruningCallback(trial, monitor="val/acc")] if i == 0 else []
                result = run(seed_cfg, callbacks=callbacks, parent_run_id=trial_id, tags={"trial": trial.number})
                values.append(result["val/acc"])
                client.log_metric(trial_id, "val/acc", result["val/acc"], step=i)
        except optuna.TrialPruned:
            client.set_tag(trial_id, "optuna.state", "PRUNED")
            client.set_terminated(trial_id, "KILLED")
            raise
        except BaseException:
            client.set_tag(trial_id, "optuna.state", "FAIL")
            client.set_terminated(trial_id, "FAILED")
            raise
        value = statistics.fmean(values)
        client.log_metric(trial_id, "objective", value)
        client.set_tag(trial_id, "optuna.state", "COMPLETE")
        client.set_terminated(trial_id, "FINISHED")
        return value

    return objective


def summarise(cfg: DictConfig, study, parent: str) -> None:
    """Best params and Optuna's matplotlib plots on the parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ov

    client, _ = _client(cfg)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    states = {s.name.lower(): sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState}
    for state, count in states.items():
        client.log_metric(parent, f"trials/{state}", count)
    if not done:
        log.warning("no completed trial yet: nothing to summarise")
        return
    for key, value in study.best_params.items():
        client.log_param(parent, f"best.{key}", value)
    client.log_metric(parent, "best/objective", study.best_value)
    client.set_tag(parent, "best_trial", str(study.best_trial.number))
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
            plt.close(fig)
            client.log_artifact(parent, str(path), "plots")
        trials = study.trials_dataframe()
        trials.to_csv(Path(tmp) / "trials.csv", index=False)
        client.log_artifact(parent, str(Path(tmp) / "trials.csv"))


def retrain_best(cfg: DictConfig, space: dict[str, dict[str, Any]], study, parent: str) -> dict[str, float]:
    """Train the best configuration over ``tune.retrain_seeds``; test mean ± std, beside the paper's best cell."""
    from asc.train import run

    best = {path: _decode(space[path], value) for path, value in study.best_params.items()}
    best_cfg = apply(cfg, best)
    client, _ = _client(cfg)
    accs = []
    for seed in cfg.tune.retrain_seeds:
        result = run(apply(best_cfg, {"seed": seed}), parent_run_id=parent, tags={"retrain": "best"})
        accs.append(result["test/acc"])
    mean = statistics.fmean(accs)
    std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
    client.log_metric(parent, "retrain/test_acc_mean", mean)
    if not math.isnan(std):
        client.log_metric(parent, "retrain/test_acc_std", std)
    client.log_metric(parent, "retrain/n", len(accs))
    paper = 0.697  # the paper's best cell (5 s, no mask): 69.7 % test accuracy on TAU 2019, its own split
    text = (
        f"best params: {best}\n"
        f"retrained over seeds {list(cfg.tune.retrain_seeds)}: test accuracy {100 * mean:.1f} ± {100 * std:.1f} % "
        f"(n={len(accs)}); the paper's best cell: {100 * paper:.1f} % (5 s window, no mask, TAU 2019)\n"
    )
    client.log_text(parent, text, "retrain.md")
    print(text)
    return {"mean": mean, "std": std, "n": len(accs)}


def _decode(dist: dict[str, Any], value: Any) -> Any:
    if dist["type"] == "categorical":
        labels = [str(c) for c in dist["choices"]]
        return dist["choices"][labels.index(value)]
    return value


def tune(cfg: DictConfig) -> Any:
    """Run (or resume, or join) the study described by ``cfg.tune``; returns the study."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    space = check_space(cfg)
    if not cfg.tune.seeds:
        raise TuneConfigError("tune.seeds is empty: the objective needs at least one seed")
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
    parent = study_parent_run(cfg, study)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    already = sum(t.state in finished for t in study.trials)
    log.info("study %s: %d trial(s) finished before, target %d", study.study_name, already, cfg.tune.n_trials)
    study.optimize(
        objective_for(cfg, space, parent),
        n_trials=max(0, int(cfg.tune.n_trials) - already),
        callbacks=[MaxTrialsCallback(int(cfg.tune.n_trials), states=finished)],
        catch=(),
        gc_after_trial=True,
    )
    summarise(cfg, study, parent)
    if cfg.tune.retrain and any(t.state == TrialState.COMPLETE for t in study.trials):
        retrain_best(cfg, space, study, parent)
    return study


@hydra.main(version_base="1.3", config_path="../conf", config_name="tune")
def main(cfg: DictConfig) -> None:
    study = tune(cfg)
    done = [t for t in study.trials if t.value is not None]
    if done:
        print(f"study {study.study_name}: {len(study.trials)} trial(s); best #{study.best_trial.number}: "
              f"mean val accuracy {study.best_value:.3f} with {study.best_params}")


if __name__ == "__main__":
    main()
