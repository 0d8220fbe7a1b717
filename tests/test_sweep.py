"""The sweep's pieces without training: identity hashes, aggregation math, the published data, configs."""

from __future__ import annotations

import math
import os
import stat

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from asc.runs import published
from asc.runs.report import aggregate, best_cell, best_cell_section, grid_tables, job_status, latest_finished, with_published
from asc.runs.identity import NOT_SCIENCE, config_hash
from asc.runs.sweep import expected_jobs, sweep_identity, sweep_overrides
from conftest import REPO


def runs_table(rows: list[tuple]) -> pd.DataFrame:
    cols = ["run_id", "status", "start_time", "window", "mask", "seed", "val_acc", "test_acc"]
    df = pd.DataFrame(rows, columns=cols)
    df["config_hash"] = [f"w{w:g}m{m:g}s{s}" for w, m, s in zip(df["window"], df["mask"], df["seed"], strict=True)]
    df["settings_hash"] = [f"w{w:g}m{m:g}" for w, m in zip(df["window"], df["mask"], strict=True)]
    df["run_name"] = df["run_id"]
    return df


# -- aggregation ----------------------------------------------------------------------------------------------
def test_aggregate_matches_hand_computed_mean_and_sample_std():
    runs = runs_table([
        ("a0", "FINISHED", 1, 3, 0.0, 0, 0.60, 0.50),
        ("a1", "FINISHED", 2, 3, 0.0, 1, 0.62, 0.55),
        ("a2", "FINISHED", 3, 3, 0.0, 2, 0.58, 0.60),
        ("b0", "FINISHED", 4, 5, 0.1, 0, 0.70, 0.64),  # seed 1 of this cell is missing
        ("b2", "FINISHED", 5, 5, 0.1, 2, 0.80, 0.66),
        ("c1", "FINISHED", 6, 7, 0.2, 1, 0.55, 0.52),  # n = 1
    ])
    cells = aggregate(runs).set_index(["window", "mask"])
    a, b, c = cells.loc[(3, 0.0)], cells.loc[(5, 0.1)], cells.loc[(7, 0.2)]
    assert (a["n"], b["n"], c["n"]) == (3, 2, 1)
    assert b["seeds"] == "0 2"
    # a: val 0.60, 0.62, 0.58 -> mean 0.60, deviations 0, .02, -.02 -> var (0 + 4e-4 + 4e-4) / 2 = 4e-4
    assert a["val_acc_mean"] == pytest.approx(0.60) and a["val_acc_std"] == pytest.approx(0.02)
    # a: test 0.50, 0.55, 0.60 -> mean 0.55, var (25e-4 + 0 + 25e-4) / 2 = 25e-4
    assert a["test_acc_mean"] == pytest.approx(0.55) and a["test_acc_std"] == pytest.approx(0.05)
    # b: two seeds 0.70, 0.80 -> mean 0.75, var (2.5e-3 + 2.5e-3) / 1 = 5e-3
    assert b["val_acc_mean"] == pytest.approx(0.75) and b["val_acc_std"] == pytest.approx(math.sqrt(5e-3))
    assert b["test_acc_mean"] == pytest.approx(0.65) and b["test_acc_std"] == pytest.approx(math.sqrt(2e-4))
    # c: one run -> its value, and no sample std
    assert c["val_acc_mean"] == pytest.approx(0.55) and math.isnan(c["val_acc_std"]) and math.isnan(c["test_acc_std"])
    assert list(aggregate(runs)["window"]) == [3, 5, 7]


def test_resumed_and_failed_jobs_count_once():
    runs = runs_table([
        ("old", "FINISHED", 1, 5, 0.0, 0, 0.10, 0.10),   # an earlier run of the same config (resume=false)
        ("new", "FINISHED", 9, 5, 0.0, 0, 0.70, 0.69),
        ("crash", "FAILED", 2, 5, 0.0, 1, np.nan, np.nan),
        ("retry", "FINISHED", 8, 5, 0.0, 1, 0.72, 0.71),
        ("dead", "KILLED", 3, 5, 0.0, 2, np.nan, np.nan),
    ])
    done = latest_finished(runs)
    assert sorted(done["run_id"]) == ["new", "retry"]
    status = job_status(runs).set_index("seed")["status"].to_dict()
    assert status == {0: "FINISHED", 1: "FINISHED", 2: "KILLED"}
    cell = aggregate(done).iloc[0]
    assert cell["n"] == 2 and cell["val_acc_mean"] == pytest.approx(0.71)


def test_published_comparison_and_best_cell():
    runs = runs_table([
        ("x", "FINISHED", 1, 5, 0.1, 0, 72.0, 70.0), ("y", "FINISHED", 2, 5, 0.1, 1, 73.0, 71.0),
        ("z", "FINISHED", 3, 3, 0.0, 0, 61.0, 60.0),
    ])
    cells = with_published(aggregate(runs)).set_index(["window", "mask"])
    assert cells.loc[(5, 0.1), "published_val_acc_mean"] == 70.8
    assert cells.loc[(5, 0.1), "val_acc_diff"] == pytest.approx(72.5 - 70.8)
    assert cells.loc[(3, 0.0), "val_acc_diff"] == pytest.approx(61.0 - 60.2)
    table = grid_tables(cells.reset_index())
    assert "**72.5 ± 0.7 (n=2)** · paper 70.8 ± 0.0 · Δ +1.7" in table
    assert "not run · paper 64.6 ± 0.7" in table  # the paper's cells this sweep did not run are shown
    best = best_cell(cells.reset_index())
    assert (best["window"], best["mask"]) == (5, 0.1)


def test_best_cell_confusion_is_compared_in_the_papers_class_order():
    classes = list(reversed(published.CLASSES))
    cm = np.diag(np.arange(1.0, 11.0)) + 1  # row i: i + 2 correct of i + 11
    best = pd.Series({"window": 5.0, "mask": 0.0, "n": 3, "val_acc_mean": 71.0, "val_acc_std": 1.0,
                      "test_acc_mean": 80.0, "test_acc_std": 0.5, "settings_hash": "h"})
    text, table = best_cell_section(best, cm, classes)
    assert "**69.7 %** (2019 of 2898 test clips)" in text
    row = table.set_index("class")
    assert row.loc["tram", "this_sweep_pct"] == pytest.approx(round(100 * 2 / 11, 1))  # row 0 of the reversed order
    assert row.loc["airport", "this_sweep_pct"] == pytest.approx(round(100 * 11 / 20, 1))
    assert row.loc["airport", "published_pct"] == pytest.approx(round(100 * 217 / 290, 1))
    assert row.loc["(overall)", "diff_pct"] == pytest.approx(80.0 - 69.7)


def test_published_numbers_are_consistent_with_the_source():
    cm = published.CONFUSION
    assert cm.shape == (10, 10) and int(np.trace(cm)) == published.TEST_CORRECT == 2019
    assert int(cm.sum()) == published.TEST_CLIPS == 2898
    assert round(100 * published.TEST_CORRECT / published.TEST_CLIPS, 1) == published.TEST_ACC
    assert len(published.VAL_ACC) == 9 and published.val_acc(5, 0) == (71.2, 0.8) and published.val_acc(4, 0) is None
    best = max(published.VAL_ACC, key=lambda k: published.VAL_ACC[k][0])
    assert best == published.BEST_CELL


# -- identity -------------------------------------------------------------------------------------------------
def base_cfg(**changes) -> dict:
    cfg = {
        "window": 5.0, "mask": 0.1, "seed": 0, "progress": True, "resume": True, "sweep_id": None,
        "paths": {"data": "/a", "cache": "/b"},
        "data": {"root": "/a/tau", "cache_dir": "/b", "num_workers": 0, "split": "paper", "batch_size": 32},
        "model": {"lr": 1e-3, "channels_last": False},
        "trainer": {"max_epochs": 200, "accelerator": "auto", "devices": 1, "precision": "32-true"},
        "logger": {"experiment": "asc", "tracking_uri": "sqlite:///mlflow.db"},
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def test_config_hash_ignores_paths_workers_logging_and_number_spelling():
    h = config_hash(base_cfg())
    for change in (
        {"paths__data": "/elsewhere"}, {"data__root": "/x"}, {"data__num_workers": 8}, {"progress": False},
        {"logger__tracking_uri": "http://127.0.0.1:5000"}, {"trainer__accelerator": "gpu"}, {"resume": False},
        {"model__channels_last": True}, {"window": 5},
    ):
        assert config_hash(base_cfg(**change)) == h, change
    for change in ({"window": 3.0}, {"seed": 1}, {"data__split": "fold1"}, {"model__lr": 1e-4}, {"trainer__precision": "bf16-mixed"}):
        assert config_hash(base_cfg(**change)) != h, change
    assert config_hash(base_cfg(seed=2), drop=("seed",)) == config_hash(base_cfg(), drop=("seed",))


@pytest.mark.slow
def test_one_non_science_list_serves_folder_names_and_identity():
    """Each key of the one list (in conf/config.yaml) exists, and overriding it changes neither the run's identity
    hash nor Hydra's sweep folder name; a scientific key changes both."""
    assert NOT_SCIENCE == tuple(OmegaConf.load(REPO / "conf" / "config.yaml").hydra.job.config.override_dirname.exclude_keys)
    base = compose([])
    for key in NOT_SCIENCE:
        value = OmegaConf.select(base, key, default="__missing__")
        assert value != "__missing__", f"{key}: not a setting of the composed config (a typo in exclude_keys?)"
        if OmegaConf.is_config(value):
            continue  # a group: its leaves are listed too
        new = (not value) if isinstance(value, bool) else (value + 1) if isinstance(value, (int, float)) else "elsewhere"
        cfg = compose([f"{key}={new}"])
        assert config_hash(cfg) == config_hash(base), key
        assert cfg.hydra.job.override_dirname == "", key
    science = compose(["model.lr=0.01"])
    assert config_hash(science) != config_hash(base) and science.hydra.job.override_dirname == "model.lr=0.01"


# -- configs --------------------------------------------------------------------------------------------------
def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides, return_hydra_config=True)


def test_the_grid_command_and_paper_grid_make_27_jobs():
    assert expected_jobs(["window=3,5,7", "mask=0,0.1,0.2", "seed=0,1,2"]) == 27
    cfg = compose(["experiment=paper_grid"])
    overrides = sweep_overrides(cfg)
    assert overrides[:3] == ["window=3,5,7", "mask=0,0.1,0.2", "seed=0,1,2"]
    assert expected_jobs(overrides) == 27
    assert expected_jobs([*overrides, "seed=0"]) == 9  # the command line narrows the experiment's grid
    # the paper's setup (shared/reference/paper.md)
    m, d, f, t = cfg.model, cfg.data, cfg.features, cfg.trainer
    assert (m.backbone, m.pretrained, m.freeze, list(m.hidden), m.image_size, m.lr, m.eval_windows) == (
        "vgg16", True, True, [512], 224, 1e-3, "centre")
    assert (d.kind, d.split, d.split_seed, list(d.fractions), d.batch_size) == ("tau", "paper", 42, [0.6, 0.2, 0.2], 32)
    assert (f.kind, f.sample_rate, f.emphasis_alpha, f.hop_length, f.fmin, f.n_bins, f.bins_per_octave, f.magnitude) == (
        "cqt", 48000, 1484.536082474227, 1024, 10.0, 256, 24, True)
    assert (f.pad_mode, f.res_type, f.bandwidth, m.crop, m.band) == (
        "reflect", "kaiser_fast_resampy0.2", "librosa0.7", "reference", "reference")  # librosa 0.7, PIL, as in 2019
    assert (t.patience, t.precision) == (10, "32-true") and t.max_epochs >= 100
    assert cfg.hydra.callbacks.sweep._target_ == "asc.runs.sweep.SweepCallback"


def test_sweep_identity_ignores_launcher_and_paths():
    a = compose(["experiment=paper_grid"])
    b = compose(["experiment=paper_grid", "paths.data=/elsewhere", "data.num_workers=4", "hydra/launcher=joblib"])
    c = compose(["experiment=paper_grid", "model.lr=0.01"])
    assert sweep_identity(a) == sweep_identity(b) != sweep_identity(c)
    assert sweep_identity(compose(["experiment=paper_grid", "sweep_id=mine"])) == "mine"


def test_joblib_launcher_composes():
    cfg = compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


def test_gpus_launcher_runs_one_joblib_worker_per_gpu():
    from asc.runs.placement import PlacementError
    from asc.runs.sweep import check_gpu_slots

    cfg = compose(["hydra/launcher=gpus", "sweep_gpus=3"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 3
    check_gpu_slots(cfg)
    assert sweep_identity(cfg) == sweep_identity(compose([]))  # where jobs run is not part of the sweep's identity
    for overrides, message in (
        (["hydra/launcher=gpus"], "needs sweep_gpus=N"),
        (["hydra/launcher=gpus", "sweep_gpus=2", "hydra.launcher.n_jobs=3"], "at most one job per GPU"),
        (["hydra/launcher=slurm", "sweep_gpus=2"], "under SLURM each job gets its GPU from the scheduler"),
    ):
        with pytest.raises(PlacementError, match=message):
            check_gpu_slots(compose(overrides))


def test_gpu_slots_map_to_the_gpus_the_sweep_was_given(monkeypatch):
    from asc.runs.placement import ENV_NODE_GPUS, PlacementError, node_gpus

    monkeypatch.delenv(ENV_NODE_GPUS, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert node_gpus(4) == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 6,7")
    assert node_gpus(2) == ["4", "6"]
    with pytest.raises(PlacementError, match="names only 3 GPU"):
        node_gpus(4)


def test_slurm_launcher_composes_into_a_valid_submitit_job(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = compose(["experiment=paper_grid", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher.pop("_target_") == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["gpus_per_node"] == 1 and launcher["partition"] == "gpu" and launcher["array_parallelism"] == 27
    # Build the executor the way the launcher does (submitit wants `srun` on PATH: give it a dummy).
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    launcher.pop("submitit_folder")
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "jobs", slurm_max_num_timeout=launcher.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    launcher["name"] = "train"
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in launcher.items()})  # unknown keys raise
    script = executor._executor._make_submission_file_text("python train.py", "uid")
    assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --partition=gpu" in script and "#SBATCH --time=240" in script


def test_report_names_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    from asc.cli.report import main

    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'sweep.json'}: no such file" in err and "--parent-run" in err
