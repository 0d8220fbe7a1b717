"""`asc download` against a local HTTP server on 127.0.0.1 serving small archives of a synthetic TAU set."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from asc.data.dataset import read_tau
from asc.cli.download import main
from asc.data.download import DEV_DIRNAME, RECORD, DownloadError, download, parse_record
from zenodo import Zenodo
from zenodo import zip_bytes as _zip


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    """Zenodo's 2019 archives in miniature: two audio archives, meta and doc, all under DEV_DIRNAME/."""
    from asc.data.synth import SynthConfig, generate

    root = generate(tmp_path_factory.mktemp("src") / DEV_DIRNAME,
                    SynthConfig(cities=("lyon",), locations_per_city=1, segments_per_location=1, duration=0.5,
                                sample_rate=8000), workers=1, progress=False)
    rel = lambda p: f"{DEV_DIRNAME}/{p.relative_to(root).as_posix()}"  # noqa: E731
    wavs = sorted((root / "audio").glob("*.wav"))
    meta = [root / "meta.csv", *sorted((root / "evaluation_setup").glob("*.csv"))]
    return {
        f"{DEV_DIRNAME}.audio.1.zip": _zip({rel(p): p.read_bytes() for p in wavs[:5]}),
        f"{DEV_DIRNAME}.audio.2.zip": _zip({rel(p): p.read_bytes() for p in wavs[5:]}),
        f"{DEV_DIRNAME}.meta.zip": _zip({rel(p): p.read_bytes() for p in meta}),
        f"{DEV_DIRNAME}.doc.zip": _zip({f"{DEV_DIRNAME}/README.md": b"synthetic\n"}),
    }


@pytest.fixture
def zenodo(archives):
    server = Zenodo(archives)
    yield server
    server.close()


def _get(zenodo: Zenodo, dest: Path, **kw) -> Path:
    return download(dest, record_url=f"{zenodo.url}/api/records/{RECORD}", progress=False, backoff=0, **kw)


def test_resume_after_cut_connection_then_rerun_does_nothing(zenodo, archives, tmp_path):
    key = f"{DEV_DIRNAME}.audio.1.zip"
    zenodo.drop_once = {key}
    root = _get(zenodo, tmp_path)
    assert root == tmp_path / DEV_DIRNAME
    df = read_tau(root)
    assert len(df) == 10 and df["label"].nunique() == 10
    assert (root / "README.md").is_file()
    mine = [r for r in zenodo.file_requests() if key in r[0]]
    assert len(mine) == 2, mine
    half = (len(archives[key])) // 2
    assert mine[0][1] is None and mine[1][1] == f"bytes={half}-"  # resumed at the cut, not from the start
    assert (tmp_path / key).read_bytes() == archives[key]
    assert not list(tmp_path.glob("*.part"))

    before = len(zenodo.requests)
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert _get(zenodo, tmp_path) == root
    assert len(zenodo.requests) == before  # no network at all: the record JSON is kept locally
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamp  # nothing unpacked again


def test_bad_checksum_is_rejected_and_not_kept(zenodo, tmp_path):
    bad = f"{DEV_DIRNAME}.audio.2.zip"
    zenodo.corrupt = {bad}
    with pytest.raises(DownloadError, match=r"audio\.2\.zip: md5 [0-9a-f]{32} does not match"):
        _get(zenodo, tmp_path)
    assert not (tmp_path / bad).exists() and not (tmp_path / f"{bad}.part").exists()
    state = tmp_path / ".asc-download"
    assert not (state / f"{bad}.done").exists()
    assert (state / f"{DEV_DIRNAME}.audio.1.zip.done").exists()  # the good archive before it stays done
    assert sum(bad in r[0] for r in zenodo.file_requests()) == 2  # one fresh retry, then give up

    zenodo.corrupt = set()  # the server is fixed: a rerun fetches only what is missing
    zenodo.requests.clear()
    _get(zenodo, tmp_path, refresh=True)
    fetched = {r[0].rsplit("/", 2)[-2] for r in zenodo.file_requests()}
    assert fetched == {bad, f"{DEV_DIRNAME}.meta.zip", f"{DEV_DIRNAME}.doc.zip"}
    assert len(read_tau(tmp_path / DEV_DIRNAME)) == 10


def test_base_url_and_delete_archives(zenodo, tmp_path):
    base = f"{zenodo.url}/api/records/{RECORD}/files"
    root = download(tmp_path, record_url=f"{zenodo.url}/api/records/{RECORD}", base_url=base,
                    delete_archives=True, progress=False, backoff=0)
    assert len(read_tau(root)) == 10
    assert not list(tmp_path.glob("*.zip"))


def test_free_space_is_checked_before_any_file(zenodo, tmp_path):
    zenodo.sizes = {f"{DEV_DIRNAME}.audio.1.zip": 10**16}
    with pytest.raises(DownloadError, match="need about .*B, only .*B free"):
        _get(zenodo, tmp_path)
    assert zenodo.file_requests() == []


def test_offline_fails_fast_naming_record_and_layout(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--record-url", f"http://127.0.0.1:{port}/api/records/{RECORD}", "--no-progress"])
    assert exit_info.value.code == 1 and time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert str(RECORD) in err and "zenodo.org/records/2589280" in err
    assert "audio/<scene>-<city>-<location>-<segment>-a.wav" in err and "evaluation_setup/fold1_train.csv" in err


def test_member_outside_the_folder_is_refused(tmp_path):
    from asc.data.download import unpack

    evil = tmp_path / "evil.zip"
    evil.write_bytes(_zip({"../../escape.txt": b"x"}))
    with pytest.raises(DownloadError, match="outside"):
        unpack(evil, tmp_path / "dest", progress=False)
    assert not (tmp_path / "escape.txt").exists()


def test_parse_record_formats():
    md5 = "0123456789abcdef0123456789abcdef"
    new = {"id": 1, "files": [{"key": "b.audio.10.zip", "size": 3, "checksum": f"md5:{md5}",
                               "links": {"self": "https://z/b10"}},
                              {"key": "b.audio.2.zip", "size": 2, "checksum": f"md5:{md5}",
                               "links": {"content": "https://z/b2"}}]}
    files = parse_record(new)
    assert [f.key for f in files] == ["b.audio.2.zip", "b.audio.10.zip"]  # natural order
    assert files[0].url == "https://z/b2" and files[1].size == 3 and files[1].md5 == md5
    listing = {"entries": [{"key": "x y.zip", "size": 1, "checksum": md5.upper()}]}
    (f,) = parse_record(listing, base_url="http://127.0.0.1:9/m/")
    assert f.url == "http://127.0.0.1:9/m/x%20y.zip" and f.md5 == md5
    legacy = {"files": [{"filename": "a.zip", "filesize": 5, "checksum": md5}]}
    assert parse_record(legacy)[0].url == "https://zenodo.org/records/2589280/files/a.zip?download=1"
    with pytest.raises(DownloadError, match="md5"):
        parse_record({"files": [{"key": "a.zip", "size": 1, "checksum": "sha256:ab"}]})
