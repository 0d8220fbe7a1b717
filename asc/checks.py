"""The inputs of a run, checked before anything is written: no MLflow database, run or output folder, no cache.

:func:`check_inputs` is what ``asc train`` and ``asc tune`` ask of a composed config before they start (of a sweep's
jobs before the sweep starts, and again in each job): the settings' types and ranges, the tracking store,
the dataset's table and split, the backbone's weights. Each problem is a :class:`asc.errors.UserMistake` whose
message names the setting or file and what to do. Only light modules are imported here: the dataset check reads
tables (pandas); a pretrained backbone's check loads torch (the run loads it next anyway).

:func:`precheck` does it before Hydra starts ``asc train`` or ``asc tune``: Hydra writes its run folder (``.hydra/``,
the log file) before the task function runs, and a sweep's folder before it composes the jobs, and its own errors (an
unknown config group option, a misspelt key) are several lines and status 1. :func:`precheck` composes the command
line as Hydra will (every job of a ``-m`` sweep), says a composition error in one line, and checks the inputs: a run,
or a sweep none of whose jobs could start, ends there. A sweep with some jobs that can start runs; each job checks
its own inputs again before it writes anything, and one with a mistake says it in one line and is named, with its
reason, in the sweep's summary (:class:`asc.runs.sweep.SweepCallback`). ``HYDRA_FULL_ERROR=1`` skips this: Hydra and
the task function then raise with the whole traceback. Help, ``--cfg``, ``--info`` and the like go to Hydra
untouched.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import math
import os
import re
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from asc.config import CONFIG_DIR
from asc.errors import SettingError, UserMistake
from asc.tracking.health import check_server, resolve_uri

#: ``data.split`` values (asc.data.splits.SPLITS, which loads pandas), ``data.pad`` and ``data.on_error`` values.
SPLITS = ("paper", "grouped", "fold1", "given", "fold")
PADS = ("repeat", "silence", "none")
ON_ERROR = ("raise", "skip")


def value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at dotted ``key`` (None where absent); an interpolation that fails names the key."""
    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except OmegaConfBaseException as err:
        first = str(err).strip().splitlines()[0]
        raise SettingError(f"{key}: its value cannot be resolved ({first}); check the ${{...}} it refers to") from None


def _number(cfg: DictConfig, key: str, example: str) -> float:
    v = value(cfg, key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise SettingError(f"{key}={v!r}: not a number; {example}")
    return float(v)


def _whole(cfg: DictConfig, key: str, example: str) -> int:
    v = value(cfg, key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v != int(v):
        raise SettingError(f"{key}={v!r}: not a whole number; {example}")
    return int(v)


def _choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    v = value(cfg, key)
    if v is not None and v not in choices:
        raise SettingError(f"{key}={v!r}: not one of {', '.join(choices)}")


def check_settings(cfg: DictConfig) -> None:
    """The run's own numbers and choices: the values :class:`asc.runs.train.RunSettings` and Lightning would refuse
    only after the data was read (or a window no clip can hold)."""
    window = _number(cfg, "window", "give the window's length in seconds, e.g. window=5")
    if window <= 0:
        raise SettingError(f"window={value(cfg, 'window')}: must be a positive number of seconds, e.g. window=5")
    mask = _number(cfg, "mask", "give the largest masked band as a fraction of the height, e.g. mask=0.1")
    if not 0 <= mask < 1:
        raise SettingError(f"mask={value(cfg, 'mask')}: must be a fraction in [0, 1) (e.g. 0.1 masks at most 10 % of "
                           "the height)")
    _whole(cfg, "seed", "the training seed is an integer, e.g. seed=0")
    if value(cfg, "trainer.max_epochs") is not None:
        epochs = _whole(cfg, "trainer.max_epochs", "e.g. trainer.max_epochs=40")
        if epochs < 1 and epochs != -1:
            raise SettingError(f"trainer.max_epochs={epochs}: must be at least 1 (or -1: until early stopping ends it)")
    if value(cfg, "trainer.patience") is not None and _whole(cfg, "trainer.patience", "e.g. trainer.patience=10") < 0:
        raise SettingError(f"trainer.patience={value(cfg, 'trainer.patience')}: must be 0 or more epochs")
    if _whole(cfg, "data.batch_size", "e.g. data.batch_size=32") < 1:
        raise SettingError(f"data.batch_size={value(cfg, 'data.batch_size')}: must be at least 1")
    clip = _number(cfg, "data.clip_seconds", "the clip length in seconds, e.g. data.clip_seconds=10")
    if clip <= 0:
        raise SettingError(f"data.clip_seconds={value(cfg, 'data.clip_seconds')}: must be a positive number of seconds")
    if window > clip:
        raise SettingError(f"window={window:g}: longer than the clips (data.clip_seconds={clip:g} s); choose a window "
                           f"of at most {clip:g} s, or a longer data.clip_seconds (shorter recordings are padded by "
                           "data.pad)")
    _choice(cfg, "data.split", SPLITS)
    _choice(cfg, "data.pad", PADS)
    _choice(cfg, "data.on_error", ON_ERROR)


def check_data(cfg: DictConfig) -> None:
    """The dataset folder, its table and the configured split (:func:`asc.data.dataset.check_dataset`)."""
    from asc.data.dataset import check_dataset  # pandas, soundfile: ~1 s

    data = cfg.data
    fractions = value(cfg, "data.fractions")
    check_dataset(str(value(cfg, "data.kind")), str(value(cfg, "data.root")), str(data.get("labels_csv") or "labels.csv"),
                  str(value(cfg, "data.split")), int(value(cfg, "data.split_seed") or 42),
                  tuple(fractions) if fractions is not None else (0.6, 0.2, 0.2), value(cfg, "data.test_fold"),
                  value(cfg, "data.synthetic"))


def check_weights(cfg: DictConfig) -> None:
    """A pretrained backbone's weights are at hand: EfficientNet-Lite0's Python package is installed; a torchvision
    backbone's file is in the torch hub cache, or fetched into it now (the run would fetch it later, after its
    database, data cache and run were written). Loads torch, which the run loads next anyway."""
    backbone, pretrained = value(cfg, "model.backbone"), value(cfg, "model.pretrained")
    if not pretrained or backbone in (None, "small_cnn"):
        return
    from asc.model.networks import TORCHVISION_BACKBONES, fetch_weights, lite0_weights_file

    if backbone == "efficientnet_lite0":
        lite0_weights_file()
    elif backbone in TORCHVISION_BACKBONES:
        fetch_weights(backbone)


def check_inputs(cfg: DictConfig, seen: dict[Any, str | None] | None = None) -> None:
    """Everything a run can be told before it writes anything, cheapest first: settings, tracking store, data,
    weights. Raises the first :class:`asc.errors.UserMistake` found. ``seen``: the outcomes of the store, data and
    weights checks of earlier jobs of a sweep, by their settings (each is asked once per sweep)."""
    check_settings(cfg)
    seen = {} if seen is None else seen
    uri = resolve_uri(value(cfg, "logger.tracking_uri"))
    try:
        data = repr(OmegaConf.to_container(cfg.data, resolve=True))
    except OmegaConfBaseException as err:
        raise SettingError(f"data: a value cannot be resolved ({str(err).strip().splitlines()[0]})") from None
    checks = [
        (("store", uri), lambda: check_server(uri)),
        (("data", data), lambda: check_data(cfg)),
        (("weights", value(cfg, "model.backbone"), value(cfg, "model.pretrained")), lambda: check_weights(cfg)),
    ]
    for key, check in checks:
        if key in seen:
            if seen[key] is not None:
                raise _Again(seen[key])
            continue
        try:
            check()
        except UserMistake as err:
            seen[key] = str(err)
            raise
        seen[key] = None


class _Again(SettingError):
    """The mistake an earlier job of the sweep was found to make, said again for this one."""


# -- before Hydra starts ---------------------------------------------------------------------------------------
#: Failed jobs named one line each before "... and N more".
SHOWN = 5


def precheck(command: str, config_name: str, argv: list[str]) -> None:
    """Compose ``argv`` (Hydra's command line) against ``conf/<config_name>.yaml`` and check the inputs; where the
    command cannot start, say why as ``asc COMMAND: ...`` (one line per distinct problem) and end with status 2."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    args = _arguments(argv)
    if args is None or any((args.help, args.hydra_help, args.cfg, args.info, args.shell_completion,
                            args.experimental_rerun, args.config_path, args.config_dir)):
        return
    name = args.config_name or config_name
    jobs, problems, ready = _problems(name, list(args.overrides), bool(args.multirun))
    if ready:
        return
    messages = list(dict.fromkeys(problems.values()))
    if len(messages) == 1:  # the same mistake in every job (or a single run): said once
        lines = [messages[0]]
    else:  # each job named by the settings that tell the sweep's jobs apart
        varying = {o for job in jobs for o in job if not all(o in other for other in jobs)}
        lines = [f"job {' '.join(o for o in job if o in varying) or ' '.join(job)}: {msg}" for job, msg in problems.items()]
        if len(lines) > SHOWN:
            lines = [*lines[:SHOWN], f"... and {len(lines) - SHOWN} more job(s)"]
    for line in lines:
        print(f"asc {command}: {line}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _arguments(argv: list[str]) -> Any:
    """Hydra's own reading of the command line, or None where it would print something itself (usage errors)."""
    from hydra._internal.utils import get_args_parser  # what @hydra.main parses sys.argv with

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return get_args_parser().parse_args(argv)
    except SystemExit:  # --version, a usage error: Hydra says it
        return None


Job = tuple[str, ...]


def _problems(config_name: str, overrides: list[str], multirun: bool) -> tuple[list[Job], dict[Job, str], bool]:
    """The jobs, each failing job's one-line problem, and whether the command can start.

    It cannot if a job does not compose (Hydra would refuse the whole sweep), or if no job's inputs pass. Once one
    job's do, the sweep starts: the jobs with a mistake of their own say it when their turn comes (before they write
    anything), and the sweep's summary names them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if GlobalHydra.instance().is_initialized():  # e.g. a test that composed a config: leave its state alone
        return [], {}, True
    composing = (HydraException, OmegaConfBaseException)  # the command line's mistakes, as Hydra finds them
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            jobs = _jobs(config_name, overrides) if multirun else [tuple(overrides)]
        except composing as err:
            return [tuple(overrides)], {tuple(overrides): _hydra_message(err, config_name)}, False
        except Exception:  # noqa: BLE001 - a sweep Hydra may read otherwise: its say
            return [], {}, True
        configs: dict[Job, DictConfig] = {}
        problems: dict[Job, str] = {}
        for job in jobs:
            try:
                configs[job] = compose(config_name, list(job), return_hydra_config=True)
            except composing as err:
                problems[job] = _hydra_message(err, config_name)
        if problems:
            return jobs, problems, False
        seen: dict[Any, str | None] = {}
        for job, cfg in configs.items():
            try:
                check_inputs(cfg, seen)
            except UserMistake as err:
                problems[job] = str(err)
                continue
            return jobs, problems, True
        return jobs, problems, False


def _jobs(config_name: str, overrides: list[str]) -> list[Job]:
    """The jobs Hydra's basic sweeper makes of ``overrides`` (and ``hydra.sweeper.params``); the base config alone
    for another sweeper."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())  # glob(...) lists groups
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    base = compose(config_name, fixed, return_hydra_config=True)
    sweeper = str(OmegaConf.select(base, "hydra.sweeper._target_") or "")
    if not sweeper.endswith("BasicSweeper"):
        return [tuple(fixed)]
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + overrides
    (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(lines), None)
    return [tuple(job) for job in jobs]


def _hydra_message(err: BaseException, config_name: str) -> str:
    """Hydra's composition error in one line that names the override and what to do."""
    from hydra.errors import MissingConfigException, OverrideParseException

    first = _first_line(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        return f"{group}={option}: no such option (no conf/{group}/{option}.yaml); choose one of {', '.join(err.options)}"
    if isinstance(err, OverrideParseException):
        return (f"{err.override}: cannot read this override ({_first_line(err.message)}); write KEY=VALUE, "
                "e.g. window=5 (https://hydra.cc/docs/advanced/override_grammar/basic)")
    found = re.match(r"Could not override '([^']+)'", str(err))
    if found and "not in struct" in str(err.__cause__):
        key = found.group(1)
        return f"{key}: no such setting{_did_you_mean(config_name, key)}; `python train.py --cfg job` lists them all"
    cause = f" ({_first_line(err.__cause__)})" if err.__cause__ is not None else ""
    return f"{first}{cause}"


def _did_you_mean(config_name: str, key: str) -> str:
    from hydra import compose

    parent, _, leaf = key.rpartition(".")
    try:
        node = compose(config_name, [])
        siblings = OmegaConf.select(node, parent) if parent else node
    except Exception:  # noqa: BLE001 - no hint then
        return ""
    if not isinstance(siblings, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in siblings.keys()], n=1)
    return f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""


def _first_line(err: object) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
