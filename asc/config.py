"""Where the configs live, and how code outside Hydra reads them.

The Hydra configs are the repository's ``conf/`` folder; the wheel carries the same files as ``asc/conf``
(``pyproject.toml``, ``force-include``), so every command works from an installed package. :data:`CONFIG_DIR`
is whichever of the two this installation has.

Commands that take one config group by name (``asc extract --features mel``, ``asc predict --features``,
``asc figures``) read it with :func:`group_settings`; :func:`settings` turns a group into the typed
settings object the package works with, with an error that names the group and the unknown key.

A sweep job's folder is named after its overrides (``mask=0.1,seed=2,window=5``); :func:`job_dirname` (the resolver
``asc_dirname`` of ``conf/config.yaml``, registered on import) keeps that name short enough for a file system.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from asc.errors import SettingError

if TYPE_CHECKING:  # imported when used: it loads torch (3 s), and `asc train` must say in seconds that no server answers
    from asc.data.features import FeatureSpec

T = TypeVar("T")


def _config_dir() -> Path:
    packaged = Path(__file__).resolve().parent / "conf"  # an installed wheel
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"  # the checkout


#: The folder holding ``config.yaml`` and the config groups.
CONFIG_DIR: Path = _config_dir()

#: Bytes of a sweep job's folder name at most (file systems refuse names over 255).
DIRNAME_LIMIT = 200


def job_dirname(overrides: str) -> str:
    """A sweep job's folder name: its overrides as Hydra joins them, or, beyond :data:`DIRNAME_LIMIT` bytes, the
    overrides that fit and a hash of all of them (a sweep with many overrides on its command line failed with
    "File name too long")."""
    if len(overrides.encode()) <= DIRNAME_LIMIT:
        return overrides
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:10]
    kept = ""
    for item in overrides.split(","):
        if len(f"{kept},{item},+{digest}".encode()) > DIRNAME_LIMIT:
            break
        kept = f"{kept},{item}" if kept else item
    return f"{kept},+{digest}" if kept else digest


OmegaConf.register_new_resolver("asc_dirname", job_dirname, replace=True)


def settings(cls: type[T], cfg: Any, group: str, drop: tuple[str, ...] = ("name",)) -> T:
    """``cls(**cfg)`` for a dataclass ``cls``; an unknown key is an error that names ``group`` and the key."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    for key in drop:
        data.pop(key, None)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingError(f"{group}: unknown setting(s) {unknown}; known: {sorted(known)}")
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    return cls(**data)


def group_settings(group: str, name_or_path: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Settings of one config group, from ``conf/<group>/<name>.yaml`` or from a YAML file, with ``key=value``
    overrides: the same values a training run with ``<group>=<name>`` uses."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / group / f"{name_or_path}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        raise ValueError(f"{group}: {name_or_path!r} is neither a YAML file nor one of {choices}")
    try:
        cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    except Exception as err:  # noqa: BLE001 - a YAML or override syntax error, said with the file's name
        raise ValueError(f"{path}: cannot read the {group} settings ({err})") from err
    data = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {group} settings")
    data.pop("defaults", None)
    return data


def feature_spec(name: str = "cqt", overrides: Sequence[str] = ()) -> FeatureSpec:
    """The :class:`~asc.data.features.FeatureSpec` of ``features=<name>`` (or of a YAML file), with ``key=value``
    overrides: the same settings -- and so the same cache folder -- a training run uses."""
    from asc.data.features import FeatureSpec  # lazy: see the TYPE_CHECKING import above

    return settings(FeatureSpec, group_settings("features", name, overrides), "features")
