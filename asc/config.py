"""Turning Hydra config groups into the typed settings objects the package works with."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def settings(cls: type[T], cfg: Any, group: str, drop: tuple[str, ...] = ("name",)) -> T:
    """``cls(**cfg)`` for a dataclass ``cls``; an unknown key is an error that names ``group`` and the key."""
    from omegaconf import DictConfig, OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    for key in drop:
        data.pop(key, None)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{group}: unknown setting(s) {unknown}; known: {sorted(known)}")
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    return cls(**data)


def group_file(group: str, name_or_path: str) -> dict[str, Any]:
    """Settings of one config group from ``conf/<group>/<name>.yaml`` or from a YAML file path.

    Lets commands outside Hydra (``asc predict --features mel``, ``asc figures``) take a group by name.
    """
    from pathlib import Path

    from omegaconf import OmegaConf

    path = Path(name_or_path)
    if not path.suffix:
        path = Path(__file__).resolve().parents[1] / "conf" / group / f"{name_or_path}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / group).glob("*.yaml"))
        raise ValueError(f"{group}: {name_or_path!r} is neither a YAML file nor one of {choices}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {group} settings")
    data.pop("defaults", None)
    return data
