"""The feature cache at scale: `asc extract`, resume after a kill, two builders at once, stale temporaries."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asc.config import feature_spec
from asc.data.cache import FeatureCache

SET = ["--set", "sample_rate=8000", "n_bins=168", "hop_length=256"]  # the paper's CQT, scaled to 8 kHz


def folder(root: Path, n: int, seconds: float = 2.0) -> Path:
    root.mkdir()
    rows = ["filename,label"]
    for i in range(n):
        y = np.random.default_rng(i).standard_normal((int(8000 * seconds), 2)).astype(np.float32) * 0.1
        sf.write(root / f"clip{i:03d}.wav", y, 8000, subtype="PCM_24")
        rows.append(f"clip{i:03d}.wav,{'ab'[i % 2]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def extract(root: Path, cache: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "asc", "extract", str(root), "--kind", "folder", "--cache", str(cache),
           "--workers", "1", "--no-progress", *SET, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("cqt-*/*.npy"))


def spec(backend: str = "librosa"):
    return feature_spec("cqt", [*SET[1:], f"backend={backend}"])


#: ``extract`` arguments per backend: the torch backend in batches of 2, so that a kill lands between batches
BACKEND = {"librosa": (), "torch": ("backend=torch", "--batch-size", "2", "--device", "cpu")}


def test_feature_spec_matches_the_training_config():
    from hydra import compose, initialize_config_dir

    from asc.config import settings
    from asc.data.features import FeatureSpec

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["features=mel", "features.sample_rate=32000"])
    trained = settings(FeatureSpec, cfg.features, "features")
    assert feature_spec("mel", ["sample_rate=32000"]).key() == trained.key()  # same cache folder


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["librosa", "torch"])
def test_kill_then_rerun_computes_only_the_missing(tmp_path, backend):
    root, cache = folder(tmp_path / "rec", 60), tmp_path / "cache"
    proc = extract(root, cache, *BACKEND[backend])
    deadline = time.monotonic() + 120
    while len(entries(cache)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = entries(cache)
    assert 3 <= len(done) < 60, "the extraction should have been killed midway"
    stamps = {p: p.stat().st_mtime_ns for p in done}
    cache_dir = done[0].parent
    half = cache_dir / f".{done[0].name.replace('clip000', 'clip059')}.abc.tmp"  # a half-written entry
    half.write_bytes(b"\x93NUMPY half")
    old = cache_dir / ".clip058.deadbeef.npy.old.tmp"
    old.write_bytes(b"")
    os.utime(old, (time.time() - 7200, time.time() - 7200))

    files = sorted(root.glob("*.wav"))
    report = FeatureCache(cache, spec(backend)).build(files, [f.name for f in files], workers=1, progress=False)
    assert report.computed == 60 - len(done) and report.cached == len(done)
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # the finished entries were not redone
    images = FeatureCache(cache, spec(backend)).load(files, [f.name for f in files])
    assert images.shape == (60, 168, 2 * 8000 // 256 + 1)
    assert not old.exists()  # stale temporary removed; a fresh one (another job's, maybe) left alone
    assert half.exists() and len(entries(cache)) == 60


@pytest.mark.slow
def test_two_builders_make_one_cache_without_duplicate_work(tmp_path):
    root, cache = folder(tmp_path / "rec", 24), tmp_path / "cache"
    procs = [extract(root, cache), extract(root, cache)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    computed = [int(re.search(r"(\d+) computed, (\d+) already cached", out).group(1)) for out in outputs]
    assert sum(computed) == 24, outputs  # each clip computed once, by one of them
    files = sorted(root.glob("*.wav"))
    images = FeatureCache(cache, spec()).load(files, [f.name for f in files])
    assert images.shape[0] == 24 and len(entries(cache)) == 24
    assert not list(cache.glob("cqt-*/.*.tmp"))
    expected = FeatureCache(tmp_path / "alone", spec())
    expected.build(files[:2], [f.name for f in files[:2]], workers=1, progress=False)
    assert np.array_equal(expected.load(files[:2], [f.name for f in files[:2]]), images[:2])


@pytest.mark.slow
def test_worker_processes_give_the_entries_one_process_gives_and_report_a_damaged_file(tmp_path):
    """The extraction's worker processes (joblib), which the test suite otherwise leaves out: under pytest-xdist each
    run gets one core (conftest.py), and extraction on one core stays in the run's own process."""
    root = folder(tmp_path / "rec", 6, seconds=0.5)
    (root / "clip005.wav").write_bytes(b"RIFF, but no audio")
    files = sorted(root.glob("*.wav"))
    names = [f.name for f in files]
    two = FeatureCache(tmp_path / "two", spec()).build(files, names, workers=2, on_error="skip", progress=False)
    assert two.computed == 5 and [Path(f).name for f, _ in two.skipped] == ["clip005.wav"]
    one = FeatureCache(tmp_path / "one", spec())
    one.build(files[:5], names[:5], workers=1, progress=False)
    assert np.array_equal(FeatureCache(tmp_path / "two", spec()).load(files[:5], names[:5]), one.load(files[:5], names[:5]))


def test_extract_cli_reports_and_reruns_as_noop(tmp_path, capsys):
    from asc.cli.extract import main

    root = folder(tmp_path / "rec", 4, seconds=0.5)
    main([str(root), "--kind", "folder", "--cache", str(tmp_path / "c"), "--workers", "1", "--no-progress", *SET])
    out = capsys.readouterr().out
    assert "4 computed, 0 already cached, 0 skipped" in out and "clips/s per worker" in out
    main([str(root), "--kind", "folder", "--cache", str(tmp_path / "c"), "--workers", "1", "--no-progress", *SET])
    assert "0 computed, 4 already cached" in capsys.readouterr().out
