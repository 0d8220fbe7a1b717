"""The trained model as an MLflow model, and registering a run's model under a name.

Format (chosen for being small, safe to load and self-contained): an MLflow **pyfunc** model whose artifact is
a slim checkpoint (``artifacts/model.ckpt``: the weights and the hyperparameters -- class names, the full
feature settings, window, image size -- without optimiser state), loaded with ``weights_only=True``; the
``asc`` package travels with it as ``code/`` so ``mlflow.pyfunc.load_model`` works without installing asc.

- input: the 8-bit spectrogram image of one clip or more, ``uint8 [B, H, W]`` (``H`` = the feature height, any
  ``W`` of at least one window; :func:`asc.data.features.image_from_audio` makes it), as written by training's cache;
- output: a DataFrame ``[B, classes]`` of class probabilities (column = class name), the mean over the
  model's evaluation windows -- exactly what validation and test score.

Audio-in, any-length prediction is :mod:`asc.inference` (``asc predict --model models:/<name>/<version>``); it
reads the same ``model.ckpt``. The model is logged "from code" (``asc/tracking/mlflow_model.py``), so loading it
unpickles nothing. The pyfunc takes images rather than audio because an image is a fixed-rate,
fixed-height tensor that a signature can describe and a server can batch.

    asc register <run_id> asc-demo                 # the run's logged model -> registered model "asc-demo"
    asc register --best asc-demo asc-demo          # the best run (best_val/acc) of experiment asc-demo
    (registering: asc.tracking.store.TrackingStore.register; the command: asc/cli/register.py)
"""

from __future__ import annotations

import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec

import asc
from asc.inference.predictor import Predictor
from asc.tracking.store import TrackingStore

#: Name of the logged model within a run (``runs:/<run_id>/model``).
MODEL_NAME = "model"


class SceneModel(PythonModel):
    """pyfunc: ``uint8 [B, H, W]`` spectrogram images -> DataFrame of class probabilities ``[B, classes]``."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.from_checkpoint(context.artifacts["checkpoint"], source="mlflow model")

    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> pd.DataFrame:
        x = np.asarray(model_input)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise ValueError(f"expected uint8 images [B, H, W], got shape {x.shape}")
        p = self.predictor
        rows = []
        for image in x.astype(np.uint8, copy=False):
            rows.append(p.predict_image(image, windows="eval").mean)
        return pd.DataFrame(np.stack(rows).astype(np.float64), columns=p.class_names)


def slim_checkpoint(ckpt_path: str | Path, dst: str | Path) -> Path:
    """Copy of a Lightning checkpoint with only ``state_dict``, ``hyper_parameters`` and the version key."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    keep = {k: ckpt[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version") if k in ckpt}
    torch.save(keep, dst)
    return Path(dst)


def _requirements() -> list[str]:
    """Pinned requirements of the pyfunc (given explicitly: MLflow's inference would import the model in a subprocess)."""
    pins = []
    for dist in ("torch", "torchvision", "timm", "lightning", "torchmetrics", "numpy", "pandas", "librosa", "soundfile", "mlflow"):
        pins.append(f"{dist}=={version(dist).split('+')[0]}")
    return pins


def log_model(store: TrackingStore, run_id: str, ckpt_path: str | Path, example: np.ndarray) -> str:
    """Log the best checkpoint of run ``run_id`` as the pyfunc model ``model``, with signature and input example.

    ``example``: one image ``uint8 [1, H, W]`` from the data. Returns the model URI (``models:/<model_id>``).
    """
    hp = torch.load(ckpt_path, map_location="cpu", weights_only=True)["hyper_parameters"]
    example = np.ascontiguousarray(example, dtype=np.uint8)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, int(example.shape[1]), -1))]),
        outputs=Schema([ColSpec("double", name) for name in hp["class_names"]]),
    )
    with (
        store.artifact_space(run_id, "the MLflow model", 2 * Path(ckpt_path).stat().st_size),
        store.fluent(),
        tempfile.TemporaryDirectory(prefix="asc-model-") as tmp,
        mlflow.start_run(run_id=run_id),
    ):
        slim = slim_checkpoint(ckpt_path, Path(tmp) / "model.ckpt")
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(__file__).with_name("mlflow_model.py")),  # models from code: nothing pickled
            artifacts={"checkpoint": str(slim)},
            code_paths=[str(Path(asc.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            metadata={"class_names": list(hp["class_names"]), "features": hp.get("features"), "window": hp.get("window")},
        )
    return info.model_uri
