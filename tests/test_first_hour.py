"""A new user's first mistakes: one line, status 2, nothing written; data kept behind links; capped lists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from asc.data.dataset import Layout, scan_folder

from conftest import REPO
from reliability.data import recordings


def test_a_missing_data_folder_is_one_line_and_status_2_with_nothing_written(tmp_path):
    missing = tmp_path / "does not exist"
    out = subprocess.run([sys.executable, str(REPO / "train.py"), "data=folder", f"data.root={missing}",
                          f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stdout + out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines == [lines[-1]] and str(missing) in lines[-1] and "dataset folder not found" in lines[-1], lines
    assert not (tmp_path / "mlflow.db").exists()  # the data is checked before MLflow creates its database


def test_fold_folders_linked_to_another_disk_are_followed_and_hostile_names_still_refused(tmp_path):
    elsewhere = recordings(tmp_path / "other disk" / "fold1", 3, seconds=0.5)
    names = [f"clip{i:03d}.wav" for i in range(3)]
    root = tmp_path / "my set é"
    root.mkdir()
    (root / "fold1").symlink_to(elsewhere, target_is_directory=True)
    recordings(tmp_path / "secret", 1, seconds=0.5)
    secret = "clip000.wav"
    rows = [f"fold1/{n},a" for n in names] + [f"../secret/{secret},b", f"{tmp_path / 'secret' / secret},b"]
    (root / "labels.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    df, layout = scan_folder(root, copies=False)
    assert sorted(df["filename"]) == [f"fold1/{n}" for n in names]  # the linked folder's files are kept
    assert len(layout.malformed) == 2 and all("outside the dataset folder" in m for m in layout.malformed)


def test_a_user_folder_given_with_a_tilde_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    recordings(tmp_path / "data" / "set", 2, seconds=0.5)  # with its labels.csv
    df, layout = scan_folder("~/data/set", copies=False)
    assert len(df) == 2 and not layout.errors


def test_a_group_of_many_copies_is_one_short_line():
    names = [f"fold1/clip{i:04d}.wav" for i in range(1440)]
    layout = Layout(Path("set"), copies=[(names, ["a"])])
    (warning,) = layout.warnings[:1]
    assert max(len(line) for line in warning.splitlines()) < 300
    assert "... and 1435 more" in warning and names[0] in warning and names[-1] not in warning
