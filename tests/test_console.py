"""`asc tune`'s console is `asc train`'s: each of Lightning's lines once, no advertisement for Lightning's products.

Lightning gives its logger a console handler of its own when it is imported; the commands import it inside Hydra's
task function, after the logging is configured, so each record printed twice (Hydra's handler and Lightning's) until
:func:`asc.cli.console.quiet` ran again after the import."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from conftest import REPO
from reliability.data import FEATURES, tau

pytestmark = pytest.mark.slow  # one trial of one epoch: about 40 s


def test_one_tune_trial_prints_each_lightning_line_once_and_no_advert(tmp_path):
    data = tau(tmp_path / "set")
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-m", "asc", "tune", "experiment=demo_small_cnn", f"data.root={data}",
           "data.synthetic.duration=2.0", "data.synthetic.sample_rate=8000", *[f"features.{f}" for f in FEATURES],
           "window=1.0", "model.image_size=32", "trainer.max_epochs=1", "progress=false", "~tune.space",
           "+tune.space={model.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}", "tune.seeds=[0]",
           "tune.n_trials=1", "tune.retrain=false"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ASC_SWEEP"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    console = out.stdout + out.stderr
    assert out.returncode == 0, console[-4000:]
    assert "study asc-tune: 1 trial(s)" in out.stdout
    assert "litlogger" not in console and "💡" not in console
    # Lightning's records, with the time stamp of Hydra's console format or Lightning's own "INFO: " taken off
    said = Counter(re.sub(r"^(\[\d\d:\d\d:\d\d \w+\] |INFO: )", "", line) for line in console.splitlines())
    lightning = [line for line in said if re.search(r"GPU available|TPU available|`Trainer.fit` stopped|"
                                                    r"Restoring states from|Loaded model weights", line)]
    assert len(lightning) >= 4, console[-3000:]
    assert {line: said[line] for line in lightning if said[line] > 1} == {}
