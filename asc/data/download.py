"""Fetching TAU Urban Acoustic Scenes 2019 (development) from Zenodo: download, md5 check, unpack.

    asc download [DEST]        # default DEST: data -> data/TAU-urban-acoustic-scenes-2019-development/

The record's JSON (Zenodo's REST API) lists each archive with its size and published md5. Each archive is
downloaded to ``<name>.part`` -- resumed with an HTTP range request after a cut connection or a kill --
checked against its md5 (a file that fails is deleted, never kept under its real name), then unpacked
member by member (each written to a temporary name and renamed), and marked done in ``DEST/.asc-download/``.
A rerun skips what is marked done without touching the network (the record's JSON is kept there too).
Before anything is fetched, free disk space is checked against what the archives and their unpacked
audio need. Only the standard library is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import quote

from tqdm.auto import tqdm

from asc.data.dataset import DatasetError, safe_path
from asc.data.scenes import DEV_DIRNAME
from asc.files import atomic_write_text, free_space, no_space, size_text

log = logging.getLogger(__name__)

RECORD = 2589280
RECORD_URL = "https://zenodo.org/api/records/{record}"
#: The archives of the development set on the record (21 audio, meta, doc).
ARCHIVE = re.compile(rf"^{re.escape(DEV_DIRNAME)}\.(audio\.\d+|meta|doc)\.zip$")
#: Unpacked size per zipped byte, assumed before an archive is opened (WAV barely compresses; TAU: 1.17).
UNZIP_FACTOR = 1.2
CHUNK = 1 << 20
STATE = ".asc-download"

LAYOUT = f"""{{dest}}/{DEV_DIRNAME}/
    audio/<scene>-<city>-<location>-<segment>-a.wav   (14400 files, 48 kHz, 24 bit, stereo)
    meta.csv                                          (tab-separated: filename scene_label identifier source_label)
    evaluation_setup/fold1_train.csv, fold1_evaluate.csv, fold1_test.csv"""


class DownloadError(RuntimeError):
    """The dataset could not be fetched or checked; the message says which file and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of the record."""

    key: str  # file name
    size: int  # bytes
    md5: str  # hex digest
    url: str


def parse_record(record: dict, base_url: str | None = None) -> list[RemoteFile]:
    """The files of a Zenodo record JSON (``/api/records/<id>``, old or new API; or its ``/files`` listing).

    Each file entry has ``key`` (or ``filename``), ``size`` (or ``filesize``), ``checksum`` ``"md5:<hex>"``
    and ``links`` (``content``, ``self`` or ``download``). ``base_url`` replaces the links by
    ``<base_url>/<key>`` (a mirror, or a test server).
    """
    files = record.get("files", record.get("entries"))
    if isinstance(files, dict):  # {"entries": [...]} or {"entries": {key: {...}}}
        files = files.get("entries", files)
    if isinstance(files, dict):
        files = list(files.values())
    if not isinstance(files, list):
        raise DownloadError(f"record JSON: no file list (keys: {sorted(record)})")
    out = []
    for item in files:
        key = item.get("key") or item.get("filename")
        checksum = str(item.get("checksum", ""))
        algo, _, digest = checksum.partition(":")
        if not digest:
            algo, digest = "md5", checksum
        if not key or algo != "md5" or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
            raise DownloadError(f"record JSON: file entry without a name or an md5 checksum: {item}")
        links = item.get("links", {})
        url = f"{base_url.rstrip('/')}/{quote(key)}" if base_url else (
            links.get("content") or links.get("self") or links.get("download")
            or f"https://zenodo.org/records/{record.get('id', RECORD)}/files/{quote(key)}?download=1"
        )
        out.append(RemoteFile(key, int(item.get("size", item.get("filesize", 0))), digest.lower(), url))
    return sorted(out, key=lambda f: _natural(f.key))


def _natural(key: str) -> tuple:
    """audio.2 before audio.10."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key))


def offline_message(dest: Path, url: str, err: object, record: int = RECORD) -> str:
    return (
        f"cannot reach Zenodo ({url}: {err}).\n"
        f"TAU Urban Acoustic Scenes 2019, development set, is Zenodo record {record} "
        f"(https://zenodo.org/records/{record}, DOI 10.5281/zenodo.{record}). Without network access here, fetch "
        f"its files elsewhere ({DEV_DIRNAME}.audio.1.zip ... .audio.21.zip, .meta.zip, .doc.zip), unzip them "
        f"into {dest} and check the result with `asc verify {dest / DEV_DIRNAME}`. The layout must be:\n"
        + LAYOUT.format(dest=dest)
    )


def fetch_record(url: str, dest: Path, timeout: float, record: int = RECORD) -> dict:
    """The record's JSON from ``url`` (a file path or ``file://`` URL also works); fails fast offline."""
    try:
        if "://" not in url:
            return json.loads(Path(url).read_text())
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, HTTPException, OSError, TimeoutError) as err:
        raise DownloadError(offline_message(dest, url, getattr(err, "reason", err), record)) from err
    except json.JSONDecodeError as err:
        raise DownloadError(f"{url}: not a Zenodo record JSON ({err})") from err


def _md5_of(path: Path, hasher=None):
    hasher = hasher or hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            hasher.update(block)
    return hasher


class _Part:
    """A ``.part`` file and the md5 of the bytes in it (kept in step while appending)."""

    def __init__(self, path: Path) -> None:
        self.path, self.hasher, self.hashed = path, hashlib.md5(), 0

    def sync(self, limit: int) -> int:
        """Bytes in the file; restarts it if it is longer than ``limit``; rehashes it if out of step."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if size > limit:
            self.restart()
            size = 0
        if size != self.hashed:
            self.hasher, self.hashed = (_md5_of(self.path) if size else hashlib.md5()), size
        return size

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.hasher, self.hashed = hashlib.md5(), 0


def download_file(
    remote: RemoteFile, path: Path, timeout: float = 30.0, retries: int = 5, progress: bool = True, overall=None,
    backoff: float = 2.0,
) -> None:
    """Fetch ``remote`` to ``path``, resuming ``path.part`` with HTTP range requests, and check its md5.

    A cut connection is retried (up to ``retries`` times, each resuming where it stopped, after
    ``backoff`` x attempt seconds). A complete file whose md5 differs is deleted and fetched once more from
    scratch; if it fails again, :class:`DownloadError`. ``path`` appears only once its md5 is right.
    """
    part = _Part(path.with_name(path.name + ".part"))
    bad_checksums, failures = 0, 0
    bar = tqdm(total=remote.size, desc=remote.key.replace(f"{DEV_DIRNAME}.", ""), unit="B", unit_scale=True,
               unit_divisor=1024, leave=False, disable=not progress, position=1)
    with bar:
        while True:
            have = part.sync(remote.size)
            bar.n = have
            bar.refresh()
            if have < remote.size:
                try:
                    _fetch(remote, part, have, timeout, bar, overall)
                    problem = None if part.hashed == remote.size else "the server closed the connection early"
                except urllib.error.HTTPError as err:
                    if err.code in (403, 404, 410):
                        raise DownloadError(f"{remote.url}: HTTP {err.code} ({err.reason})") from err
                    problem = f"HTTP {err.code}"
                except (urllib.error.URLError, HTTPException, OSError, TimeoutError) as err:
                    if no_space(err):  # not the connection: retrying cannot help
                        have = part.sync(remote.size)
                        raise DownloadError(
                            f"{path.parent}: no space left for {remote.key} ({size_text(remote.size - have)} more "
                            f"needed, {size_text(free_space(path.parent))} free). Free space there or choose another "
                            f"folder, then rerun: the {size_text(have)} in {part.path.name} are kept and resumed"
                        ) from None
                    problem = str(getattr(err, "reason", err)) or type(err).__name__
                if problem is not None:
                    failures += 1
                    size = part.sync(remote.size)
                    if failures > retries:
                        raise DownloadError(
                            f"{remote.key}: download failed {failures} times (last: {problem}); {size} of "
                            f"{remote.size} bytes are kept in {part.path} -- rerun to resume"
                        )
                    log.warning("%s: connection lost at %d of %d bytes (%s); resuming", remote.key, size,
                                remote.size, problem)
                    time.sleep(backoff * failures)
                    continue
            digest = part.hasher.hexdigest()
            if digest == remote.md5:
                os.replace(part.path, path)
                return
            part.restart()
            if overall is not None:
                overall.update(-remote.size)
            bad_checksums += 1
            if bad_checksums >= 2:
                raise DownloadError(
                    f"{remote.key}: md5 {digest} does not match the published {remote.md5}, twice; the file was "
                    f"deleted. Check the server ({remote.url}) or the record, then rerun"
                )
            log.warning("%s: md5 %s is not the published %s; deleted, fetching it again", remote.key, digest, remote.md5)


def _fetch(remote: RemoteFile, part: _Part, have: int, timeout: float, bar, overall) -> None:
    """One HTTP request appending to ``part`` from byte ``have`` to the end (or until the connection drops)."""
    headers = {"User-Agent": "asc-download", **({"Range": f"bytes={have}-"} if have else {})}
    with urllib.request.urlopen(urllib.request.Request(remote.url, headers=headers), timeout=timeout) as resp:
        if have and resp.status != 206:  # the server ignored the range: start over
            log.warning("%s: the server does not resume (HTTP %d); starting over", remote.key, resp.status)
            part.restart()
            if overall is not None:
                overall.update(-have)
            bar.n = 0
        with open(part.path, "ab") as f:
            while block := resp.read(CHUNK):
                f.write(block)
                part.hasher.update(block)
                part.hashed += len(block)
                bar.update(len(block))
                if overall is not None:
                    overall.update(len(block))


def unpack(archive: Path, dest: Path, progress: bool = True) -> int:
    """Unpack ``archive`` into ``dest`` (members under ``DEV_DIRNAME/`` as Zenodo's archives have them; an
    archive without that folder goes into ``dest/DEV_DIRNAME``). Each member is written to a temporary name
    and renamed; members already present with the right size are kept, so an interrupted unpack resumes.
    A member that would land outside ``dest`` is refused. Returns the bytes written."""


    try:
        z = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{archive}: not a valid zip archive ({err}); delete it and rerun") from err
    with z:
        members = [m for m in z.infolist() if not m.is_dir()]
        top = f"{DEV_DIRNAME}/"
        target = dest if members and all(m.filename.startswith(top) for m in members) else dest / DEV_DIRNAME
        need = sum(m.file_size for m in members)
        free = shutil.disk_usage(_existing(dest)).free
        if need > free:
            raise DownloadError(f"{archive}: unpacking needs {size_text(need)}, {dest} has {size_text(free)} free. "
                                "Free space there, then rerun")
        written = 0
        bar = tqdm(total=need, desc=f"unpacking {archive.name.replace(f'{DEV_DIRNAME}.', '')}", unit="B",
                   unit_scale=True, unit_divisor=1024, leave=False, disable=not progress, position=1)
        with bar:
            for m in members:
                try:
                    out = safe_path(target, m.filename)
                except DatasetError as err:
                    raise DownloadError(f"{archive}: member {m.filename!r} would land outside {target}") from err
                if out.is_file() and out.stat().st_size == m.file_size:
                    bar.update(m.file_size)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_name(f".{out.name}.unzip.tmp")
                try:
                    with z.open(m) as src, open(tmp, "wb") as dst:
                        while block := src.read(CHUNK):
                            dst.write(block)
                            bar.update(len(block))
                    os.replace(tmp, out)
                except zipfile.BadZipFile as err:
                    tmp.unlink(missing_ok=True)
                    raise DownloadError(f"{archive}: member {m.filename} is damaged ({err}); delete the archive and rerun") from err
                except OSError as err:
                    tmp.unlink(missing_ok=True)
                    if not no_space(err):
                        raise
                    raise DownloadError(
                        f"{target}: no space left to unpack {archive.name} ({size_text(need - written)} more needed, "
                        f"{size_text(free_space(target))} free). Free space there, then rerun: the members unpacked "
                        "so far are kept"
                    ) from None
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                written += m.file_size
    return written


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def space_needed(todo: Sequence[RemoteFile], have: dict[str, int], delete_archives: bool) -> int:
    """Bytes of disk the remaining work needs: the archives still to fetch (minus partial downloads) plus their
    unpacked size (``UNZIP_FACTOR`` x); with ``delete_archives`` only the largest archive is on disk at a time."""
    fetch = [f.size - have.get(f.key, 0) for f in todo]
    unpacked = sum(int(f.size * UNZIP_FACTOR) for f in todo)
    return unpacked + (max(fetch, default=0) if delete_archives else sum(fetch))


def download(
    dest: str | Path = "data",
    record: int = RECORD,
    record_url: str | None = None,
    base_url: str | None = None,
    delete_archives: bool = False,
    timeout: float = 30.0,
    retries: int = 5,
    check_space: bool = True,
    refresh: bool = False,
    progress: bool = True,
    backoff: float = 2.0,
) -> Path:
    """Fetch, check and unpack the development set into ``dest``; returns the dataset folder
    ``dest/TAU-urban-acoustic-scenes-2019-development``. Does nothing for archives already done."""
    dest = Path(dest)
    state = dest / STATE
    saved = state / f"record-{record}.json"
    if saved.is_file() and not refresh:
        data = json.loads(saved.read_text())
    else:
        url = record_url or RECORD_URL.format(record=record)
        data = fetch_record(url, dest, min(timeout, 10.0), record)
        state.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, json.dumps(data, indent=1))
    files = [f for f in parse_record(data, base_url) if ARCHIVE.match(f.key)]
    if not files:
        raise DownloadError(f"record {record}: no {DEV_DIRNAME}.*.zip files listed")

    def done(f: RemoteFile) -> bool:
        marker = state / f"{f.key}.done"
        return marker.is_file() and marker.read_text().strip() == f.md5

    todo = [f for f in files if not done(f)]
    root = dest / DEV_DIRNAME
    if not todo:
        log.info("%s: all %d archives already fetched, checked and unpacked", root, len(files))
        return root
    have = {f.key: (dest / f"{f.key}.part").stat().st_size for f in todo if (dest / f"{f.key}.part").is_file()}
    have |= {f.key: f.size for f in todo if (dest / f.key).is_file()}
    need = space_needed(todo, have, delete_archives)
    free = shutil.disk_usage(_existing(dest)).free
    if check_space and need > free:
        raise DownloadError(
            f"{dest}: {len(todo)} archive(s) to fetch and unpack need about {size_text(need)}, only {size_text(free)} free. "
            "Free space, choose another folder, or pass --delete-archives to keep only one archive at a time"
        )
    dest.mkdir(parents=True, exist_ok=True)
    log.info("%d of %d archive(s) to do, about %s of disk needed, %s free", len(todo), len(files), size_text(need),
             size_text(free))
    remaining = sum(f.size for f in todo)
    overall = tqdm(total=remaining, initial=0, desc=f"record {record}", unit="B", unit_scale=True,
                   unit_divisor=1024, disable=not progress, position=0)
    with overall:
        for f in todo:
            archive = dest / f.key
            if archive.is_file():
                if _md5_of(archive).hexdigest() != f.md5:  # left by hand or by an older run: check it
                    log.warning("%s: md5 differs from the published one; fetching it again", archive)
                    archive.unlink()
            if not archive.is_file():
                start = overall.n
                download_file(f, archive, timeout, retries, progress, overall, backoff)
                overall.n = start + f.size
            else:
                overall.update(f.size)
            overall.set_postfix_str(f"unpacking {f.key.replace(f'{DEV_DIRNAME}.', '')}")
            unpack(archive, dest, progress)
            atomic_write_text(state / f"{f.key}.done", f.md5 + "\n")
            if delete_archives:
                archive.unlink()
            overall.set_postfix_str("")
    return root
