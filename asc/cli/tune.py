"""``asc tune [OVERRIDES]`` (also ``python -m asc tune``): an Optuna study around the paper's setup (see
:mod:`asc.runs.tune`); takes the same Hydra overrides as ``asc train`` plus ``tune.*``.

    asc tune experiment=demo_small_cnn tune.n_trials=20

Its inputs are checked before anything is written, as ``asc train``'s are (:func:`asc.checks.precheck`); its console is
``asc train``'s (:func:`asc.cli.console.quiet`).
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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="tune")
def study(cfg: DictConfig) -> None:
    quiet()
    try:  # nothing written yet but Hydra's run folder, which goes too
        check_inputs(cfg)
        from asc.runs.tune import check_space, tune  # torch/MLflow/Optuna load for ~10 s

        quiet()  # again: Lightning, imported just now, gave its logger a console handler of its own
        check_space(cfg)
    except UserMistake as err:
        mistake("tune", err, cfg)
    try:
        result = tune(cfg)
    except UserMistake as err:
        mistake("tune", err)
    except (TrackingError, DiskFull) as err:
        fail("tune", err)
    if any(t.value is not None for t in result.trials):
        print(f"study {result.study_name}: {len(result.trials)} trial(s); best #{result.best_trial.number}: "
              f"mean val accuracy {result.best_value:.3f} with {result.best_params}")


def main(argv: list[str] | None = None) -> None:
    if argv is not None:  # `asc tune ARGS`: Hydra reads its arguments from sys.argv
        sys.argv = [sys.argv[0], *argv]
    precheck("tune", "tune", sys.argv[1:])
    study()
