"""MLflow, in one place: the tracking store every other module asks (:mod:`~asc.tracking.store`), and the trained
model as an MLflow model (:mod:`~asc.tracking.packaging`, :mod:`~asc.tracking.mlflow_model`)."""
