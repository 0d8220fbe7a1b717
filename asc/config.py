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
