"""Experiments: one run (:mod:`~asc.runs.train`), a grid sweep (:mod:`~asc.runs.sweep`), an Optuna search
(:mod:`~asc.runs.tune`) and the sweep's report next to the published table (:mod:`~asc.runs.report`,
:mod:`~asc.runs.published`)."""
