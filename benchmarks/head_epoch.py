"""A head-training epoch from the embedding cache against the full path, same samples, through Lightning.

Both epochs are real ``Trainer.fit`` epochs of :class:`asc.model.module.SceneClassifier` (frozen VGG16 with random
weights + the 512-unit head, bf16 autocast, channels-last): the full path gets uint8 spectrograms and runs
augmentation and backbone at every step; the cache path gets the stored backbone outputs (4 views per
clip) and runs the head only; its third epoch is timed, leaving out what a run pays once. Filling the cache costs one backbone pass per stored view, once for all
seeds: ``benchmarks.grid`` counts it.

    python -m benchmarks.head_epoch [--samples 64]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from benchmarks import steps
from benchmarks.common import save, table


def measure(samples: int, accelerator: str = "cpu", precision: str = "bf16-mixed", batch: int = 32) -> dict[str, float]:
    warnings.filterwarnings("ignore", message=".*(overridden|does not have many workers|IterableDataset|LitLogger|Tip).*")
    full = steps.lightning_epoch(steps.make_module(channels_last=True), steps.image_data(samples, batch), precision, accelerator)
    device = "cuda" if accelerator == "gpu" else "cpu"

    def cache_epoch(group: int) -> float:
        return steps.lightning_epoch(steps.make_module(channels_last=True, inputs="embeddings", steps_per_call=group, device=device),
                                     steps.embedding_data(samples, batch=batch, steps_per_call=group, device=device),
                                     precision, accelerator, epochs=3)

    cached, grouped = cache_epoch(1), cache_epoch(16)
    # filling the cache: one backbone pass per stored view (4 positions per clip), once for all of a cell's seeds
    module = steps.make_module(channels_last=True, device=device)
    x, _ = steps.images(samples, device)
    amp = torch.bfloat16 if precision.startswith("bf16") else None
    steps.embed_pass(module, x[:2], amp)  # warm-up
    t = time.perf_counter()
    for lo in range(0, samples, batch):
        steps.embed_pass(module, x[lo : lo + batch], amp)
    if device == "cuda":
        torch.cuda.synchronize()
    fill = time.perf_counter() - t
    return {"samples": samples, "full_epoch_s": full, "cache_epoch_s": cached, "ratio": full / cached,
            "full_samples_per_s": samples / full, "cache_samples_per_s": samples / cached,
            "cache_16_steps_per_call_s": grouped, "ratio_16_steps_per_call": full / grouped,
            "cache_fill_s": fill, "cache_fill_views_per_s": 4 * samples / fill, "fill_in_full_epochs": fill / full,
            "break_even_epochs": fill / (full - min(cached, grouped))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    res = {"cpu": measure(args.samples, "cpu")}
    rows = [
        (f"CPU full path, {args.samples} samples", f"{res['cpu']['full_epoch_s']:.2f} s/epoch"),
        ("CPU from the cache", f"{res['cpu']['cache_epoch_s']:.3f} s/epoch   {res['cpu']['ratio']:.0f}x faster"),
        ("  16 steps per Lightning step", f"{res['cpu']['cache_16_steps_per_call_s']:.3f} s/epoch   "
                                         f"{res['cpu']['ratio_16_steps_per_call']:.0f}x faster"),
        ("filling the cache, 4 views per clip", f"{res['cpu']['cache_fill_s']:.2f} s = "
                                                 f"{res['cpu']['fill_in_full_epochs']:.2f} full-path epochs "
                                                 f"({res['cpu']['cache_fill_views_per_s']:.1f} views/s); pays back "
                                                 f"after {res['cpu']['break_even_epochs']:.1f} epochs"),
    ]
    if torch.cuda.is_available():
        g = res["gpu"] = measure(max(args.samples, 4096), "gpu")
        rows += [
            (f"GPU full path, {g['samples']} samples", f"{g['full_epoch_s']:.2f} s/epoch"),
            ("GPU from the cache", f"{g['cache_epoch_s']:.3f} s/epoch   {g['ratio']:.0f}x faster"),
            ("  16 steps per Lightning step", f"{g['cache_16_steps_per_call_s']:.3f} s/epoch   {g['ratio_16_steps_per_call']:.0f}x faster"),
        ]
    table("head-training epoch: embedding cache vs full path, Lightning, bf16 + channels-last (measured)", rows,
          "target: >= 20x")
    save({"head_epoch": res}, args.json)
    return res


if __name__ == "__main__":
    main()
