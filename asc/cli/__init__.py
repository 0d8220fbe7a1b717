"""``asc``: the project's command line. One file per command in this package, each with a ``main(argv)``.

``asc COMMAND ...`` and ``python -m asc COMMAND ...`` reach the same dispatcher (:func:`main`).
"""

from __future__ import annotations

import importlib
import sys

#: command -> one-line help; the command lives in ``asc/cli/<command>.py``
COMMANDS: dict[str, str] = {
    "synth": "write a synthetic dataset in the TAU 2019 layout",
    "download": "fetch, verify (md5) and unpack TAU 2019 development from Zenodo",
    "verify": "check a dataset folder and print its summary",
    "extract": "compute every clip's spectrogram into the feature cache (all cores, resumable)",
    "train": "train one configuration, or a grid with -m (Hydra overrides; the same as python train.py)",
    "tune": "an Optuna search over the augmentation and head (Hydra overrides; resumable)",
    "server": "run the team's MLflow tracking server (PostgreSQL or SQLite, artifacts proxied; 127.0.0.1 by default)",
    "report": "summarise a sweep: mean ± std per cell next to the published table, logged to MLflow",
    "compare": "recipes side by side: several sweeps in one table and bar chart, logged to MLflow",
    "predict": "predict the scenes of recordings, folders or a live PCM stream with a trained model",
    "register": "register a run's MLflow model (or the best run of an experiment) under a name",
    "export": "write a trained model as ONNX (8-bit clip in, class probabilities out)",
    "figures": "the paper's figures for any clip: mel, constant-Q, emphasis, 8-bit input, augmented sample",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
        print("usage: asc COMMAND [ARGS...]   (asc COMMAND --help for its options)\n\ncommands:\n" + "\n".join(lines))
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"asc: unknown command {name!r}; try `asc --help`", file=sys.stderr)
        raise SystemExit(2)
    # Imported on demand: a command loads torch, Lightning or MLflow only when it runs (`asc --help` stays instant).
    importlib.import_module(f"asc.cli.{name}").main(rest)
