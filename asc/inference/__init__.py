"""Using a trained model: :mod:`~asc.inference.predictor` (a checkpoint turned into class probabilities for audio
of any length), :mod:`~asc.inference.sources` (checkpoint files, MLflow runs, registered models),
:mod:`~asc.inference.stream` (a live PCM stream) and :mod:`~asc.inference.outputs` (console, JSON, CSV, bar charts).
The command is ``asc predict`` (:mod:`asc.cli.predict`)."""
