"""The trained model as an MLflow model, and registering a run's model under a name.

Format (chosen for being small, safe to load and self-contained): an MLflow **pyfunc** model whose artifact is
a slim checkpoint (``artifacts/model.ckpt``: the weights and the hyperparameters -- class names, the full
feature settings, window, image size -- without optimiser state), loaded with ``weights_only=True``; the
``asc`` package travels with it as ``code/`` so ``mlflow.pyfunc.load_model`` works without installing asc.

- input: the 8-bit spectrogram image of one clip or more, ``uint8 [B, H, W]`` (``H`` = the feature height, any
  ``W`` of at least one window; :func:`asc.features.image_from_audio` makes it), as written by training's cache;
- output: a DataFrame ``[B, classes]`` of class probabilities (column = class name), the mean over the
  model's evaluation windows -- exactly what validation and test score.

Audio-in, any-length prediction is :mod:`asc.predict` (``asc predict --model models:/<name>/<version>``); it
reads the same ``model.ckpt``. The model is logged "from code" (``asc/mlflow_model.py``), so loading it
unpickles nothing. The pyfunc takes images rather than audio because an image is a fixed-rate,
fixed-height tensor that a signature can describe and a server can batch.

    asc register <run_id> asc-demo                 # the run's logged model -> registered model "asc-demo"
    asc register --best asc-demo asc-demo          # the best run (best_val/acc) of experiment asc-demo
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency; keeps the module importable without it
    PythonModel = object  # type: ignore[assignment,misc]

#: Name of the logged model within a run (``runs:/<run_id>/model``).
MODEL_NAME = "model"


class SceneModel(PythonModel):
    """pyfunc: ``uint8 [B, H, W]`` spectrogram images -> DataFrame of class probabilities ``[B, classes]``."""

    def load_context(self, context) -> None:
        from asc.predict import Predictor

        self.predictor = Predictor.from_checkpoint(context.artifacts["checkpoint"], source="mlflow model")

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd

        x = np.asarray(model_input)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise ValueError(f"expected uint8 images [B, H, W], got shape {x.shape}")
        p = self.predictor
        rows = []
        for image in x.astype(np.uint8, copy=False):
            p.check_image(image)
            rows.append(p.window_probs(image, p.eval_starts(image.shape[1])).mean(0))
        return pd.DataFrame(np.stack(rows).astype(np.float64), columns=p.class_names)


@contextmanager
def using_store(uri: str) -> Iterator[None]:
    """MLflow's fluent API on ``uri`` for a while: ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI``
    in the environment, which would outlive the call and override later runs' settings (see asc.tracking)."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def slim_checkpoint(ckpt_path: str | Path, dst: str | Path) -> Path:
    """Copy of a Lightning checkpoint with only ``state_dict``, ``hyper_parameters`` and the version key."""
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    keep = {k: ckpt[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version") if k in ckpt}
    torch.save(keep, dst)
    return Path(dst)


def _requirements() -> list[str]:
    """Pinned requirements of the pyfunc (given explicitly: MLflow's inference would import the model in a subprocess)."""
    from importlib.metadata import version

    pins = []
    for dist in ("torch", "torchvision", "timm", "lightning", "torchmetrics", "numpy", "pandas", "librosa", "soundfile", "mlflow"):
        pins.append(f"{dist}=={version(dist).split('+')[0]}")
    return pins


def log_model(run_id: str, tracking_uri: str, ckpt_path: str | Path, example: np.ndarray) -> str:
    """Log the best checkpoint of run ``run_id`` as the pyfunc model ``model``, with signature and input example.

    ``example``: one image ``uint8 [1, H, W]`` from the data. Returns the model URI (``models:/<model_id>``).
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    import asc

    hp = __import__("torch").load(ckpt_path, map_location="cpu", weights_only=True)["hyper_parameters"]
    example = np.ascontiguousarray(example, dtype=np.uint8)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, int(example.shape[1]), -1))]),
        outputs=Schema([ColSpec("double", name) for name in hp["class_names"]]),
    )
    with (
        using_store(tracking_uri),
        warnings.catch_warnings(),
        tempfile.TemporaryDirectory(prefix="asc-model-") as tmp,
        mlflow.start_run(run_id=run_id),
    ):
        slim = slim_checkpoint(ckpt_path, Path(tmp) / "model.ckpt")
        warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")  # the signature is given
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(asc.__file__).parent / "mlflow_model.py"),  # models from code: nothing pickled
            artifacts={"checkpoint": str(slim)},
            code_paths=[str(Path(asc.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            metadata={"class_names": list(hp["class_names"]), "features": hp.get("features"), "window": hp.get("window")},
        )
    return info.model_uri


def best_run(experiment: str, metric: str = "best_val/acc", sweep: str | None = None, tracking_uri: str | None = None) -> str:
    """Id of the finished run with the highest ``metric`` in ``experiment`` (optionally one sweep's runs)."""
    import mlflow

    filters = ["attributes.status = 'FINISHED'"]
    if sweep:
        filters.append(f"tags.sweep = '{sweep}'")
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment named {experiment!r}")
    runs = client.search_runs(
        [exp.experiment_id], " and ".join(filters), order_by=[f"metrics.`{metric}` DESC"], max_results=1
    )
    if not runs or metric not in runs[0].data.metrics:
        raise ValueError(f"experiment {experiment!r} has no finished run{' of sweep ' + sweep if sweep else ''} with metric {metric!r}")
    return runs[0].info.run_id


def register(run_id: str, name: str, tracking_uri: str):
    """Register the model logged by run ``run_id`` as a new version of ``name``; returns the ModelVersion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with using_store(tracking_uri):
        try:
            run = mlflow.MlflowClient().get_run(run_id)
        except MlflowException as err:
            raise ValueError(f"no MLflow run {run_id!r} in {tracking_uri}") from err
        models = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}' and name = '{MODEL_NAME}'",
            output_format="list",
        )
        if not models:
            raise ValueError(
                f"run {run_id} has no logged model {MODEL_NAME!r} (trained before asc packaged its models?); retrain it"
            )
        return mlflow.register_model(f"models:/{models[0].model_id}", name, tags={"run_id": run_id})


def main(argv: list[str] | None = None) -> None:
    from asc.predict import _check_store
    from asc.tracking import tracking_uri as resolve_uri

    p = argparse.ArgumentParser(
        prog="asc register",
        description="Register a training run's logged model (or the best run of an experiment) under a name.",
    )
    p.add_argument("args", nargs="+", metavar="[RUN_ID] NAME", help="run id and model name; only NAME with --best")
    p.add_argument("--best", metavar="EXPERIMENT", help="take the experiment's best finished run by --metric")
    p.add_argument("--metric", default="best_val/acc", help="metric that ranks runs for --best (default: best_val/acc)")
    p.add_argument("--sweep", help="with --best: only runs tagged with this sweep id")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    a = p.parse_args(argv)
    if len(a.args) != (1 if a.best else 2):
        p.error("give RUN_ID NAME, or --best EXPERIMENT NAME")
    uri = a.tracking_uri or resolve_uri(None)
    try:
        _check_store(uri)
        run_id = best_run(a.best, a.metric, a.sweep, uri) if a.best else a.args[0]
        mv = register(run_id, a.args[-1], uri)
    except ValueError as err:
        print(f"asc register: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"registered run {run_id} as models:/{mv.name}/{mv.version}")
