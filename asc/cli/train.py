"""``asc train [OVERRIDES]`` (also ``python train.py``): one run, or a grid with ``-m``; ``--help`` lists every setting.

    asc train experiment=demo
    asc train -m window=3,5,7 mask=0,0.1,0.2 seed=0,1,2

A tracking server that does not answer is said in seconds, before torch and MLflow are loaded; errors that say what
to do (no server, no disk space) are printed as one message, without a traceback.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from asc.cli.console import fail, quiet
from asc.config import CONFIG_DIR
from asc.data.dataset import check_root
from asc.errors import UserMistake
from asc.files import DiskFull
from asc.tracking.health import TrackingError, check_server, resolve_uri

#: The arguments before the overrides that start a run again (see asc.runs.train.ddp_command).
_PREFIX: list[str] = []


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def train(cfg: DictConfig) -> float:
    quiet()
    try:
        check_root(cfg.data.kind, cfg.data.root, cfg.data.get("synthetic"))  # before MLflow creates its database
        check_server(resolve_uri(cfg.logger.tracking_uri))
        from asc.runs.train import COMMAND_PREFIX, run, summary  # after the server check: torch/MLflow load for ~10 s

        COMMAND_PREFIX[:] = _PREFIX
        result = run(cfg)
    except (TrackingError, DiskFull) as err:
        fail("train", err)
    except UserMistake as err:  # a missing or malformed dataset, missing weights: one line, status 2
        fail("train", err, code=2)
    if not result.worker:  # the other processes of a multi-device run have nothing of their own to say
        print("\n" + summary(result), flush=True)
    return result.val_acc


def main(argv: list[str] | None = None) -> None:
    if argv is not None:  # `asc train ARGS`: Hydra reads its arguments from sys.argv
        sys.argv = [sys.argv[0], *argv]
        _PREFIX[:] = ["train"]  # what starts a run again (several devices: asc.runs.train.ddp_command)
    train()
