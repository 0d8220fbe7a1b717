"""Damaged bytes: mutated audio files through ``asc verify``, ``asc extract`` and ``asc predict``; damaged cache entries.

**Audio.** Eight fixtures written by the suite (WAV 16- and 24-bit, FLAC, OGG Vorbis, MP3; mono and stereo; 8, 16 and
22.05 kHz) are mutated with a seeded generator: bit flips (1 to 64 bits anywhere), truncations (anywhere, from 0
bytes on) and header edits (random bytes in the first 64, or a field set to an absurd value: WAV channels, rate,
bits and chunk sizes; FLAC's STREAMINFO; Ogg page fields; MP3 frame headers). The mutants, a folder dataset, go
through the three commands at once. A file *survives* when each command gave either a result for it or an error that
names it: ``asc verify`` lists it readable or unreadable (its summary counts), ``asc extract --on-error skip`` leaves
a valid checked entry or names it in a ``skipped`` line, ``asc predict`` prints its result line or an error line
naming it. A command's traceback or its time limit counts against every file it held; ``asc predict``'s time per file
(between two of its lines) over :data:`PER_FILE` seconds is a hang of that file.

**Cache.** Entries of a filled feature cache are damaged (a bit flipped, cut short, a header byte changed) and an
embedding-cache entry too; ``asc train`` must find each, compute it again (its bytes equal the undamaged entry's) and
train exactly as on the undamaged cache (its metrics equal the reference run's).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import numpy as np

from reliability import data
from reliability.harness import Budget, Launched, Outcome, arrays, asc, environment, run, share_time

#: Seconds ``asc predict`` may spend on one file.
PER_FILE = 10.0
LIMIT = 900

FIXTURES = [  # name, format, subtype, rate, channels, seconds
    ("pcm16.wav", "WAV", "PCM_16", 16000, 2, 2.0),
    ("pcm24.wav", "WAV", "PCM_24", 8000, 1, 1.5),
    ("float.wav", "WAV", "FLOAT", 22050, 1, 1.0),
    ("clip.flac", "FLAC", "PCM_16", 16000, 2, 2.0),
    ("mono.flac", "FLAC", "PCM_24", 8000, 1, 1.0),
    ("clip.ogg", "OGG", "VORBIS", 16000, 2, 2.0),
    ("clip.mp3", "MP3", "MPEG_LAYER_III", 16000, 1, 2.0),
    ("stereo.mp3", "MP3", "MPEG_LAYER_III", 22050, 2, 1.5),
]


def fixtures(root: Path) -> dict[str, bytes]:
    """The undamaged files: noise and two tones."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (name, fmt, subtype, sr, ch, sec) in enumerate(FIXTURES):
        t = np.arange(int(sr * sec)) / sr
        rng = np.random.default_rng(i)
        y = 0.1 * rng.standard_normal((len(t), ch)) + 0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t)[:, None]
        sf.write(root / name, y.astype(np.float32), sr, format=fmt, subtype=subtype)
        out[name] = (root / name).read_bytes()
    return out


def _flip(b: bytearray, rng: random.Random) -> str:
    n = rng.randint(1, 64)
    for _ in range(n):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return f"{n} bit(s) flipped"


def _header_field(name: str, b: bytearray, rng: random.Random) -> str:
    """A header field set to an absurd value (the format's own fields), or random bytes in the first 64."""
    ext = name.rsplit(".", 1)[1]
    absurd = [0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]
    if ext == "wav" and len(b) >= 44 and rng.random() < 0.7:
        field, off, size = rng.choice([("RIFF size", 4, 4), ("fmt size", 16, 4), ("format tag", 20, 2),
                                       ("channels", 22, 2), ("sample rate", 24, 4), ("byte rate", 28, 4),
                                       ("block align", 32, 2), ("bits", 34, 2), ("data size", 40, 4)])
        v = rng.choice(absurd) & ((1 << (8 * size)) - 1)
        b[off : off + size] = v.to_bytes(size, "little")
        return f"WAV {field} set to {v}"
    if ext == "flac" and len(b) >= 42 and rng.random() < 0.7:  # STREAMINFO: bytes 18-21 rate/channels/bits
        off = rng.choice([8, 10, 13, 18, 19, 20, 21, 22, 25])
        v = rng.choice([0x00, 0xFF])
        b[off] = v
        return f"FLAC STREAMINFO byte {off} set to {v:#x}"
    if ext == "ogg" and len(b) >= 28 and rng.random() < 0.7:  # page header: version, type, granule, serial, segments
        off = rng.choice([4, 5, 6, 14, 22, 26])
        b[off] = rng.choice([0x00, 0xFF, 0x7F])
        return f"Ogg page byte {off} set to {b[off]:#x}"
    if ext == "mp3" and rng.random() < 0.7:
        sync = [m.start() for m in re.finditer(rb"\xff[\xe0-\xff]", bytes(b[:4096]))]
        if sync:
            i = rng.choice(sync) + rng.choice([1, 2, 3])
            b[i] = rng.choice([0x00, 0xFF, b[i] ^ 0xF0])
            return f"MP3 frame header byte {i} set to {b[i]:#x}"
    k = rng.randint(1, 8)
    for _ in range(k):
        b[rng.randrange(min(64, len(b)))] = rng.randrange(256)
    return f"{k} random byte(s) in the first 64"


def mutate(name: str, blob: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A damaged copy of ``blob`` and how it was damaged."""
    b = bytearray(blob)
    kind = rng.choice(["flip", "truncate", "header"])
    if kind == "flip":
        how = _flip(b, rng)
    elif kind == "truncate":
        cut = rng.choice([0, rng.randrange(0, 64), rng.randrange(0, len(b))])
        del b[cut:]
        how = f"cut at {cut} of {len(blob)} bytes"
    else:
        how = _header_field(name, b, rng)
    return bytes(b), how


def audio(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``count`` mutants of the fixtures through ``asc verify``, ``asc extract`` and ``asc predict``."""
    from reliability.kills import World

    originals = fixtures(work / "fixtures")
    folder = work / "damaged"
    folder.mkdir(parents=True, exist_ok=True)
    names, how = list(originals), {}
    rows = ["filename,label"]
    for i in range(count):
        src = names[i % len(names)]
        blob, what = mutate(src, originals[src], rng)
        name = f"m{i:04d}-{src}"
        (folder / name).write_bytes(blob)
        how[name] = f"{src}: {what}"
        rows.append(f"{name},{'ab'[i % 2]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    env = environment()
    # a model to predict with: the demo's small CNN, one epoch on the suite's set
    world = World(work)
    trained = data.fresh(work / "model", world.store)
    fin = run(world.command(trained, "trainer.max_epochs=1", "logger.log_model=false"), trained, env, LIMIT)
    assert fin.returncode == 0, fin.tail()
    (ckpt,) = (trained / "outputs" / "checkpoints").glob("*/best.ckpt")

    limit = 60 + 2.0 * count
    t0 = time.monotonic()
    verify = run(asc("verify", str(folder), "--kind", "folder", "--no-progress"), work, env, limit)
    t_verify = time.monotonic() - t0
    cache = work / "cache"
    extract = run(asc("extract", str(folder), "--kind", "folder", "--cache", str(cache), "--workers", "1",
                      "--on-error", "skip", "--no-progress", *data.EXTRACT_SET), work, env, limit)
    t_extract = time.monotonic() - t0 - t_verify
    job = Launched(asc("predict", "-m", str(ckpt), str(folder), "-k", "1"), work, env)
    predict = job.finish(limit)
    lines = list(job.lines)

    # asc verify: exit 0 or 1 (unreadable files are errors), its counts add up
    m = re.search(r"(\d+) unreadable audio file", verify.output)
    unreadable = int(m.group(1)) if m else 0
    verify_ok = verify.returncode in (0, 1) and not verify.timed_out and f"{count} clips listed" in verify.output
    # asc extract: a valid entry, or a skipped line naming the file
    skipped = {n for n in how if re.search(rf"^skipped .*{re.escape(n)}", extract.output, re.M)}
    from asc.files import DamagedFile, load_checked

    entries = {}
    for p in cache.rglob("*.npy"):
        try:
            load_checked(p)
            entries[p.stem] = True
        except DamagedFile:
            entries[p.stem] = False
    # asc predict: a result line starting with the path, or "asc predict: <path>: ..."
    answered: dict[str, float] = {}
    # the clock starts at the table's header (the model is loaded by then)
    last = next((t for t, line in lines if line.startswith("file ") and "top-" in line), 0.0)
    slow: dict[str, float] = {}
    for t, line in lines:
        for n in re.findall(r"(m\d{4}-[\w.]+)", line):
            if n in how and n not in answered:
                answered[n] = t
                if t - last > PER_FILE:
                    slow[n] = t - last
                last = t
    outcomes = []
    per = (time.monotonic() - t0) / max(1, count)
    for n in how:
        stem = Path(n).stem
        has_entry = any(stem in k for k, ok in entries.items() if ok)
        bad_entry = any(stem in k for k, ok in entries.items() if not ok)
        e_ok = extract.returncode == 0 and (has_entry or n in skipped) and not bad_entry
        p_ok = predict.returncode in (0, 1) and n in answered
        o = Outcome("damaged bytes", "audio: verify, extract, predict", how[n],
                    survived=verify_ok and e_ok and p_ok, lost=int(bad_entry), hangs=int(n in slow),
                    seconds=per, note=("entry" if has_entry else "skipped") + ("" if p_ok else "; predict said nothing"))
        outcomes.append(o)
    tb = verify.tracebacks + extract.tracebacks + predict.tracebacks
    if outcomes:
        first = outcomes[0]
        first.tracebacks = tb
        first.hangs += int(verify.timed_out) + int(extract.timed_out) + int(predict.timed_out)
        first.note += (f"; verify: {unreadable} unreadable ({t_verify:.0f} s), extract: {len(skipped)} skipped "
                       f"({t_extract:.0f} s), predict: {len(answered)} answered")
        if tb:
            first.note += f"; a traceback: {(verify.output + extract.output + predict.output)[-1500:]}"
    return outcomes


# -- damaged cache entries ------------------------------------------------------------------------------------------
def _damage_entry(path: Path, rng: random.Random) -> str:
    b = bytearray(path.read_bytes())
    kind = rng.choice(["flip", "truncate", "header"])
    if kind == "flip":
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
        how = f"bit flipped at byte {i}"
    elif kind == "truncate":
        cut = rng.randrange(0, len(b))
        del b[cut:]
        how = f"cut at {cut} of {len(path.read_bytes())} bytes"
    else:
        i = rng.randrange(8, 64)
        b[i] = (b[i] + rng.randrange(1, 256)) % 256
        how = f"header byte {i} changed"
    path.write_bytes(bytes(b))
    return how


def cache(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """``count`` feature-cache entries damaged (and, past 4, one embedding-cache file per 8), then ``asc train``."""
    from reliability import stores
    from reliability.kills import EMBEDDINGS, World

    world = World(work)
    n_emb = max(1, count // 8) if count >= 4 else 0
    n_feat = count - n_emb
    outcomes = []
    for kind, n, extra in (("feature cache", n_feat, ("trainer.max_epochs=3",)),
                           ("embedding cache", n_emb, ("trainer.max_epochs=3", *EMBEDDINGS))):
        if n == 0 or budget.spent:
            continue
        t0 = time.monotonic()
        ref_dir = data.fresh(work / f"reference-{kind[:3]}", world.store)
        ref = run(world.command(ref_dir, *extra), ref_dir, world.env, LIMIT)
        assert ref.returncode == 0, ref.tail()
        (reference,) = stores.runs(ref_dir / "mlflow.db", artifacts=False)
        good = arrays(ref_dir / "cache")
        folder = data.fresh(work / f"case-{kind[:3]}", world.store)
        shutil.copytree(ref_dir / "cache", folder / "cache")  # embedding entries too
        pool = sorted(k for k in good if ("embeddings-" in k) == (kind == "embedding cache"))
        chosen = rng.sample(pool, min(n, len(pool)))
        hows = {k: _damage_entry(folder / "cache" / k, rng) for k in chosen}
        fin = run(world.command(folder, *extra), folder, world.env, LIMIT)
        now = arrays(folder / "cache")
        runs = stores.runs(folder / "mlflow.db", artifacts=False)
        finished = [r for r in runs if r.status == "FINISHED"]
        diff = stores.same_metrics(reference, finished[0]) if len(finished) == 1 else ["no finished run"]
        found = (fin.output.count("damaged") if kind == "feature cache"
                 else fin.output.count("computing it again"))
        for k in chosen:
            repaired = now.get(k) == good[k]
            outcomes.append(Outcome("damaged cache", kind, hows[k], survived=fin.returncode == 0 and repaired,
                                    identical=not diff, lost=int(not repaired), tracebacks=0,
                                    note=f"{found} damage message(s) in the run's log" + (f"; differs: {diff[:2]}" if diff else "")))
        if outcomes:
            outcomes[-1].tracebacks = fin.tracebacks
            if fin.returncode:
                outcomes[-1].note += f"; run failed: {fin.tail(600)}"
        share_time(outcomes[-len(chosen):], t0)
    return outcomes
