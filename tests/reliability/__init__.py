"""Faults injected, nothing lost: the reliability suite (issue 15).

Each module injects one family of faults into the commands users run, on this machine, bounded in count and time
and drawn from a fixed seed, and returns one :class:`~reliability.harness.Outcome` per fault:

- :mod:`~reliability.kills`: SIGKILL at a random moment during ``asc extract``, the embedding-cache fill, ``asc train``,
  a sweep (``asc train -m``), a study (``asc tune``) and ``asc download``; then reruns to the end and compares with an
  uninterrupted run;
- :mod:`~reliability.disk`: the feature cache, MLflow's artifacts and the download folder on a small file system
  that fills up;
- :mod:`~reliability.server`: the MLflow tracking server down at start, and going down in the middle of a run;
- :mod:`~reliability.damage`: mutated audio files (bit flips, truncations, header edits of WAV, FLAC, OGG, MP3)
  through ``asc verify``, ``asc extract`` and ``asc predict``; flipped and truncated cache entries;
- :mod:`~reliability.concurrency`: two sweeps and two extractions on the same stores at once;
- :mod:`~reliability.untrusted`: a checkpoint that carries a pickle payload, archive members and metadata names that
  leave their folder, and the addresses the project's servers listen on.

``make reliability`` (``python -m reliability``, with ``tests/`` on the path) runs every family at full scale and
prints the table; ``tests/test_reliability.py`` runs a few cases of each in the ordinary test suite.
The suite lives beside the tests because it is one: it builds its own data as they do (``conftest``'s small
synthetic sets, the fake Zenodo of ``tests/zenodo.py``) and every fault ends in assertions; the runner only counts.
"""
