"""Reading and checking a dataset's metadata: TAU 2019 (``meta.csv``) or a folder with ``filename,label``.

Everything downstream works on one table with the columns
``filename`` (relative to the dataset root), ``label``, ``city``, ``location`` (the recording location,
the unit that must not straddle splits), ``fold1`` (TAU's official fold: ``train``/``evaluate``/``None``),
``given`` (a folder's own ``split`` column: ``train``/``val``/``test``/``None``), ``fold`` (a folder's
``fold`` column or ``None``) and ``duplicate_of`` (for a byte-identical copy of another file of the table: the
first file of its group of copies, by name; ``None`` for the others).

Copies: real collections hold the same recording under several names. :func:`find_copies` finds byte-identical
files (by size, then a hash of their start, then of the whole file); :func:`mark_copies` fills ``duplicate_of``
and merges the recording locations that share a copy into one, so location-disjoint splits keep the copies
together; :func:`asc.data.splits.make_split` keeps them in one part in the by-file splits too. Folder datasets are
checked when read; a TAU table only by ``asc verify`` (14400 files of 2.9 MB, none of them copies).

:func:`scan_tau` and :func:`scan_folder` read the metadata and collect every problem they find in a
:class:`Layout` without stopping; :func:`read_tau` / :func:`read_folder` raise on the errors among them and
log the warnings; ``asc verify ROOT`` prints them all with a summary of the audio (:func:`main`).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from asc.data.audio import AUDIO_EXTENSIONS
from asc.data.scenes import CHANNELS, CLIP_SECONDS, SAMPLE_RATE, SCENES, SUBTYPE
from asc.data.splits import PARTS, check_classes, leakage, make_split
from asc.errors import UserMistake

log = logging.getLogger(__name__)

#: Values of a folder dataset's ``split`` column, and what they mean.
GIVEN_PARTS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
#: Columns of the table every reader returns.
COLUMNS = ["filename", "label", "city", "location", "fold1", "given", "fold", "duplicate_of"]
#: Bytes compared (hashed) at the start of equally sized files before hashing them whole.
HEAD_BYTES = 1 << 16


class DatasetError(ValueError, UserMistake):
    """The dataset folder or its metadata is not usable; the message names the file and the problem."""


def safe_path(root: Path, name: str) -> Path:
    """``root / name``, refusing names that could point outside ``root`` (absolute, ``..``, drive letters).

    The rule is lexical: the name as written must stay inside the folder. Links *under* the folder are the user's own
    (fold folders linked to another disk) and are followed; a name from the table cannot climb out of the folder.
    """
    pure = PurePosixPath(str(name).replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]) or not pure.parts:
        raise DatasetError(f"{root}: metadata names the file {name!r}, which is outside the dataset folder")
    return root.joinpath(*pure.parts)


@dataclass
class Layout:
    """Everything found wrong with a dataset folder. ``errors`` make it unusable; ``warnings`` do not."""

    root: Path
    malformed: list[str] = field(default_factory=list)  # "<file> line <n>: <problem>"
    unknown_labels: dict[str, int] = field(default_factory=dict)  # label -> rows
    missing: list[str] = field(default_factory=list)  # listed, not on disk
    extra: list[str] = field(default_factory=list)  # on disk, not listed
    setup: list[str] = field(default_factory=list)  # evaluation_setup/ inconsistencies
    copies: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (byte-identical files, their labels)
    no_group: bool = False  # a folder table without a 'group' column

    @property
    def errors(self) -> list[str]:
        out = []
        if self.malformed:
            out.append(_listing(f"{len(self.malformed)} malformed row(s)", self.malformed))
        if self.unknown_labels:
            shown = ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(self.unknown_labels.items()))
            out.append(f"unknown scene label(s): {shown}; expected TAU's {list(SCENES)}")
        if self.setup:
            out.append(_listing("evaluation setup problem(s)", self.setup))
        if self.missing:
            out.append(_listing(f"{len(self.missing)} audio file(s) listed in the metadata are missing", self.missing))
        return out

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.extra:
            out.append(_listing(f"{len(self.extra)} extra audio file(s) not listed in the metadata (ignored)", self.extra))
        if self.copies:
            lines = [_capped(names, " = ") + (f" (labels differ: {', '.join(labels)})" if len(labels) > 1 else "")
                     for names, labels in self.copies]
            out.append(_listing(
                f"{len(self.copies)} group(s) of byte-identical audio files ({sum(len(g) for g, _ in self.copies)} "
                "files): each group is one recording, kept in one part of every split (except data.split=given) and "
                "counted as leakage across train and test; delete the copies you do not want", lines))
        if self.no_group:
            out.append(
                "the table has no 'group' column, so every file is its own group: slices or takes of one recording "
                "can land in train and test (leakage the splits cannot see). Add a column 'group' naming each "
                "file's recording, session or location"
            )
        return out

    def raise_errors(self) -> None:
        if self.errors:
            raise DatasetError(f"{self.root}: " + "\n".join(self.errors))


def _capped(names: list[str], sep: str, limit: int = 5) -> str:
    """``names`` joined by ``sep``, the first ``limit`` of them and "... and N more" (one console line stays short)."""
    more = f"{sep}... and {len(names) - limit} more" if len(names) > limit else ""
    return sep.join(names[:limit]) + more


def _listing(title: str, items: list[str], limit: int = 20) -> str:
    shown = "\n  ".join(items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title}:\n  {shown}{more}"


def _read_rows(path: Path, sep: str, required: list[str]) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a delimited text table as dicts (plus ``_line``), and one message per malformed row.

    Raises :class:`DatasetError` only when the table as a whole is unusable (missing, not text, no header,
    a required column absent).
    """
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not a UTF-8 text table ({err})") from err
    reader = csv.reader(lines, delimiter=sep)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in required if c not in header]
    if missing:
        kind = "tab" if sep == "\t" else repr(sep)
        raise DatasetError(f"{path}: missing column(s) {missing} in the header ({kind}-separated); found {header}")
    rows, problems = [], []
    for lineno, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) != len(header):
            problems.append(f"{path.name} line {lineno}: {len(fields)} field(s), the header has {len(header)}")
            continue
        row = {k: v.strip() for k, v in zip(header, fields, strict=True)}
        empty = [c for c in required if not row[c]]
        if empty:
            problems.append(f"{path.name} line {lineno}: empty field(s) {empty}")
            continue
        row["_line"] = str(lineno)
        rows.append(row)
    return rows, problems


def _check_names(root: Path, table: str, rows: list[dict[str, str]], layout: Layout) -> list[dict[str, str]]:
    """Drop (and report) rows whose file name is unsafe or listed twice."""
    seen: dict[str, str] = {}
    kept = []
    for row in rows:
        name = row["filename"]
        try:
            safe_path(root, name)
        except DatasetError:
            layout.malformed.append(f"{table} line {row['_line']}: file name {name!r} is outside the dataset folder")
            continue
        if name in seen:
            layout.malformed.append(f"{table} line {row['_line']}: {name} is listed twice (first on line {seen[name]})")
            continue
        seen[name] = row["_line"]
        kept.append(row)
    return kept


def _check_files(root: Path, df: pd.DataFrame, layout: Layout) -> None:
    """Fill ``layout.missing`` and ``layout.extra`` (audio files on disk that the table does not list)."""
    listed = set(df["filename"])
    layout.missing = [name for name in df["filename"] if not safe_path(root, name).is_file()]
    where = root / "audio" if (root / "audio").is_dir() else root
    layout.extra = sorted(
        rel
        for path in where.rglob("*")
        if path.suffix.lower() in AUDIO_EXTENSIONS
        and (rel := path.relative_to(root).as_posix()) not in listed
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def _digest(path: Path, limit: int | None = None) -> str:
    """sha1 of the file's first ``limit`` bytes (all of it when None), read in 1 MiB blocks."""
    h = hashlib.sha1()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            block = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def find_copies(root: Path, names: Iterable[str]) -> list[list[str]]:
    """Groups of byte-identical files among ``names`` (each group sorted, groups sorted by their first name).

    Only files of equal size are compared: first by the sha1 of their first :data:`HEAD_BYTES`, then, where those
    agree, of the whole file, so a folder of distinct recordings costs one stat per file and little reading.
    Missing and empty files are left out (they are reported as such).
    """
    by_size: dict[int, list[str]] = defaultdict(list)
    for name in names:
        path = safe_path(root, name)
        if path.is_file() and (size := path.stat().st_size) > 0:
            by_size[size].append(name)
    groups = []
    for size, same in by_size.items():
        if len(same) < 2:
            continue
        candidates: dict[str, list[str]] = defaultdict(list)
        for name in same:
            candidates[_digest(safe_path(root, name), HEAD_BYTES)].append(name)
        for heads in candidates.values():
            if len(heads) < 2:
                continue
            if size <= HEAD_BYTES:
                groups.append(sorted(heads))
                continue
            whole: dict[str, list[str]] = defaultdict(list)
            for name in heads:
                whole[_digest(safe_path(root, name))].append(name)
            groups += [sorted(g) for g in whole.values() if len(g) > 1]
    return sorted(groups)


def mark_copies(df: pd.DataFrame, groups: list[list[str]]) -> pd.DataFrame:
    """``df`` with ``duplicate_of`` filled from ``groups`` (see :func:`find_copies`) and the recording locations
    that share a copy merged into one (named after the smallest), so no split can put copies in two parts by
    location; a copy's location is its whole group's."""
    df = df.copy()
    first = {name: group[0] for group in groups for name in group}
    df["duplicate_of"] = pd.Series([first.get(n) for n in df["filename"]], index=df.index, dtype=object)
    parent: dict[str, str] = {}

    def root_of(loc: str) -> str:
        while parent.get(loc, loc) != loc:
            loc = parent[loc]
        return loc

    location = dict(zip(df["filename"], df["location"].astype(str), strict=True))
    for group in groups:
        roots = sorted({root_of(location[n]) for n in group if n in location})
        for other in roots[1:]:
            parent[other] = roots[0]  # every root is the smallest name of its merged set
    df["location"] = [root_of(str(loc)) for loc in df["location"]]
    return df


def _copies(root: Path, df: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """Find the byte-identical files of ``df``, note them in ``layout`` and mark them in the table."""
    missing = set(layout.missing)
    groups = find_copies(root, [n for n in df["filename"] if n not in missing])
    labels = dict(zip(df["filename"], df["label"], strict=True))
    layout.copies = [(group, sorted({labels[n] for n in group})) for group in groups]
    return mark_copies(df, groups)


def _root(root: str | Path) -> Path:
    """The dataset folder (``~`` expanded), or a :class:`DatasetError` saying how to get one."""
    given = Path(root).expanduser()
    if given.is_dir():
        return given
    # a relative name is taken from where the command started: say where that is
    shown = f"{root} ({given.absolute()})" if not given.is_absolute() else str(root)
    if given.exists():
        raise DatasetError(f"{shown}: not a folder; data.root must name the dataset folder (the one that holds "
                           "meta.csv, or your recordings and their labels.csv), not a file in it")
    raise DatasetError(
        f"{shown}: dataset folder not found. Download it with `asc download` (or `make data`), generate a "
        "synthetic one with `asc synth`, or point data.root at it."
    )


def check_root(kind: str, root: str | Path, synthetic: object = None) -> None:
    """Before anything is written (MLflow database, output folders): a dataset of ``kind`` "tau" or "folder" that is
    not generated (``synthetic``) must already be a folder at ``root``."""
    if kind not in ("tau", "folder"):
        raise DatasetError(f"data.kind={kind!r}: not one of 'tau' (meta.csv, TAU's layout) or 'folder' (your "
                           "recordings with a labels.csv); choose the data group: data=tau, data=folder or data=synthetic")
    if not synthetic:
        _root(root)


def check_dataset(kind: str, root: str | Path, labels_csv: str = "labels.csv", split: str = "paper",
                  split_seed: int = 42, fractions: tuple[float, ...] = (0.6, 0.2, 0.2), test_fold: object = None,
                  synthetic: object = None) -> None:
    """What :func:`check_root` checks, then the dataset's table as training will read it: its columns, its rows
    (names inside the folder, files present), at least two classes, and the split (``data.split``,
    ``data.test_fold``) with every class in every part. Only the table is read and the files' presence checked (no
    audio, no hashing): seconds for TAU's 14,400 files. A synthetic set that is not generated yet passes."""
    check_root(kind, root, synthetic)
    folder = Path(root).expanduser()
    if synthetic and not (folder / "meta.csv").exists():
        return  # generated on first use
    df, layout = scan_tau(folder) if kind == "tau" else scan_folder(folder, labels_csv, copies=False)
    layout.raise_errors()
    table = folder / ("meta.csv" if kind == "tau" else labels_csv)
    labels = sorted(df["label"].unique())
    if len(labels) < 2:
        found = f"only the class {labels[0]!r}" if labels else "no usable rows"
        raise DatasetError(f"{table}: {found} in its label column; a classifier needs recordings of at least two "
                           "classes (labels)")
    part = make_split(df, split, split_seed, fractions, test_fold)
    used = part.notna()
    check_classes(df[used], part[used])


def scan_tau(root: str | Path, check_files: bool = True, copies: bool = False) -> tuple[pd.DataFrame, Layout]:
    """Read a TAU 2019 development set (real or synthetic) and collect its problems.

    Returns the table of the usable rows (sorted by file name) and the :class:`Layout` report. Raises
    :class:`DatasetError` only for a missing folder or an unusable ``meta.csv``. ``copies``: look for
    byte-identical audio files (off by default: ``asc verify`` does it).
    """
    root = _root(root)
    layout = Layout(root)
    rows, layout.malformed = _read_rows(root / "meta.csv", "\t", ["filename", "scene_label", "identifier"])
    rows = _check_names(root, "meta.csv", rows, layout)
    unknown: Counter[str] = Counter()
    records = []
    for row in rows:
        city, _, place = row["identifier"].rpartition("-")
        if not city or not place:
            layout.malformed.append(
                f"meta.csv line {row['_line']}: identifier {row['identifier']!r} is not '<city>-<location>'"
            )
            continue
        if row["scene_label"] not in SCENES:
            unknown[row["scene_label"]] += 1
            continue
        records.append((row["filename"], row["scene_label"], city, row["identifier"]))
    layout.unknown_labels = dict(unknown)
    df = pd.DataFrame(records, columns=COLUMNS[:4])
    df["fold1"] = df["given"] = df["fold"] = df["duplicate_of"] = None
    setup = root / "evaluation_setup"
    seen_in: dict[str, str] = {}
    for part in ("train", "evaluate"):
        path = setup / f"fold1_{part}.csv"
        if not path.is_file():
            continue
        fold_rows, bad = _read_rows(path, "\t", ["filename"])
        layout.malformed += bad
        names = {r["filename"] for r in fold_rows}
        strangers = sorted(names - set(df["filename"]))
        if strangers:
            layout.setup.append(f"{path.name}: {len(strangers)} file(s) not in meta.csv (or malformed there), "
                                f"e.g. {strangers[:3]}")
        twice = sorted(n for n in names if n in seen_in)
        if twice:
            layout.setup.append(f"{path.name}: {len(twice)} file(s) also in {seen_in[twice[0]]}, e.g. {twice[:3]}")
        seen_in.update({n: path.name for n in names})
        df.loc[df["filename"].isin(names), "fold1"] = part
    if check_files:
        _check_files(root, df, layout)
        if copies:
            df = _copies(root, df, layout)
    return _finish(df), layout


def scan_folder(
    root: str | Path, csv_name: str = "labels.csv", check_files: bool = True, copies: bool = True
) -> tuple[pd.DataFrame, Layout]:
    """Bring-your-own recordings: ``root/<csv_name>`` with ``filename,label`` and optional columns.

    Optional columns: ``group`` (recording location or session: files of one group never straddle
    train and test in the ``grouped``/``fold`` splits; default: each file its own group), ``city``
    (the splits stratify by label and city; default: one city), ``split`` (``train``/``val``/``test``,
    used by ``data.split=given``), ``fold`` (any fold names, used by ``data.split=fold``).
    With ``check_files`` and ``copies``, byte-identical files are found and marked (see :func:`mark_copies`).
    """
    root = _root(root)
    layout = Layout(root)
    table = root / csv_name
    if not table.is_file():
        raise DatasetError(f"{table}: file not found; a folder dataset needs this table of its recordings, with the "
                           "columns filename,label (data.labels_csv=NAME for another file in the folder)")
    rows, layout.malformed = _read_rows(table, ",", ["filename", "label"])
    layout.no_group = bool(rows) and "group" not in rows[0]
    rows = _check_names(root, csv_name, rows, layout)
    records = []
    for row in rows:
        given = row.get("split") or None
        if given is not None and given.lower() not in GIVEN_PARTS:
            layout.malformed.append(
                f"{csv_name} line {row['_line']}: split {given!r} is not one of {sorted(GIVEN_PARTS)}"
            )
            continue
        records.append((
            row["filename"], row["label"], row.get("city") or "all", row.get("group") or row["filename"], None,
            GIVEN_PARTS[given.lower()] if given else None, row.get("fold") or None, None,
        ))
    df = pd.DataFrame(records, columns=COLUMNS)
    if check_files:
        _check_files(root, df, layout)
        if copies:
            df = _copies(root, df, layout)
    return _finish(df), layout


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Sorted by file name; optional columns as objects with ``None`` where absent (not NaN)."""
    df = df.sort_values("filename", kind="stable").reset_index(drop=True)
    for col in ("fold1", "given", "fold", "duplicate_of"):
        df[col] = pd.Series([None if pd.isna(v) else v for v in df[col]], index=df.index, dtype=object)
    return df


def _checked(df: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    layout.raise_errors()
    for text in layout.warnings:
        log.warning("%s: %s", layout.root, text)
    return df


def read_tau(root: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Read and check a TAU 2019 development set (real or synthetic): the table of :data:`COLUMNS`.

    Raises :class:`DatasetError` listing malformed rows, unknown scene labels, file names outside the folder,
    inconsistent ``evaluation_setup/`` files and (with ``check_files``) audio files listed but not present.
    Audio files present but not listed are logged as a warning and ignored.
    """
    return _checked(*scan_tau(root, check_files))


def read_folder(root: str | Path, csv: str = "labels.csv", check_files: bool = True) -> pd.DataFrame:
    """Read and check a folder of recordings with ``<csv>`` (see :func:`scan_folder`), as :func:`read_tau`."""
    return _checked(*scan_folder(root, csv, check_files))


# -- asc verify ----------------------------------------------------------------------------------------------
def audio_headers(root: Path, df: pd.DataFrame, progress: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Header facts of every present file (no samples are read): ``seconds``, ``sample_rate``, ``channels``,
    ``subtype``, aligned with ``df``; plus one message per unreadable header."""
    facts, bad = [], []
    for name in tqdm(df["filename"], desc="reading headers", unit="file", disable=not progress):
        path = safe_path(root, name)
        try:
            info = sf.info(str(path))
            facts.append((info.frames / info.samplerate, info.samplerate, info.channels, info.subtype))
        except (RuntimeError, OSError) as err:  # LibsndfileError is a RuntimeError
            if path.is_file():
                bad.append(f"{name}: {'empty file (0 bytes)' if path.stat().st_size == 0 else err}")
            facts.append((float("nan"), None, None, None))
    out = pd.DataFrame(facts, columns=["seconds", "sample_rate", "channels", "subtype"], index=df.index)
    return out, bad


def _facts(head: pd.Series) -> str:
    return f"{head['sample_rate']} Hz, {head['channels']} ch, {head['subtype']}, {head['seconds']:.2f} s"


def _counts(series: pd.Series) -> str:
    return ", ".join(f"{k} {v}" for k, v in series.value_counts(dropna=False).sort_index().items())


def summary(root: Path, df: pd.DataFrame, layout: Layout, kind: str = "tau", progress: bool = True) -> tuple[str, bool]:
    """The text ``asc verify`` prints, and whether the dataset has errors."""
    heads, unreadable = audio_headers(root, df[~df["filename"].isin(layout.missing)], progress)
    lines = [f"{root}: {len(df)} clips listed, {len(df) - len(layout.missing)} present"]
    lines.append("clips per scene: " + _counts(df["label"]))
    if df["city"].nunique() > 1 or kind == "tau":
        lines.append("clips per city: " + _counts(df["city"]))
    lines.append(f"recording locations: {df['location'].nunique()}")
    if df["fold1"].notna().any():
        lines.append("official fold 1: " + _counts(df["fold1"].fillna("unused")))
    if df["given"].notna().any():
        lines.append("given split: " + _counts(df["given"].fillna("none")))
    if df["fold"].notna().any():
        lines.append("folds: " + _counts(df["fold"].fillna("none")))
    ok = heads.dropna()
    if len(ok):
        sec = ok["seconds"]
        lines.append(f"durations: {sec.min():.3f} .. {sec.max():.3f} s (median {sec.median():.3f} s, "
                     f"total {sec.sum() / 3600:.2f} h)")
        lines.append("sample rates (Hz): " + _counts(ok["sample_rate"].astype(int)))
        lines.append("channels: " + _counts(ok["channels"].astype(int)))
        lines.append("formats: " + _counts(ok["subtype"]))
    warnings = list(layout.warnings)
    if kind == "tau" and len(ok):
        checks = {
            f"not at {SAMPLE_RATE} Hz": ok["sample_rate"] != SAMPLE_RATE,
            f"not {CHANNELS} channels": ok["channels"] != CHANNELS,
            f"not {SUBTYPE}": ok["subtype"] != SUBTYPE,
            f"not {CLIP_SECONDS:g} s long": (ok["seconds"] - CLIP_SECONDS).abs() > 0.01,
        }
        for what, off in checks.items():
            if off.any():
                names = [f"{n} ({_facts(h)})" for n, (_, h) in zip(df.loc[off[off].index, "filename"], ok[off].iterrows(), strict=True)]
                warnings.append(_listing(f"{int(off.sum())} file(s) {what}, unlike TAU", names, limit=5))
    lines += split_lines(df, kind)
    errors = list(layout.errors)
    if unreadable:
        errors.append(_listing(f"{len(unreadable)} unreadable audio file(s)", unreadable))
    for text in errors:
        lines.append("ERROR " + text)
    for text in warnings:
        lines.append("WARNING " + text)
    lines.append("no problems found" if not errors and not warnings else
                 f"{len(errors)} error(s), {len(warnings)} warning(s)")
    return "\n".join(lines), bool(errors)


def split_lines(df: pd.DataFrame, kind: str = "tau", seed: int = 42) -> list[str]:
    """One line per split this dataset supports: its sizes and leakage (share of test clips whose recording
    location, or a byte-identical copy, is also in training)."""
    names = ["paper", "grouped"] + (["fold1"] if kind == "tau" else []) + (["given"] if df["given"].notna().any() else [])
    out = []
    for name in names:
        try:
            part = make_split(df, name, seed)
        except ValueError as err:
            out.append(f"split {name}: not available ({err})")
            continue
        sizes = ", ".join(f"{p} {int((part == p).sum())}" for p in PARTS)
        out.append(f"split {name} (seed {seed}): {sizes}; leakage {leakage(df, part):.3f}")
    return out


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """The dataset a command works on: ``root``, ``--kind`` and ``--labels-csv`` (shared by verify and extract)."""
    p.add_argument("root", type=Path, help="dataset folder (TAU: the one holding meta.csv)")
    p.add_argument("--kind", choices=("tau", "folder"), default="tau", help="tau (default) or folder (labels CSV)")
    p.add_argument("--labels-csv", default="labels.csv", help="the folder dataset's table (default: labels.csv)")
