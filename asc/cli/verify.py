"""``asc verify ROOT``: check a dataset folder and print its summary (see :mod:`asc.data.dataset`)."""

from __future__ import annotations

import argparse
import sys

from asc.data.dataset import DatasetError, add_dataset_arguments, scan_folder, scan_tau, summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc verify",
        description="Check a dataset folder and print its summary: clips per scene and city, durations, sample "
                    "rates, channels; missing and extra audio files, unknown labels, malformed rows. "
                    "Exit status 1 if it has errors, 2 if the folder or its table cannot be read at all (or with "
                    "--strict and warnings only).",
    )
    add_dataset_arguments(p)
    p.add_argument("--strict", action="store_true", help="warnings (extra files, other formats) fail too")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        df, layout = scan_tau(a.root, copies=True) if a.kind == "tau" else scan_folder(a.root, a.labels_csv)
    except DatasetError as err:  # no folder, no usable table: the user's mistake, one line
        print(f"asc verify: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    text, failed = summary(a.root, df, layout, a.kind, progress=not a.no_progress)
    print(text)
    if failed:
        raise SystemExit(1)
    if a.strict and "WARNING" in text:
        raise SystemExit(2)
