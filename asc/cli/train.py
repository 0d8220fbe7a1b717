"""``asc train [OVERRIDES]`` (also ``python train.py``): one run, or a grid with ``-m``; ``--help`` lists every setting.

    asc train experiment=demo
    asc train -m window=3,5,7 mask=0,0.1,0.2 seed=0,1,2

The inputs are checked before anything is written (:func:`asc.checks.precheck`, then :func:`asc.checks.check_inputs`
again in the job): a mistake in them -- a misspelt setting, a missing dataset, a tracking server that does not
answer -- is one line and status 2, in seconds, before torch and MLflow are loaded. Errors that say what to do (no
disk space, a server that stopped answering) are one message and status 1; any other error is a bug, with its
traceback.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from asc.checks import check_inputs, precheck
from asc.cli.console import fail, mistake, quiet
from asc.config import CONFIG_DIR
from asc.errors import UserMistake
from asc.files import DiskFull
from asc.tracking.health import TrackingError

#: The arguments before the overrides that start a run again (see asc.runs.train.ddp_command).
_PREFIX: list[str] = []


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def train(cfg: DictConfig) -> float:
    quiet()
    try:  # nothing written yet but Hydra's run folder, which goes too
        check_inputs(cfg)  # before MLflow creates its database; again in each job of a sweep
        from asc.runs.train import COMMAND_PREFIX, RunSettings, run, summary  # torch/MLflow load for ~10 s

        quiet()  # again: Lightning, imported just now, gave its logger a console handler of its own
        RunSettings.from_config(cfg)  # the groups' settings (an unknown key, say)
    except UserMistake as err:
        mistake("train", err, cfg)
    try:
        COMMAND_PREFIX[:] = _PREFIX
        result = run(cfg)
    except UserMistake as err:  # found by the run: its MLflow run is marked FAILED
        mistake("train", err)
    except (TrackingError, DiskFull) as err:
        fail("train", err)
    if not result.worker:  # the other processes of a multi-device run have nothing of their own to say
        print("\n" + summary(result), flush=True)
    return result.val_acc


def main(argv: list[str] | None = None) -> None:
    if argv is not None:  # `asc train ARGS`: Hydra reads its arguments from sys.argv
        sys.argv = [sys.argv[0], *argv]
        _PREFIX[:] = ["train"]  # what starts a run again (several devices: asc.runs.train.ddp_command)
    precheck("train", "config", sys.argv[1:])
    train()
