"""What checking a cache entry costs: reading checked ``.npy`` entries against plain ``np.load`` of the same arrays.

Feature-cache entries carry a CRC-32 of their bytes (:func:`asc.files.atomic_save_checked`), and every read checks it
(:func:`asc.files.load_checked`, used by ``FeatureCache.read``). This times reading the same entries both ways, in
alternating rounds, on entries of TAU's size (256 x 469 uint8, 117 KiB) written to a temporary folder; the page cache
is warm for both, so the figure is the check's CPU cost, not the disk's. It is paid once per entry when a run sets up
its data (training batches are cut from tensors in memory, never from files).

    python -m benchmarks.checked_reads [--entries 400] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from asc.files import atomic_save_checked, load_checked
from benchmarks.common import interleaved, save, table

#: A TAU entry: 256 constant-Q rows x 469 frames of 10 s at 48 kHz, hop 1024.
SHAPE = (256, 469)
#: Entries in the TAU development set.
TAU_ENTRIES = 14_400


def measure(entries: int, rounds: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="asc-checked-") as tmp:
        plain, checked = Path(tmp) / "plain", Path(tmp) / "checked"
        plain.mkdir()
        checked.mkdir()
        for i in range(entries):
            image = rng.integers(0, 256, SHAPE, dtype=np.uint8)
            np.save(plain / f"{i}.npy", image)
            atomic_save_checked(checked / f"{i}.npy", image)
        files = {name: sorted(folder.glob("*.npy")) for name, folder in (("plain", plain), ("checked", checked))}
        assert all(np.array_equal(np.load(a), load_checked(b)) for a, b in zip(*files.values(), strict=True))
        t = interleaved({"np.load": lambda: [np.load(f) for f in files["plain"]],
                         "load_checked": lambda: [load_checked(f) for f in files["checked"]]}, rounds=rounds)
    per_plain, per_checked = t["np.load"] / entries, t["load_checked"] / entries
    return {"entries": entries, "entry_bytes": int(np.prod(SHAPE)), "np_load_us": per_plain * 1e6,
            "load_checked_us": per_checked * 1e6, "ratio": per_checked / per_plain,
            "check_us": (per_checked - per_plain) * 1e6,
            "tau_setup_extra_s": (per_checked - per_plain) * TAU_ENTRIES}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=400, help="entries read per round (default: 400)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args(argv)
    res = measure(args.entries, args.rounds)
    table("checked cache entries: reading one 117 KiB entry (page cache warm)", [
        ("np.load, no check", f"{res['np_load_us']:.0f} us"),
        ("load_checked (CRC-32 + header)", f"{res['load_checked_us']:.0f} us   {res['ratio']:.2f}x np.load"),
        ("the check itself", f"{res['check_us']:.0f} us per entry"),
        (f"TAU's {TAU_ENTRIES} entries", f"{res['tau_setup_extra_s']:.1f} s more per run set-up"),
    ], f"{res['entries']} entries x {args.rounds} alternating rounds, medians")
    save(res, args.json)
    return res


if __name__ == "__main__":
    main()
