"""Projected wall time of the paper's grid (3 windows x 3 masks x 3 seeds = 27 jobs) from measured per-step
costs, on the full path and with the embedding cache.

Assumptions (stated in the output): the paper's 60:20:20 split of TAU's 14400 clips (8640 train, 2880
validation, 2880 test), 30 to 60 epochs per job (early stopping after 10 epochs without a better
validation accuracy; 40 as the central figure), one job at a time on one device, frozen ImageNet VGG16
(its weights do not depend on the seed, so the 3 seeds of a cell share one cache). The cache holds 4
windows per training clip, x 2 band masks when mask > 0 (``conf/model/vgg16.yaml``): 9 caches, one per
(window, mask) cell. Measured: the per-sample rates; projected: everything derived from them.

    python -m benchmarks.grid [--gpu-json experiments/bench/gpu-h100.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TRAIN, VAL, TEST = 8640, 2880, 2880
WINDOWS, MASKS, SEEDS = (3, 5, 7), (0.0, 0.1, 0.2), (0, 1, 2)
POSITIONS, MASK_VIEWS = 4, 2


def project(rates: dict[str, float], epochs: float) -> dict[str, float]:
    """Grid wall time in seconds from samples/s rates: ``train`` (full-path training step), ``eval`` (full-path
    evaluation), ``embed`` (backbone pass filling the cache), ``head`` (head epoch from the cache)."""
    full_job = epochs * (TRAIN / rates["train"] + VAL / rates["eval"]) + TEST / rates["eval"]
    head_eval = rates.get("head_eval", rates["head"])
    cache_job = epochs * (TRAIN / rates["head"] + VAL / head_eval) + TEST / head_eval
    builds = {m: (TRAIN * POSITIONS * (MASK_VIEWS if m > 0 else 1) + VAL + TEST) / rates["embed"] for m in MASKS}
    n_jobs = len(WINDOWS) * len(MASKS) * len(SEEDS)
    cells_masked = len(WINDOWS) * sum(m > 0 for m in MASKS)
    return {
        "full": n_jobs * full_job,
        "cache": len(WINDOWS) * sum(builds.values()) + n_jobs * cache_job,
        "cache_builds": len(WINDOWS) * sum(builds.values()),
        # masks: 0 -- masked cells on the full path, unmasked cells from the cache
        "cache_unmasked_only": len(WINDOWS) * builds[0.0] + len(WINDOWS) * len(SEEDS) * cache_job
                               + cells_masked * len(SEEDS) * full_job,
    }


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def print_projection(label: str, rates: dict[str, float]) -> dict[str, dict[str, float]]:
    from benchmarks.common import table

    out = {str(e): project(rates, e) for e in (30, 40, 60)}
    rows = [("measured rates (samples/s)", ", ".join(f"{k} {v:.3g}" for k, v in rates.items()))]
    for key, text in (("full", "full path, 27 jobs"), ("cache", "embedding cache, 9 caches + 27 jobs"),
                      ("cache_builds", "  of which filling the 9 caches"),
                      ("cache_unmasked_only", "cache for mask=0 only (masks: 0)")):
        rows.append((text, f"{human(out['40'][key])}  (30-60 epochs: {human(out['30'][key])} - {human(out['60'][key])})"))
    table(f"projected wall time of the 27-job grid, {label}", rows,
          "projected from the measured rates; 8640/2880/2880 clips, 40 epochs per job (30-60)")
    return out


def measure_cpu(batch: int = 8, rounds: int = 2, known: dict[str, float] | None = None) -> dict[str, float]:
    """The CPU's rates, bf16 + channels-last (the faster setting there); ``known`` rates are not measured again."""
    import torch

    from benchmarks import steps
    from benchmarks.common import interleaved

    rates = dict(known or {})
    x, y = steps.images(batch)
    m = steps.make_module(channels_last=True)
    opt = steps.optimiser(m)
    amp = torch.bfloat16
    fns = {
        "train": lambda: steps.full_step(m, opt, x, y, amp),
        "eval": lambda: steps.eval_pass(m, x, amp),
        "embed": lambda: steps.embed_pass(m, x[: max(1, batch // 4)], amp),  # x 4 windows
    }
    t = interleaved({k: f for k, f in fns.items() if k not in rates}, rounds=rounds)
    rates.update({k: (max(1, batch // 4) * 4 if k == "embed" else batch) / v for k, v in t.items()})
    if "head" not in rates:
        cached = steps.lightning_epoch(steps.make_module(channels_last=True, inputs="embeddings"),
                                       steps.embedding_data(64), "bf16-mixed", "cpu", epochs=3)
        rates["head"] = 64 / cached
    return rates


def main(argv: list[str] | None = None, cpu_rates: dict[str, float] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu-json", default=None, help="a benchmarks.gpu result: also project the grid on that GPU")
    p.add_argument("--json")
    args = p.parse_args(argv)
    from benchmarks.common import save

    res = {"cpu_rates": cpu_rates or measure_cpu()}
    res["cpu"] = print_projection("this CPU, bf16 + channels-last", res["cpu_rates"])
    if args.gpu_json and Path(args.gpu_json).is_file():
        gpu = json.loads(Path(args.gpu_json).read_text())
        res["gpu_rates"] = gpu["rates"]
        res["gpu"] = print_projection(f"{gpu['machine'].get('gpu', 'GPU')} (rates measured by benchmarks.gpu)", gpu["rates"])
    save({"grid": res}, args.json)
    return res


if __name__ == "__main__":
    main()
