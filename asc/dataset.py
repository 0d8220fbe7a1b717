"""Reading and checking a dataset's metadata: TAU 2019 (``meta.csv``) or a folder with ``filename,label``.

Everything downstream works on one table with the columns
``filename`` (relative to the dataset root), ``label``, ``city``, ``location`` (the recording location,
the unit that must not straddle splits) and, for TAU, ``fold1`` (``train``/``evaluate``/``None``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from asc.scenes import SCENES


class DatasetError(ValueError):
    """The dataset folder or its metadata is not usable; the message names the file and the problem."""


def safe_path(root: Path, name: str) -> Path:
    """``root / name``, refusing names that could point outside ``root`` (absolute, ``..``, drive letters)."""
    pure = PurePosixPath(str(name).replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]) or not pure.parts:
        raise DatasetError(f"{root}: metadata names the file {name!r}, which is outside the dataset folder")
    path = root.joinpath(*pure.parts)
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise DatasetError(f"{root}: metadata names the file {name!r}, which resolves outside the dataset folder")
    return path


def _read_table(path: Path, sep: str, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: malformed table ({err})") from err
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    empty = df[required].eq("").any(axis=1)
    if empty.any():
        rows = (df.index[empty] + 2).tolist()[:10]
        raise DatasetError(f"{path}: empty field(s) in line(s) {rows}")
    return df


def read_tau(root: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Read a TAU 2019 development set (real or synthetic) and check it.

    Raises :class:`DatasetError` for a missing folder or ``meta.csv``, malformed rows, unknown scene labels,
    file names outside the folder, and (with ``check_files``) audio files listed but not present.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"{root}: dataset folder not found. Download it with `asc download` (or `make data`), generate a "
            "synthetic one with `asc synth`, or point data.root at it."
        )
    meta = _read_table(root / "meta.csv", "\t", ["filename", "scene_label", "identifier"])
    unknown = sorted(set(meta["scene_label"]) - set(SCENES))
    if unknown:
        raise DatasetError(f"{root / 'meta.csv'}: unknown scene label(s) {unknown}; expected TAU's {list(SCENES)}")
    dupes = meta["filename"][meta["filename"].duplicated()]
    if len(dupes):
        raise DatasetError(f"{root / 'meta.csv'}: file(s) listed twice: {dupes.tolist()[:5]}")
    for name in meta["filename"]:
        safe_path(root, name)
    ident = meta["identifier"].str.rsplit("-", n=1, expand=True)
    if ident.shape[1] != 2 or ident.isna().any().any():
        raise DatasetError(f"{root / 'meta.csv'}: identifier must be '<city>-<location>'")
    df = pd.DataFrame(
        {
            "filename": meta["filename"],
            "label": meta["scene_label"],
            "city": ident[0],
            "location": meta["identifier"],
        }
    )
    df["fold1"] = None
    setup = root / "evaluation_setup"
    for part in ("train", "evaluate"):
        path = setup / f"fold1_{part}.csv"
        if path.is_file():
            names = set(_read_table(path, "\t", ["filename"])["filename"])
            strangers = sorted(names - set(df["filename"]))
            if strangers:
                raise DatasetError(f"{path}: file(s) not in meta.csv: {strangers[:5]}")
            df.loc[df["filename"].isin(names), "fold1"] = part
    if check_files:
        check_audio_present(root, df)
    return df.sort_values("filename", kind="stable").reset_index(drop=True)


def read_folder(root: str | Path, csv: str = "labels.csv", check_files: bool = True) -> pd.DataFrame:
    """Bring-your-own recordings: ``root/<csv>`` with ``filename,label`` and optional ``group``/``city``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    table = _read_table(root / csv, ",", ["filename", "label"])
    for name in table["filename"]:
        safe_path(root, name)
    group = table["group"] if "group" in table.columns else table["filename"]
    df = pd.DataFrame(
        {
            "filename": table["filename"],
            "label": table["label"],
            "city": table["city"] if "city" in table.columns else "all",
            "location": group,
            "fold1": table["split"] if "split" in table.columns else None,
        }
    )
    if check_files:
        check_audio_present(root, df)
    return df.sort_values("filename", kind="stable").reset_index(drop=True)


def check_audio_present(root: Path, df: pd.DataFrame) -> None:
    missing = [name for name in df["filename"] if not safe_path(root, name).is_file()]
    if missing:
        shown = "\n  ".join(missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise DatasetError(f"{root}: {len(missing)} audio file(s) listed in the metadata are missing:\n  {shown}{more}")
