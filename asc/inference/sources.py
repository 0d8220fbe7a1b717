"""Where a trained model comes from: a checkpoint file, an MLflow run, a registered model or a model folder.

- a Lightning checkpoint file (loaded with ``weights_only=True``), or an MLflow model folder;
- an MLflow run: ``runs:/<run_id>`` or the bare 32-hex run id (its ``checkpoints/best.ckpt`` artifact),
  or ``runs:/<run_id>/<artifact path>``;
- a registered model: ``models:/<name>/<version>``, ``models:/<name>/latest`` or ``models:/<name>@<alias>``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from asc.data.features import FeatureSpec
from asc.inference.export import OnnxPredictor
from asc.inference.predictor import ModelError, Predictor
from asc.tracking.store import TrackingError, TrackingStore

#: The artifact of a training run that holds its best checkpoint (see asc.runs.train.record).
RUN_CHECKPOINT = "checkpoints/best.ckpt"
#: Where the packaged MLflow model keeps its checkpoint (see asc.tracking.packaging).
MODEL_CHECKPOINT = "model.ckpt"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def fetch_model(source: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """Resolve ``source`` to a local checkpoint file, downloading MLflow artifacts into ``dst``."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        return _model_dir_checkpoint(path, source)
    if not (source.startswith(("runs:/", "models:/")) or _RUN_ID.match(source)):
        raise ModelError(
            f"--model {source!r}: no such checkpoint file, and not an MLflow run id (runs:/<id>) "
            "or registered model (models:/<name>/<version>)"
        )
    store = TrackingStore(tracking_uri, explicit=True)  # --tracking-uri wins over MLFLOW_TRACKING_URI
    if not store.exists():  # opening a missing SQLite store would create an empty one
        raise ModelError(
            f"no MLflow store at {store.uri}: run training first, or point --tracking-uri / "
            "MLFLOW_TRACKING_URI at the store that holds the run"
        )
    try:
        if source.startswith("models:/"):
            return _model_dir_checkpoint(store.download_model(source, dst), source)
        run_id, _, artifact = source.removeprefix("runs:/").partition("/")
        store.get_run(run_id)
        local = store.download(run_id, artifact or RUN_CHECKPOINT, dst)
    except TrackingError as err:
        raise ModelError(f"--model {source}: {err}") from err
    return _model_dir_checkpoint(local, source) if local.is_dir() else local


def _model_dir_checkpoint(folder: Path, source: str) -> Path:
    """The checkpoint inside an MLflow model folder written by :mod:`asc.tracking.packaging`."""
    ckpt = folder / "artifacts" / MODEL_CHECKPOINT
    if not ckpt.is_file():
        raise ModelError(f"--model {source}: {folder} is not an asc MLflow model (no artifacts/{MODEL_CHECKPOINT})")
    return ckpt


def load_predictor(
    source: str, tracking_uri: str | None = None, expect: FeatureSpec | None = None, device: str = "cpu"
) -> Predictor:
    """A :class:`Predictor` from a checkpoint path, an exported ONNX file, an MLflow run or a registered model."""
    if source.endswith(".onnx") and Path(source).is_file():
        return OnnxPredictor(source)
    with tempfile.TemporaryDirectory(prefix="asc-model-") as tmp:
        path = fetch_model(source, Path(tmp), tracking_uri)
        return Predictor.from_checkpoint(path, expect=expect, source=source, device=device)
