"""The pyfunc model as code, for MLflow's models-from-code logging (no pickled Python object; see asc.tracking.packaging)."""

import mlflow

from asc.tracking.packaging import SceneModel

mlflow.models.set_model(SceneModel())
