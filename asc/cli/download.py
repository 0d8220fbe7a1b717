"""``asc download [DEST]``: TAU Urban Acoustic Scenes 2019 from Zenodo (see :mod:`asc.data.download`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asc.cli.console import fail
from asc.data.download import RECORD, DownloadError, download
from asc.data.scenes import DEV_DIRNAME
from asc.files import DiskFull, disk_full, no_space


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc download",
        description=f"Fetch TAU Urban Acoustic Scenes 2019 (development) from Zenodo record {RECORD}: 21 audio "
                    "archives plus meta and doc (about 36 GB zipped, 41 GB unpacked), check each against its "
                    "published md5, and unpack it. Resumes interrupted downloads; a rerun does nothing when all "
                    "is in place.",
    )
    p.add_argument("dest", nargs="?", type=Path, default=Path("data"),
                   help=f"folder for the archives; the dataset lands in DEST/{DEV_DIRNAME} (default: data)")
    p.add_argument("--record", type=int, default=RECORD, help=f"Zenodo record id (default: {RECORD})")
    p.add_argument("--record-url", help="URL (or file) of the record JSON (default: Zenodo's API for --record)")
    p.add_argument("--base-url", help="fetch each file from BASE_URL/<name> instead of the record's links (a mirror)")
    p.add_argument("--delete-archives", action="store_true", help="delete each archive once checked and unpacked")
    p.add_argument("--retries", type=int, default=5, help="reconnections per file after a cut (default: 5)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds without data before a retry (default: 30)")
    p.add_argument("--no-space-check", action="store_true", help="skip the free disk space check")
    p.add_argument("--refresh", action="store_true", help="fetch the record JSON again instead of the saved copy")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        root = download(a.dest, a.record, a.record_url, a.base_url, a.delete_archives, a.timeout, a.retries,
                        not a.no_space_check, a.refresh, not a.no_progress)
    except (DownloadError, DiskFull) as err:
        fail("download", err)
    except OSError as err:
        if not no_space(err):
            raise
        fail("download", disk_full(a.dest, "the dataset"))
    print(f"{root}: ready. Check it with `asc verify {root}`")
