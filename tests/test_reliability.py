"""Faults injected, nothing lost (issue 15): what the reliability suite found, as regular tests, and a small sample of
each fault family of the suite itself (``make reliability`` runs it at full scale; tests/reliability/)."""

from __future__ import annotations

import errno
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asc.files import DamagedFile, DiskFull, atomic_save_checked, load_checked

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


# -- regular tests of the fixes ---------------------------------------------------------------------------------------
def test_checked_npy_refuses_any_flipped_bit_or_cut(tmp_path):
    """Every single-bit flip and every cut of a checked entry is refused (the CRC and the header's size)."""
    path = tmp_path / "e.npy"
    image = np.arange(168 * 9, dtype=np.uint8).reshape(168, 9)
    atomic_save_checked(path, image)
    good = path.read_bytes()
    assert np.array_equal(np.load(path), image)  # still an ordinary .npy file
    assert np.array_equal(load_checked(path), image)
    for i in range(0, len(good), 7):
        for bit in (0, 5):
            damaged = bytearray(good)
            damaged[i] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            with pytest.raises(DamagedFile, match=str(path)):
                load_checked(path)
    for cut in (0, 10, 128, len(good) - 21, len(good) - 1):
        path.write_bytes(good[:cut])
        with pytest.raises(DamagedFile):
            load_checked(path)


def test_entry_without_checksum_is_checked_for_its_size(tmp_path):
    path = tmp_path / "old.npy"
    np.save(path, np.ones((4, 5), np.uint8))
    assert load_checked(path).shape == (4, 5)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DamagedFile, match="bytes where its header declares"):
        load_checked(path)


def test_damaged_feature_entry_is_computed_again(tiny_tau, tmp_path):
    """A flipped entry is found on reading, computed again from its recording (the same bytes) and counted."""
    from asc.data.cache import FeatureCache
    from asc.data.dataset import read_tau
    from asc.data.features import FeatureSpec

    spec = FeatureSpec(sample_rate=8000, n_bins=168, hop_length=256)
    df = read_tau(tiny_tau)[:3]
    files = [tiny_tau / f for f in df["filename"]]
    cache = FeatureCache(tmp_path, spec)
    cache.build(files, list(df["filename"]), workers=1, progress=False)
    entry = cache.entry(files[1], df["filename"].iloc[1])
    good = entry.read_bytes()
    entry.write_bytes(good[:200] + bytes([good[200] ^ 1]) + good[201:])
    images = list(cache.each(files, list(df["filename"])))
    assert cache.repaired == 1
    assert entry.read_bytes() == good
    assert np.array_equal(images[1], load_checked(entry))


@pytest.mark.parametrize("backend", ["librosa", "torch"])
def test_full_disk_in_a_cache_worker_is_a_clear_error_and_leaves_nothing(tiny_tau, tmp_path, monkeypatch, backend):
    """ENOSPC while an entry is written (by a worker process, or by a writer thread of the batched torch backend):
    DiskFull naming the cache folder and the entries still to write, no entry or temporary file left."""
    import asc.files
    from asc.data.cache import FeatureCache
    from asc.data.dataset import read_tau
    from asc.data.features import FeatureSpec

    real = asc.files.os.replace

    def full(src, dst):
        if str(dst).endswith(".npy"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(asc.files.os, "replace", full)
    spec = FeatureSpec(sample_rate=8000, n_bins=168, hop_length=256, backend=backend)
    df = read_tau(tiny_tau)[:2]
    cache = FeatureCache(tmp_path, spec)
    with pytest.raises(DiskFull, match=rf"{cache.dir}: no space left for 2 more feature cache entries .* more needed"):
        cache.build([tiny_tau / f for f in df["filename"]], list(df["filename"]), workers=1, progress=False)
    assert not list(cache.dir.rglob("*.npy")) and not list(cache.dir.rglob("*.tmp"))


def test_tracking_server_down_at_start_is_said_within_seconds():
    from asc.tracking.health import TrackingError, check_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TrackingError, match=rf"no MLflow tracking server answers at http://127.0.0.1:{port}"):
        check_server(f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 10
    check_server("sqlite:///nowhere.db")  # local stores pass at once


@pytest.mark.slow
def test_silent_tracking_server_is_said_within_ten_seconds():
    from asc.tracking.health import TrackingError, check_server
    from reliability.server import black_hole

    with black_hole() as port:
        start = time.monotonic()
        with pytest.raises(TrackingError, match="timed out"):
            check_server(f"http://127.0.0.1:{port}")
        assert time.monotonic() - start < 10


@pytest.mark.slow
def test_metrics_journalled_while_the_server_was_away_are_sent_on_resume(tmp_path):
    """TrackingStore.replay sends what JournalledLogger kept (a line cut short by a kill is skipped) and deletes it."""
    from mlflow import MlflowClient

    from asc.tracking.store import JOURNAL, TrackingStore

    store = TrackingStore(f"sqlite:///{tmp_path / 'm.db'}")
    exp = store.experiment("e", str(tmp_path / "art"))
    run_id = MlflowClient(store.uri).create_run(exp).info.run_id
    journal = tmp_path / JOURNAL
    journal.write_text('{"ms": 1000, "step": 3, "metrics": {"val/acc": 0.5, "val/loss": 1.25}}\n{"ms": 10')
    assert store.replay(run_id, journal) == 2
    assert not journal.exists()
    hist = MlflowClient(store.uri).get_metric_history(run_id, "val/loss")
    assert [(m.step, m.value) for m in hist] == [(3, 1.25)]


def test_long_sweep_folder_names_are_shortened_and_distinct():
    from asc.config import DIRNAME_LIMIT, job_dirname

    short = "mask=0.1,seed=2,window=5"
    assert job_dirname(short) == short
    a = job_dirname(",".join(f"model.option_{i}=value_{i}" for i in range(40)))
    b = job_dirname(",".join(f"model.option_{i}=value_{i}" for i in range(41)))
    assert len(a.encode()) <= DIRNAME_LIMIT and a.startswith("model.option_0=value_0") and a != b


# -- the suite, a few faults of each family ---------------------------------------------------------------------------
def _check(outcomes, at_least: int = 1):
    from reliability.harness import failures

    assert len(outcomes) >= at_least
    bad = failures(outcomes)
    assert not bad, "\n".join(f"{o.case}: {o.note}" for o in bad)


@pytest.fixture
def seed():
    from reliability.harness import Budget, seeded

    return lambda key: (seeded(0, key), Budget(300))


@pytest.mark.slow
def test_suite_kill_extract_and_download(tmp_path, seed, monkeypatch):
    from reliability import kills

    monkeypatch.setattr(kills, "EXTRACT_CLIPS", 16)
    _check(kills.extract(tmp_path / "x", 2, *seed("kill:extract"), per_case=2), 2)
    _check(kills.download(tmp_path / "d", 2, *seed("kill:download"), per_case=2), 2)


@pytest.mark.slow
def test_suite_kill_train(tmp_path, seed):
    from reliability import kills

    _check(kills.train(tmp_path, 1, *seed("kill:train")))


@pytest.mark.slow
def test_suite_disk_full(tmp_path):
    from reliability import disk
    from reliability.stages import STAGES

    if disk.namespace()[0] is None:
        pytest.skip(f"no tmpfs here: {disk.namespace()[1]} (the ENOSPC paths are tested above without one)")
    (stage,) = [s for s in STAGES if s.key == "disk full:cache"]
    _check(stage.run(tmp_path, 2, seed=0, seconds=120), 2)


@pytest.mark.slow
def test_suite_server_gone_at_start(tmp_path, seed):
    from reliability import server

    _check(server.at_start(tmp_path, 2, *seed("server gone:at start")), 2)


@pytest.mark.slow
def test_suite_damaged_audio(tmp_path, seed):
    """16 mutants through verify, extract and predict (damaged cache entries: the regular test above)."""
    from reliability import damage

    _check(damage.audio(tmp_path, 16, *seed("damaged bytes:audio")), 16)


@pytest.mark.slow
def test_suite_concurrent_extractions(tmp_path, seed):
    from reliability import concurrency

    _check(concurrency.extract(tmp_path, 1, *seed("concurrency:extract")))


@pytest.mark.slow
def test_suite_untrusted_files(tmp_path, seed):
    from reliability import untrusted

    _check(untrusted.run_all(tmp_path, 1, *seed("untrusted:files")), 11)


def test_table_counts_what_was_not_survived():
    from reliability.harness import Outcome, table

    text = table([Outcome("kill", "train", "a", survived=True, identical=True),
                  Outcome("kill", "train", "b", survived=False, identical=False, redone=2, lost=1, tracebacks=1)])
    assert "| kill | train | 2 | 1 | 1/2 | 2 | 1 | 1 | 0 |" in text


def _study_params(kill_at: int | None, n: int = 5):
    """Completed trials' parameters of a seeded study of ``n`` trials, one process per trial as after restarts; with
    ``kill_at`` the trial of that index is abandoned RUNNING first (a kill) and failed by the next process."""
    import optuna
    from omegaconf import OmegaConf

    from asc.runs.tune import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    spec = OmegaConf.create({"name": "tpe", "seed": 3})
    done = 0
    while done < n:
        study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True, sampler=make_sampler(spec))
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        if done == kill_at:
            kill_at = None  # killed once: left RUNNING
            continue
        study.tell(trial, x * x)
        done += 1
    return [t.params for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]


def test_resumed_study_draws_what_an_uninterrupted_one_draws():
    """A sampler seeded once per process drew trial 0's parameters again after each restart (the suite's kill:tune)."""
    straight = _study_params(None)
    assert len({p["x"] for p in straight}) == 5  # not the same draw each time
    assert _study_params(kill_at=2) == straight


@pytest.mark.slow
def test_trials_of_a_dead_process_are_failed_at_once(tmp_path):
    import subprocess

    import optuna

    from asc.runs.tune import PROCESS_ATTR, fail_dead_trials, process_gone, this_process
    from asc.tracking.store import TrackingStore

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket as _s

    assert process_gone(f"{_s.gethostname()}:{dead.pid}:1") and not process_gone(this_process())
    assert not process_gone(f"another-host:{dead.pid}:1")  # left to Optuna's heartbeat
    store = TrackingStore(f"sqlite:///{tmp_path / 'm.db'}")
    exp = store.experiment("e", str(tmp_path / "art"))
    parent = store.create_run(exp, "study=s", {})
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    alive, gone = study.ask(), study.ask()
    alive.set_user_attr(PROCESS_ATTR, this_process())
    gone.set_user_attr(PROCESS_ATTR, f"{_s.gethostname()}:{dead.pid}:1")
    mlflow_trial = store.create_run(exp, "trial=1", {"optuna.trial": gone.number}, parent=parent)
    assert fail_dead_trials(study, store, exp, parent) == [gone.number]
    assert [t.state.name for t in study.trials] == ["RUNNING", "FAIL"]
    assert store.get_run(mlflow_trial).info.status == "KILLED"


def test_server_gone_while_a_run_records_is_a_clear_error(monkeypatch):
    """An MLflow call failing because the server went away (here: logging the model) says what is kept and to rerun,
    instead of MLflow's traceback."""
    from mlflow.exceptions import MlflowException

    from asc.tracking.health import TrackingError
    from asc.tracking.store import TrackingStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the tests' own store would win (resolve_uri)
    store = TrackingStore(f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingError, match=r"stopped answering during run r1 .*the checkpoints are in /x.*rerun the same"):
        with store.failure_marked("r1", "the checkpoints are in /x"):
            raise MlflowException("API request to /api/2.0/mlflow/runs/get failed")
    with pytest.raises(KeyboardInterrupt):  # not a server problem: as before
        with store.failure_marked("r1"):
            raise KeyboardInterrupt


def test_full_disk_before_the_first_entry_says_the_space_needed(tmp_path, monkeypatch):
    """The cache's spec.json on a full disk: the error names the folder and the space needed (it said only what was
    free; the suite's disk-full stage found it)."""
    import asc.data.cache
    from asc.data.cache import FeatureCache
    from asc.data.features import FeatureSpec

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(asc.data.cache, "atomic_write_text", full)
    with pytest.raises(DiskFull, match=rf"{tmp_path}/cqt-\w+: no space left .*more needed, .* free\)\. Free space"):
        FeatureCache(tmp_path, FeatureSpec())


def test_absurd_sample_rate_in_a_header_is_refused_quickly(tmp_path):
    """A WAV whose header says 1 Hz: an error naming it at once, not hours of audio to resample and transform."""
    import soundfile as sf

    from asc.data.audio import AudioError, load_mono

    path = tmp_path / "rate.wav"
    sf.write(path, np.zeros(12000, np.float32), 8000, subtype="PCM_24")
    data = bytearray(path.read_bytes())
    data[24:28] = (1).to_bytes(4, "little")  # the fmt chunk's sample rate
    path.write_bytes(bytes(data))
    start = time.monotonic()
    with pytest.raises(AudioError, match=rf"{path}: its header says 1 Hz"):
        load_mono(path, sr=8000)
    assert time.monotonic() - start < 5


def test_train_and_tune_commands_check_the_server_before_loading_torch():
    """`asc train` says in seconds that no server answers: its module loads neither torch nor MLflow (asc.config
    importing the feature code at its top made the silent-server case take 12 s under load; the suite found it)."""
    import subprocess

    code = "import sys, asc.cli.train, asc.cli.tune; print(sorted({'torch', 'mlflow', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
