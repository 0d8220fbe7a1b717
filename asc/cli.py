"""``asc``: the project's command line. Each subcommand lives in the module that does the work."""

from __future__ import annotations

import importlib
import sys

#: subcommand -> (module with a ``main(argv)`` function, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("asc.synth", "write a synthetic dataset in the TAU 2019 layout"),
    "download": ("asc.download", "fetch, verify (md5) and unpack TAU 2019 development from Zenodo"),
    "verify": ("asc.dataset", "check a dataset folder and print its summary"),
    "extract": ("asc.cache", "compute every clip's spectrogram into the feature cache (all cores, resumable)"),
    "predict": ("asc.predict", "predict the scenes of recordings, folders or a live PCM stream with a trained model"),
    "register": ("asc.packaging", "register a run's MLflow model (or the best run of an experiment) under a name"),
    "figures": ("asc.figures", "the paper's figures for any clip: mel, constant-Q, emphasis, 8-bit input, augmented sample"),
    "report": ("asc.report", "summarise a sweep: mean ± std per cell next to the published table, logged to MLflow"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
        print("usage: asc COMMAND [ARGS...]   (asc COMMAND --help for its options)\n\ncommands:\n" + "\n".join(lines))
        print("\ntraining and sweeps: python train.py [overrides] (see README)")
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"asc: unknown command {name!r}; try `asc --help`", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[name][0])
    module.main(rest)


if __name__ == "__main__":
    main()
