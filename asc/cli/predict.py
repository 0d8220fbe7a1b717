"""``asc predict``: scenes of audio files, folders or a live PCM stream with a trained model (see :mod:`asc.inference`).

    asc predict --model runs:/0123abcd... recording.flac --plot bars.png
    asc predict --model models:/asc-demo/1 recordings/ --csv out.csv
    arecord -f S16_LE -r 48000 -c 2 | asc predict --model best.ckpt - --rate 48000 --channels 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asc.config import feature_spec
from asc.data.audio import AUDIO_EXTENSIONS, PCM_DTYPES, audio_files

if TYPE_CHECKING:  # imported once the inputs are checked: torch and Lightning take 5 to 20 s to load
    from asc.inference.predictor import Prediction, Predictor


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asc predict",
        description="Predict acoustic scenes of audio files, folders, or a raw PCM stream on stdin (-).",
        epilog="Model sources: a checkpoint file, runs:/<run_id> (or the bare id), models:/<name>/<version>.",
    )
    p.add_argument("inputs", nargs="+", help="audio files (WAV/FLAC/OGG/MP3, any rate), folders, or - for stdin PCM")
    p.add_argument("-m", "--model", required=True, help="checkpoint path, runs:/<run_id>, or models:/<name>/<version>")
    p.add_argument("--tracking-uri", help="MLflow store for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--features", help="feature settings the model must have been trained on (conf/features NAME or YAML)")
    p.add_argument("-k", "--top-k", type=int, default=3, help="classes shown per file (default: 3)")
    p.add_argument("--hop", type=float, help="seconds between sliding clips / stream decisions (default: half the training clip)")
    p.add_argument("--windows", choices=("auto", "eval", "slide"), default="auto",
                   help="auto: the fewest clips covering a file up to about the training clip length, sliding clips "
                        "beyond (default)")
    p.add_argument("--per-window", action="store_true", help="also print every clip's top classes")
    p.add_argument("--json", type=Path, help="write all results (per clip and per file) as JSON")
    p.add_argument("--csv", type=Path, help="write one row per clip and a mean row per file as CSV")
    p.add_argument("--plot", type=Path, help="bar chart PNG of the top classes (a folder when several files are given)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default: cpu)")
    s = p.add_argument_group("stream (input -)")
    s.add_argument("--rate", type=int, help="sample rate of the PCM stream in Hz (required for -)")
    s.add_argument("--channels", type=int, default=1, help="interleaved channels (default: 1)")
    s.add_argument("--dtype", choices=PCM_DTYPES, default="int16", help="little-endian sample type (default: int16)")
    s.add_argument("--smooth", type=int, default=4, help="decisions are the mean of the last N windows (default: 4)")
    return p


def _fail(msg: str, code: int = 2) -> None:
    print(f"asc predict: {msg}", file=sys.stderr)
    raise SystemExit(code)


def _check_model(source: str) -> None:
    """What can be said of ``--model`` before torch is loaded: a file must be a checkpoint (a zip archive, as
    ``torch.save`` writes them) or an exported ``.onnx`` model; a name that is no file must be an MLflow one."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".onnx" and not zipfile.is_zipfile(path):
            _fail(f"--model {source}: not a checkpoint; give the best.ckpt of a run (`asc train` prints where it is), "
                  "an .onnx file written by `asc export`, runs:/<run id> or models:/<name>/<version>")
    elif not path.is_dir() and not (source.startswith(("runs:/", "models:/")) or re.fullmatch(r"[0-9a-f]{32}", source)):
        _fail(f"--model {source}: no such file; give the best.ckpt of a run (`asc train` prints where it is), an "
              ".onnx file, runs:/<run id> or models:/<name>/<version>")


def _input_files(inputs: list[str]) -> list[Path]:
    """The audio files of ``inputs`` (files, and the audio files under folders); a missing path or a folder without
    audio is the user's mistake, said before the model is loaded."""
    files: list[Path] = []
    problems: list[str] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = audio_files(item)
            if not found:
                problems.append(f"{item}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            problems.append(f"{item}: no such file or folder")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        _fail(shown)
    return files


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)  # librosa's CQT, short clips
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if a.top_k < 1:
        _fail("--top-k must be at least 1")
    expect = None
    if a.features:
        try:
            expect = feature_spec(a.features)
        except ValueError as err:
            _fail(str(err))
    if "-" in a.inputs and len(a.inputs) > 1:
        _fail("- (stdin stream) cannot be combined with other inputs")
    if "-" in a.inputs and not a.rate:
        _fail("reading a PCM stream from stdin (-) needs --rate (and --channels, --dtype if not 1 x int16)")
    _check_model(a.model)
    files = [] if a.inputs == ["-"] else _input_files(a.inputs)
    from asc.inference.predictor import ModelError
    from asc.inference.sources import load_predictor

    try:
        predictor = load_predictor(a.model, a.tracking_uri, expect, a.device)
    except ModelError as err:
        _fail(str(err))
    k = min(a.top_k, len(predictor.class_names))
    if a.inputs == ["-"]:
        _main_stream(a, predictor, k)
        return
    from asc.inference.outputs import format_top, plot_bars, write_csv, write_json

    errors: list[tuple[str, str]] = []
    results: list[Prediction] = []
    width = max([len(str(f)) for f in files] + [4])
    print(f"model {a.model}: {len(predictor.class_names)} classes, {predictor.spec.kind} features at "
          f"{predictor.spec.sample_rate} Hz, clips of {predictor.clip_seconds:g} s, {predictor.window:g} s window")
    print(f"{'file':<{width}}  {'length':>8}  {'windows':>12}  top-{k}")
    for f in files:
        try:
            r = predictor.predict_file(f, a.hop, a.windows)
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the others; reported and counted
            msg = str(err) if str(f) in str(err) else f"{f}: {err}"
            errors.append((str(f), msg))
            print(f"asc predict: {msg}", file=sys.stderr)
            continue
        results.append(r)
        n = len(r.starts)
        print(f"{str(f):<{width}}  {r.seconds:>6.1f} s  {f'{n} ({r.mode})':>12}  {format_top(r.top(k))}", flush=True)
        if a.per_window:
            for s, e, p in zip(r.starts, r.ends, r.probs, strict=True):
                order = np.argsort(-p, kind="stable")[:k]
                print(f"  {s:8.2f}-{e:.2f} s  " + format_top((predictor.class_names[i], float(p[i])) for i in order))
    if a.json:
        write_json(a.json, predictor, results, errors, k)
    if a.csv:
        write_csv(a.csv, predictor.class_names, results)
    if a.plot and results:
        if len(files) == 1:
            plot_bars(results[0], a.plot, k)
        else:
            a.plot.mkdir(parents=True, exist_ok=True)
            root = Path(os.path.commonpath([Path(r.file).resolve().parent for r in results]))
            for r in results:  # recordings/a/x.wav -> <plot>/a__x.wav.png
                rel = Path(r.file).resolve().relative_to(root)
                plot_bars(r, a.plot / (re.sub(r"[^\w.-]+", "_", "__".join(rel.parts)) + ".png"), k)
    print(f"{len(results)} file(s) predicted, {len(errors)} failed")
    if errors:
        raise SystemExit(1)


def _main_stream(a: argparse.Namespace, predictor: Predictor, k: int) -> None:
    from asc.inference.stream import stream

    print(f"stream: {a.rate} Hz x {a.channels} {a.dtype}; a decision every {predictor.hop_frames(a.hop) * predictor.spec.hop_length / predictor.spec.sample_rate:.2f} s "
          f"over the last {a.smooth} clip(s) of {predictor.clip_seconds:g} s", file=sys.stderr)
    try:
        report = stream(predictor, sys.stdin.buffer, a.rate, a.channels, a.dtype, a.hop, a.smooth, k, out=sys.stdout)
    except ValueError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        return
    if a.json:
        a.json.write_text(json.dumps({"model": predictor.source, "classes": predictor.class_names, "decisions": report.decisions}, indent=1))
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", *predictor.class_names])
            for d in report.decisions:
                w.writerow([f"{d['time']:.3f}", *(f"{d['probs'][c]:.6f}" for c in predictor.class_names)])
    print(f"stream: {report.seconds:.1f} s of audio, {len(report.decisions)} decisions, "
          f"real-time factor {report.real_time_factor:.3f} (compute per decision / hop)", file=sys.stderr)
    if not report.decisions:
        _fail(f"the stream ended after {report.seconds:.2f} s, before one {predictor.clip_seconds:g} s clip", 1)
