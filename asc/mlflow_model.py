"""The pyfunc model as code, for MLflow's models-from-code logging (no pickled Python object; see asc.packaging)."""

import mlflow

from asc.packaging import SceneModel

mlflow.models.set_model(SceneModel())
