"""A run's scientific identity, and whether it is the paper's setup.

**Identity.** Two runs are the same experiment when their configs agree on every key that changes the
science. The keys that do not -- where things are, how fast they run, how they are logged -- are listed once,
in ``conf/config.yaml`` (``hydra.job.config.override_dirname.exclude_keys``): Hydra reads that list to leave
them out of sweep folder names, and :data:`NOT_SCIENCE` is the same list, read from the same file, for the
hashes that name, group and resume runs (:func:`config_hash`). An entry covers its sub-keys (``logger``
covers ``logger.experiment``...).

**Faithful.** :func:`paper_differences` lists how a run's settings differ from the paper's setup, whose
groups ``conf/experiment/paper_grid.yaml`` names (TAU, constant-Q features, frozen VGG16, the default
trainer). A run with no difference is tagged ``faithful=true``; any other is ``faithful=false`` with the
differences as its reason, and reports show the published numbers beside it as context, not as a target.
A setting given as an object (``model.backbone: {_target_: asc.model.cpresnet.CPResNet, rho: 6}``) is hashed and
logged by its leaves (``model.backbone.rho``) and shown as ``CPResNet(rho=6)`` among the differences.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from asc.config import CONFIG_DIR


def _not_science() -> tuple[str, ...]:
    keys = OmegaConf.select(OmegaConf.load(CONFIG_DIR / "config.yaml"), "hydra.job.config.override_dirname.exclude_keys")
    return tuple(str(k) for k in keys)


#: Config keys (dotted; each covers its sub-keys) that do not change a run's science. One list, in
#: ``conf/config.yaml``, read by Hydra for folder names and here for the identity hashes.
NOT_SCIENCE: tuple[str, ...] = _not_science()


def excluded(key: str, drop: Iterable[str] = NOT_SCIENCE) -> bool:
    """Whether ``key`` (dotted, or an override's key such as ``+x`` / ``hydra/launcher``) is one of ``drop``."""
    key = key.lstrip("+~").replace("/", ".")
    return any(key == k or key.startswith(k + ".") for k in drop)


def _normalise(value: Any) -> Any:
    """Numbers as floats (``window=5`` and ``window=5.0`` are the same setting), containers recursively."""
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def plain(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as plain containers, without Hydra's node (parts of it exist only inside a job)."""
    if isinstance(cfg, DictConfig):
        return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                for k in cfg if k != "hydra"}
    return {k: v for k, v in cfg.items() if k != "hydra"}


def scientific(cfg: DictConfig | Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """The resolved config without :data:`NOT_SCIENCE` (and ``drop``) keys, numbers normalised."""
    skip = (*NOT_SCIENCE, *drop)

    def prune(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out = {}
        for key, value in node.items():
            name = f"{prefix}{key}"
            if excluded(name, skip):
                continue
            out[key] = prune(value, f"{name}.") if isinstance(value, Mapping) else value
        return out

    return _normalise(prune(plain(cfg), ""))


def digest(data: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def config_hash(cfg: DictConfig | Mapping[str, Any], drop: Iterable[str] = ()) -> str:
    """A run's identity: 16 hex digits of the hash of its :func:`scientific` config.

    ``drop=("seed",)`` gives the identity of its grid cell (the runs that are averaged together).
    """
    return digest(scientific(cfg, drop))


def config_lock(outputs: str | Path, experiment_id: str, parent: str | None, config_hash_: str) -> Path:
    """The lock a process holds while it runs a config (in a sweep: under its parent run): a second process with the
    same config waits for it (then finds the run finished, or resumes it), and a run left RUNNING whose lock is free
    belongs to a process that died. ``outputs``: ``paths.outputs``, shared by the processes that share a store."""
    folder = Path(outputs) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{experiment_id}-{parent or 'top'}-{config_hash_}.lock"


# -- the paper's setup ----------------------------------------------------------------------------------------
#: Keys that vary within the paper's own grid, or that the paper did not fix: not a deviation.
GRID_KEYS = ("window", "mask", "seed")
#: Config groups beyond the paper (conf/augment, conf/optim): absent from the paper's setup, and from its config
#: (so from its hash and params); a run that has one is not the paper's setup, unless it spells the paper's out.
RECIPE_GROUPS = {"augment": "the paper's window and band only", "optim": "Adam at model.lr, no schedule"}
#: Recipe options that are the paper's own setup spelled out (``optim=adam``).
PAPER_RECIPES = {"optim": ("asc.model.optimisers.Adam",)}


def _recipe(node: Mapping[str, Any]) -> str:
    """A recipe group's options in one line: ``Mixup(alpha=0.4)``, nested objects by their class names."""
    def show(value: Any) -> str:
        if isinstance(value, Mapping):
            args = ", ".join(f"{k}={show(v)}" for k, v in value.items() if k != "_target_")
            return f"{str(value.get('_target_', '')).rsplit('.', 1)[-1]}({args})"
        if isinstance(value, list):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return repr(value)
    return show(node)


def paper_groups() -> dict[str, str]:
    """``{group: option}`` of the paper's setup, from ``conf/experiment/paper_grid.yaml``'s defaults list."""
    groups = {}
    for item in OmegaConf.load(CONFIG_DIR / "experiment" / "paper_grid.yaml").get("defaults", []):
        for key, option in dict(item).items():
            groups[str(key).removeprefix("override ").lstrip("/")] = str(option)
    return groups


def leaves(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b.c": value}`` (lists kept whole)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def paper_settings(normalise: bool = True) -> dict[str, Any]:
    """Every scientific setting of the paper's setup, dotted (``features.fmin``: 10.0, ...); numbers as floats
    unless ``normalise`` is false."""
    out: dict[str, Any] = {}
    for group, option in paper_groups().items():
        node = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")
        node = {k: v for k, v in OmegaConf.to_container(node, resolve=False).items() if k != "defaults"}
        out.update({k: v for k, v in leaves(node, f"{group}.").items() if not excluded(k)})
    return _normalise(out) if normalise else out


def paper_differences(cfg: DictConfig | Mapping[str, Any]) -> list[str]:
    """How a run's settings differ from the paper's setup, e.g. ``["data.synthetic: synthetic scenes, not TAU
    2019", "model.backbone: 'small_cnn' (paper: 'vgg16')"]``; empty for the faithful setup."""
    run = leaves(scientific(cfg))
    shown = leaves(plain(cfg))  # as the user wrote them (5, not 5.0)
    out = []
    if run.get("data.synthetic") is not None or any(k.startswith("data.synthetic.") for k in run):
        out.append("data: synthetic scenes, not TAU 2019")
    config = plain(cfg)
    for group, paper in RECIPE_GROUPS.items():
        node = config.get(group)
        if node and node.get("_target_") not in PAPER_RECIPES.get(group, ()):
            out.append(f"{group}: {_recipe(node)} (paper: {paper})")
    if shown.get("model.unfreeze") is not None:
        out.append(f"model.unfreeze: the last {shown['model.unfreeze']} backbone blocks train (paper: none)")
    raw = paper_settings(normalise=False)
    for key, want in paper_settings().items():
        if key == "data.synthetic":
            continue
        if run.get(key, "(not set)") != want:
            node = _select(config, key)  # a setting the paper has as a value, given as an object (model.backbone)
            given = _recipe(node) if isinstance(node, Mapping) else repr(shown.get(key, "(not set)"))
            out.append(f"{key}: {given} (paper: {raw[key]!r})")
    return out


def _select(node: Any, dotted: str) -> Any:
    """``node["a"]["b"]`` for ``"a.b"``, or None where a key is missing."""
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
