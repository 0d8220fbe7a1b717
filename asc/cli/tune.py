"""``asc tune [OVERRIDES]`` (also ``python -m asc tune``): an Optuna study around the paper's setup (see
:mod:`asc.runs.tune`); takes the same Hydra overrides as ``asc train`` plus ``tune.*``.

    asc tune experiment=demo_small_cnn tune.n_trials=20
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from asc.cli.console import fail, quiet
from asc.config import CONFIG_DIR
from asc.files import DiskFull
from asc.tracking.health import TrackingError, check_server, resolve_uri


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="tune")
def study(cfg: DictConfig) -> None:
    quiet()
    try:
        check_server(resolve_uri(cfg.logger.tracking_uri))
        from asc.runs.tune import tune  # after the server check: torch/MLflow load for ~10 s

        result = tune(cfg)
    except (TrackingError, DiskFull) as err:
        fail("tune", err)
    if any(t.value is not None for t in result.trials):
        print(f"study {result.study_name}: {len(result.trials)} trial(s); best #{result.best_trial.number}: "
              f"mean val accuracy {result.best_value:.3f} with {result.best_params}")


def main(argv: list[str] | None = None) -> None:
    if argv is not None:  # `asc tune ARGS`: Hydra reads its arguments from sys.argv
        sys.argv = [sys.argv[0], *argv]
    study()
