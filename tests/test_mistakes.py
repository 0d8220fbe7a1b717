"""A new user's first-hour mistakes, each through the real command line: one line naming the setting or file and what
to do, exit status 2, no traceback, and nothing left behind in the folder the command ran in (no MLflow database,
no mlruns/, outputs/, multirun/ or cache/). ``HYDRA_FULL_ERROR=1`` and a real bug still show their traceback.

Every case of the table fails before torch is loaded but the missing weights (which loads it to fetch them): about
1-3 s each. A mistake found once the run's modules are loaded, after Hydra made its run folder: the test after the
table. A sweep whose job finds its mistake only while it runs: ``test_sweep_mistakes.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from reliability.data import recordings

TRAIN = [sys.executable, str(REPO / "train.py")]
ASC = [sys.executable, "-m", "asc"]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound for a moment, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    """The datasets and files the cases point at, outside the folders the commands run in."""
    root = tmp_path_factory.mktemp("kit")
    recordings(root / "good", 10, seconds=0.5)  # two classes, five recordings each
    one = recordings(root / "one class", 4, seconds=0.5)
    (one / "labels.csv").write_text("filename,label\n" + "".join(f"clip{i:03d}.wav,a\n" for i in range(4)))
    nolabel = recordings(root / "no label", 4, seconds=0.5)
    (nolabel / "labels.csv").write_text("filename,scene\n" + "".join(f"clip{i:03d}.wav,{'ab'[i % 2]}\n" for i in range(4)))
    folds = recordings(root / "folds", 6, seconds=0.5)
    (folds / "labels.csv").write_text("filename,label,fold\n" + "".join(f"clip{i:03d}.wav,{'ab'[i % 2]},f{i % 3 + 1}\n"
                                                                         for i in range(6)))
    (root / "empty").mkdir()
    (root / "a file").write_text("not a folder\n")
    (root / "no audio").mkdir()
    (root / "no audio" / "notes.txt").write_text("no recordings here\n")
    (root / "notes.ckpt").write_text("not a checkpoint\n")
    with zipfile.ZipFile(root / "model.ckpt", "w") as z:  # passes the check made before torch loads
        z.writestr("archive/data.pkl", b"")
    return root


#: (case, command, fragments of its one line): ``{kit}`` is the fixture's folder, ``{port}`` a closed port.
CASES = [
    ("missing data root", [*TRAIN, "data=folder", "data.root={kit}/nowhere"],
     ["{kit}/nowhere: dataset folder not found", "point data.root at it"]),
    ("data root is a file", [*TRAIN, "data=folder", "data.root={kit}/a file"],
     ["{kit}/a file: not a folder", "data.root must name the dataset folder"]),
    ("relative data root", [*TRAIN, "data=folder", "data.root=my-recordings"],
     ["my-recordings (", "/my-recordings): dataset folder not found"]),
    ("empty data folder", [*TRAIN, "data=folder", "data.root={kit}/empty"],
     ["{kit}/empty/labels.csv: file not found", "columns filename,label"]),
    ("typo in a config group", [*TRAIN, "model=vgg61"],
     ["model=vgg61: no such option",
      "choose one of " + ", ".join(sorted(p.stem for p in (REPO / "conf/model").glob("*.yaml")))]),
    ("unknown experiment", [*TRAIN, "experiment=bst"], ["experiment=bst: no such option", "demo, demo_small_cnn"]),
    ("typo in a key", [*TRAIN, "trainer.max_epoch=3"],
     ["trainer.max_epoch: no such setting (did you mean trainer.max_epochs?)"]),
    ("wrong type", [*TRAIN, "window=abc"], ["window='abc': not a number", "e.g. window=5"]),
    ("seed not a number", [*TRAIN, "seed=x"], ["seed='x': not a whole number"]),
    ("negative epochs", [*TRAIN, "trainer.max_epochs=-2"], ["trainer.max_epochs=-2: must be at least 1"]),
    ("mask out of range", [*TRAIN, "mask=1.5"], ["mask=1.5: must be a fraction in [0, 1)"]),
    ("window longer than the clips", [*TRAIN, "data=folder", "data.root={kit}/good", "window=20"],
     ["window=20: longer than the clips (data.clip_seconds=10 s)", "a longer data.clip_seconds"]),
    ("no label column", [*TRAIN, "data=folder", "data.root={kit}/no label"],
     ["{kit}/no label/labels.csv: missing column(s) ['label']", "found ['filename', 'scene']"]),
    ("one class", [*TRAIN, "data=folder", "data.root={kit}/one class"],
     ["{kit}/one class/labels.csv: only the class 'a'", "at least two classes"]),
    ("unknown split", [*TRAIN, "data=folder", "data.root={kit}/good", "data.split=folds"],
     ["data.split='folds': not one of paper, grouped, fold1, given, fold"]),
    ("test fold that does not exist", [*TRAIN, "data=folder", "data.root={kit}/folds", "data.split=fold",
                                       "data.test_fold=f9"],
     ["data.test_fold='f9' is not one of the table's folds ['f1', 'f2', 'f3']"]),
    ("tracking URI with a typo", [*TRAIN, "logger.tracking_uri=sqlit:///x.db"],
     ["logger.tracking_uri=sqlit:///x.db: MLflow has no store of the kind 'sqlit' (did you mean sqlite?)"]),
    ("tracking server not running", [*TRAIN, "logger.tracking_uri=http://127.0.0.1:{port}"],
     ["no MLflow tracking server answers at http://127.0.0.1:{port}", "Start it (`asc server`"]),
    ("missing pretrained weights", [*TRAIN, "data=folder", "data.root={kit}/good"],
     ["could not load the ImageNet vgg16 weights", "/hub/checkpoints/vgg16-397923af.pth",
      "or train with model.pretrained=false"]),
    ("asc train, typo in a group", [*ASC, "train", "data=folders"], ["data=folders: no such option", "folder, synthetic"]),
    ("sweep whose jobs all miss the data", [*TRAIN, "-m", "data=folder", "data.root={kit}/nowhere", "seed=0,1"],
     ["{kit}/nowhere: dataset folder not found"]),
    ("sweep none of whose jobs can start", [*TRAIN, "-m", "data=folder", "data.root={kit}/good", "model=small_cnn",
                                            "window=20,30"],
     ["job window=30: window=30: longer than the clips"]),
    ("sweep with one bad group option", [*TRAIN, "-m", "data=folder", "data.root={kit}/good", "model=small_cnn,vgg61"],
     ["model=vgg61: no such option"]),
    ("tune, missing data root", [*ASC, "tune", "data=folder", "data.root={kit}/nowhere"],
     ["{kit}/nowhere: dataset folder not found"]),
    ("tune, typo in a key", [*ASC, "tune", "tune.n_trial=3"],
     ["tune.n_trial: no such setting (did you mean tune.n_trials?)"]),
    ("predict, folder without audio", [*ASC, "predict", "--model", "{kit}/model.ckpt", "{kit}/no audio"],
     ["{kit}/no audio: no audio files in this folder", ".wav"]),
    ("predict, a file that is not there", [*ASC, "predict", "--model", "{kit}/model.ckpt", "clip.wav"],
     ["clip.wav: no such file or folder"]),
    ("predict, missing model", [*ASC, "predict", "--model", "{kit}/best.ckpt", "{kit}/good"],
     ["--model {kit}/best.ckpt: no such file", "runs:/<run id>"]),
    ("predict, model not a checkpoint", [*ASC, "predict", "--model", "{kit}/notes.ckpt", "{kit}/good"],
     ["--model {kit}/notes.ckpt: not a checkpoint", "`asc export`"]),
    ("verify, missing folder", [*ASC, "verify", "{kit}/nowhere"], ["{kit}/nowhere: dataset folder not found"]),
]


def environment(tmp_path: Path) -> dict[str, str]:
    """The user's environment, but: this checkout's asc, no MLflow or sweep variables inherited, an empty torch hub
    cache and no way out to the internet (a weights download is refused at once)."""
    env = {k: v for k, v in os.environ.items()
           if k != "HYDRA_FULL_ERROR" and not k.startswith(("MLFLOW_", "ASC_SWEEP")) and k.lower() != "no_proxy"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["TORCH_HOME"] = str(tmp_path / "torch home")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = f"http://127.0.0.1:{closed_port()}"
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"  # the tracking-server case asks 127.0.0.1 itself
    return env


def run_case(command: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> tuple[Path, subprocess.CompletedProcess]:
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300,
                         env=env or environment(tmp_path))
    return work, out


@pytest.mark.slow
@pytest.mark.parametrize(("command", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_first_hour_mistake_is_one_line_and_status_2_with_nothing_written(kit, tmp_path, command, fragments):
    port = closed_port()
    fill = lambda text: text.format(kit=kit, port=port)  # noqa: E731
    name = "asc " + ("train" if command[1].endswith("train.py") else command[3])
    work, out = run_case([fill(c) for c in command], tmp_path)
    everything = out.stdout + out.stderr
    assert out.returncode == 2, everything[-3000:]
    assert "Traceback" not in everything
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 2, lines
    assert lines[-1].startswith(f"{name}: "), lines
    for fragment in map(fill, fragments):
        assert fragment in lines[-1], (fragment, lines[-1])
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == []  # no database, outputs/, cache/...


@pytest.mark.slow
def test_a_mistake_the_run_finds_removes_the_run_folder_hydra_made(kit, tmp_path):
    """A key no group has is known once the run's modules are loaded, after Hydra made outputs/<date>/<time>/ with
    .hydra/ and its log: the folder goes with the mistake (about 15 s: torch and Lightning load)."""
    work, out = run_case([*TRAIN, "data=folder", f"data.root={kit}/good", "model=small_cnn", "+features.nbins=3"],
                         tmp_path)
    assert out.returncode == 2, (out.stdout + out.stderr)[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines == ["asc train: features: unknown setting(s) ['nbins']; known: " + lines[0].split("known: ")[1]]
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == []


def test_hydra_full_error_shows_the_traceback(tmp_path):
    env = environment(tmp_path) | {"HYDRA_FULL_ERROR": "1"}
    _, out = run_case([*TRAIN, "window=abc"], tmp_path, env)
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "SettingError: window='abc': not a number" in out.stderr


def test_a_bug_shows_its_traceback(tmp_path):
    """An error that is not the user's (here: a check that breaks) keeps Python's traceback and status 1."""
    code = ("import sys, asc.checks, asc.cli.train\n"
            "def broken(cfg):\n    raise RuntimeError('a bug in the checks')\n"
            "asc.checks.check_settings = broken\n"
            "asc.cli.train.main(['window=5'])\n")
    _, out = run_case([sys.executable, "-c", code], tmp_path)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "RuntimeError: a bug in the checks" in out.stderr
