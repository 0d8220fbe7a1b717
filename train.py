"""Train one configuration, or a grid with ``-m``. See ``python train.py --help`` and the README.

    python train.py experiment=demo
    python train.py -m window=3,5,7 mask=0,0.1,0.2 seed=0,1,2
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from asc.train import run

    return run(cfg)["val/acc"]


if __name__ == "__main__":
    main()
