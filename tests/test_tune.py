"""The Optuna search through its public command, on the tiny synthetic set."""

import subprocess
import sys

import pytest

from conftest import REPO, TINY_OVERRIDES

SPACE = [
    "~tune.space",
    "+tune.space={window: {type: float, low: 1.5, high: 3.5}, model.lr: {type: float, low: 1.0e-7, high: 1.0e-2, log: true}}",
    "tune.seeds=[0]",
    "tune.pruner.name=median",
    "tune.pruner.n_startup_trials=1",
    "tune.pruner.n_warmup_steps=0",
    "trainer.max_epochs=3",
    "trainer.patience=3",
]


def _tune(work, data, *overrides, check=True):
    cmd = [sys.executable, "-m", "asc", "tune", *TINY_OVERRIDES, *SPACE, *data, *overrides]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_study_prunes_resumes_and_is_tracked(tmp_path, tiny_data):
    import mlflow
    import optuna

    # the paper-like trial first, then one that cannot learn (lr 1e-7): it is pruned against the first
    enqueue = "tune.enqueue=[{window: 2.0, model.lr: 0.003}, {window: 2.0, model.lr: 1.0e-7}]"
    _tune(tmp_path, tiny_data, "tune.n_trials=3", "tune.retrain=false", enqueue)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.load_study(study_name="asc-tune", storage=storage)
    states = [t.state.name for t in study.trials]
    assert len(states) == 3 and states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 1, states
    before = [(t.number, t.params, t.state) for t in study.trials]

    # resuming adds trials instead of starting over, then retrains the best configuration
    _tune(tmp_path, tiny_data, "tune.n_trials=4", "tune.retrain=true", "tune.retrain_seeds=[0,1]", enqueue)
    study = optuna.load_study(study_name="asc-tune", storage=storage)
    assert len(study.trials) == 4
    assert [(t.number, t.params, t.state) for t in study.trials[:3]] == before  # the old trials are kept as they were

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("asc-demo")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    parents = [r for r in runs if r.data.tags.get("asc.parent") == "study"]
    assert len(parents) == 1  # the resumed study kept its parent run
    assert parents[0].info.status == "FINISHED"  # ended once the study had its trials, reopened by the resume
    parent = parents[0].info.run_id
    trials = [r for r in runs if "optuna.trial" in r.data.tags]
    assert len(trials) == 4 and all(r.data.tags["mlflow.parentRunId"] == parent for r in trials)
    by_state = {r.data.tags["optuna.state"] for r in trials}
    assert {"PRUNED", "COMPLETE"} <= by_state
    assert all("model.lr" in r.data.params and "window" in r.data.params for r in trials)
    seeds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in {t.info.run_id for t in trials}]
    assert seeds and all("val/acc" in r.data.metrics for r in seeds)  # per-epoch metrics on the training runs
    summary = client.get_run(parent).data
    assert "best.model.lr" in summary.tags and summary.metrics["trials/pruned"] >= 1
    assert summary.metrics["retrain/n"] == 2 and 0 <= summary.metrics["retrain/test_acc_mean"] <= 1
    plots = {a.path for a in client.list_artifacts(parent, "plots")}
    assert {"plots/optimization_history.png", "plots/slice.png"} <= plots
    if summary.metrics["trials/complete"] >= 2:  # importances need two finished trials
        assert "plots/param_importances.png" in plots


@pytest.mark.slow
def test_two_workers_share_one_storage(tmp_path, tiny_data):
    import optuna

    cmd = [sys.executable, "-m", "asc", "tune", *TINY_OVERRIDES, *SPACE, "tune.n_trials=3", "tune.retrain=false",
           "tune.pruner.name=none", "trainer.max_epochs=1", "tune.study_name=shared", *tiny_data]
    workers = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=900)
        assert w.returncode == 0, err[-4000:]
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 3 <= len(finished) <= 4  # the requested count between them (one more may have been in flight)
    assert len({t.number for t in finished}) == len(finished)


@pytest.mark.parametrize(
    "override, message",
    [
        ("tune.space.window.high=2.0", "empty range"),
        ("~tune.space && +tune.space={model.nonsense: {type: float, low: 0.0, high: 1.0}}", "no setting 'model.nonsense'"),
        ("tune.storage=sqlite:////nonexistent-dir/x/optuna.db", "tune.storage: cannot open"),
        ("tune.space.mask={type: categorical}", "no choices"),
    ],
)
@pytest.mark.slow
def test_bad_search_setup_fails_before_any_trial(compose, override, message, tmp_path, monkeypatch):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from asc.runs.tune import TuneConfigError, tune

    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="tune", overrides=override.split(" && "))
    with pytest.raises(TuneConfigError, match=message):
        tune(cfg)
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started


@pytest.mark.slow
def test_a_resumed_study_whose_best_trial_changes_says_its_new_best(tmp_path):
    """MLflow refuses to change a logged param: the summary of a study that grew used to fail at the second call."""
    import optuna
    from optuna.distributions import FloatDistribution

    from asc.runs.tune import summarise
    from asc.tracking.store import TrackingStore

    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}", explicit=True)
    parent = store.create_run(store.experiment("study"), "study")
    study = optuna.create_study(direction="maximize")
    dist = {"model.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    for lr, value in ((1e-3, 0.5), (2e-3, 0.6)):
        study.add_trial(optuna.trial.create_trial(params={"model.lr": lr}, distributions=dist, value=value))
    summarise(store, study, parent)
    study.add_trial(optuna.trial.create_trial(params={"model.lr": 5e-3}, distributions=dist, value=0.8))  # the resume
    summarise(store, study, parent)
    data = store.get_run(parent).data
    assert float(data.tags["best.model.lr"]) == 5e-3 and data.tags["best_trial"] == "2"
    history = store.client.get_metric_history(parent, "best/objective")
    assert [(m.step, m.value) for m in history] == [(2, 0.6), (3, 0.8)]
