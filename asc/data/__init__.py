"""From recordings to network inputs: audio -> features -> cache -> dataset tables and splits -> augmentation.

Read top-down as the data flows: :mod:`~asc.data.scenes` (TAU facts), :mod:`~asc.data.download` and
:mod:`~asc.data.synth` (where recordings come from), :mod:`~asc.data.audio` (decoding), :mod:`~asc.data.features`
(the paper's image), :mod:`~asc.data.cache` (each image computed once), :mod:`~asc.data.dataset` (metadata and its
checks), :mod:`~asc.data.splits`, :mod:`~asc.data.augment` (batched crops, resize, masks on the device) and
:mod:`~asc.data.datamodule` (the LightningDataModule). :mod:`~asc.data.figures` draws each step for one clip.
"""
