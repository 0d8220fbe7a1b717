"""``asc train [OVERRIDES]`` (also ``python train.py``): one run, or a grid with ``-m``; ``--help`` lists every setting.

    asc train experiment=demo
    asc train -m window=3,5,7 mask=0,0.1,0.2 seed=0,1,2
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from asc.cli.console import quiet
from asc.config import CONFIG_DIR
from asc.runs.train import COMMAND_PREFIX, run, summary


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def train(cfg: DictConfig) -> float:
    quiet()
    result = run(cfg)
    if not result.get("worker"):  # the other processes of a multi-device run have nothing of their own to say
        print("\n" + summary(result), flush=True)
    return result["val/acc"]


def main(argv: list[str] | None = None) -> None:
    if argv is not None:  # `asc train ARGS`: Hydra reads its arguments from sys.argv
        sys.argv = [sys.argv[0], *argv]
        COMMAND_PREFIX[:] = ["train"]  # what starts a run again (several devices: asc.runs.train.ddp_command)
    train()
