"""Using a trained model: on files, folders and live streams (:mod:`~asc.inference.predict`)."""
