"""Reading and checking dataset folders: TAU layout problems, `asc verify`, folder datasets."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from asc.cli.verify import main
from asc.data.dataset import DatasetError, read_folder, read_tau, safe_path, scan_tau
from asc.data.scenes import DEV_DIRNAME


@pytest.fixture
def small_tau(tmp_path):
    """10 clips (one per scene) of 0.5 s at 8 kHz in TAU's layout."""
    from asc.data.synth import SynthConfig, generate

    cfg = SynthConfig(cities=("lyon",), locations_per_city=1, segments_per_location=1, duration=0.5, sample_rate=8000)
    return generate(tmp_path / DEV_DIRNAME, cfg, workers=1, progress=False)


def test_verify_summary_on_tiny_set(tiny_tau, capsys):
    main([str(tiny_tau), "--no-progress"])  # no SystemExit: no errors
    out = capsys.readouterr().out
    assert "120 clips listed, 120 present" in out
    assert "clips per scene: airport 12, bus 12," in out and "tram 12" in out
    assert "clips per city: lyon 60, milan 60" in out
    assert "official fold 1: evaluate 40, train 80" in out
    assert "durations: 4.000 .. 4.000 s" in out and "sample rates (Hz): 48000 120" in out
    assert "channels: 2 120" in out and "formats: PCM_24 120" in out
    assert "split paper (seed 42): train 60, val 40, test 20; leakage 0.650" in out
    assert "split grouped (seed 42): train 40, val 40, test 40; leakage 0.000" in out
    assert "split fold1 (seed 42): train 60, val 20, test 40; leakage 0.000" in out
    assert "not at 48000 Hz" not in out  # the tiny set has TAU's format, only shorter clips
    assert "0 error(s), 1 warning(s)" in out


def test_layout_problems_are_all_reported(small_tau, capsys):
    root = small_tau
    wavs = sorted((root / "audio").glob("*.wav"))
    wavs[0].unlink()  # missing
    shutil.copy(wavs[1], root / "audio" / "extra-lyon-9-9-a.wav")  # extra
    meta = root / "meta.csv"
    lines = meta.read_text().splitlines()
    lines += [
        "audio/x.wav\tballroom\tlyon-1\ta",  # unknown label
        "audio/y.wav\tbus",  # too few fields
        "../outside.wav\tbus\tlyon-1\ta",  # outside the folder
        lines[2],  # listed twice
        "audio/z.wav\tbus\tnocity\ta",  # bad identifier
    ]
    meta.write_text("\n".join(lines) + "\n")
    _, layout = scan_tau(root)
    assert layout.missing == [wavs[0].relative_to(root).as_posix()]
    assert layout.extra == ["audio/extra-lyon-9-9-a.wav"]
    assert layout.unknown_labels == {"ballroom": 1}
    assert len(layout.malformed) == 4
    text = "\n".join(layout.malformed)
    assert "line 13: 2 field(s), the header has 4" in text and "outside the dataset folder" in text
    assert "listed twice (first on line 3)" in text and "'nocity' is not '<city>-<location>'" in text

    with pytest.raises(DatasetError) as err:
        read_tau(root)
    for part in ("4 malformed row(s)", "unknown scene label(s): 'ballroom' (1 rows)", "1 audio file(s) listed"):
        assert part in str(err.value)
    with pytest.raises(SystemExit) as exit_info:
        main([str(root), "--no-progress"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "ERROR 1 audio file(s) listed in the metadata are missing" in out and wavs[0].name in out
    assert "WARNING 1 extra audio file(s)" in out


def test_extra_files_only_warn(small_tau, caplog):
    shutil.copy(next((small_tau / "audio").glob("*.wav")), small_tau / "audio" / "stray.wav")
    with caplog.at_level(logging.WARNING, logger="asc.data.dataset"):
        df = read_tau(small_tau)
    assert len(df) == 10
    assert "1 extra audio file(s) not listed in the metadata (ignored)" in caplog.text and "stray.wav" in caplog.text


def test_unreadable_header_is_an_error(small_tau, capsys):
    (small_tau / "audio").joinpath(sorted(p.name for p in (small_tau / "audio").iterdir())[0]).write_bytes(b"")
    with pytest.raises(SystemExit):
        main([str(small_tau), "--no-progress"])
    assert "1 unreadable audio file(s)" in capsys.readouterr().out


def test_fold1_inconsistency(small_tau):
    setup = small_tau / "evaluation_setup"
    with open(setup / "fold1_train.csv", "a") as f:
        f.write("audio/not-listed.wav\tbus\n")
    with pytest.raises(DatasetError, match="fold1_train.csv: 1 file.s. not in meta.csv"):
        read_tau(small_tau)


def test_safe_path_refuses_escapes(tmp_path):
    for name in ("../x.wav", "/etc/passwd", "a/../../x.wav", "C:/x.wav", ""):
        with pytest.raises(DatasetError):
            safe_path(tmp_path, name)
    # the rule is lexical: a link the user made under the folder (data on another disk) is followed
    (tmp_path / "link").symlink_to(tmp_path.parent)
    assert safe_path(tmp_path, "link/x.wav") == tmp_path / "link" / "x.wav"
    assert safe_path(tmp_path, "a\\b.wav") == tmp_path / "a" / "b.wav"


def test_read_folder_columns(tmp_path):
    for i in range(4):
        sf.write(tmp_path / f"{i}.wav", np.full(800, i / 10, "float32"), 8000)  # distinct: copies would share a group
    (tmp_path / "labels.csv").write_text(
        "filename,label,group,split,fold\n0.wav,dog,g1,train,1\n1.wav,cat,g1,Validation,2\n2.wav,dog,g2,test,1\n3.wav,cat,,,\n"
    )
    df = read_folder(tmp_path)
    assert df["location"].tolist() == ["g1", "g1", "g2", "3.wav"]  # no group: the file is its own group
    assert df["given"].tolist() == ["train", "val", "test", None]
    assert df["fold"].tolist() == ["1", "2", "1", None] and set(df["city"]) == {"all"}
    (tmp_path / "labels.csv").write_text("filename,label,split\n0.wav,dog,holdout\n")
    with pytest.raises(DatasetError, match="split 'holdout' is not one of"):
        read_folder(tmp_path)
