"""Frozen backbones side by side: forward time per 224 x 224 image, parameters, FLOPs, and the embedding cache's
fill rate (network inputs per second, from uint8 spectrogram images to stored outputs).

    .venv/bin/python benchmarks/backbones.py [--threads 2] [--batch 32] [--rounds 5] [--json out.json]

fp32, ImageNet weights where they are at hand (EfficientNet-Lite0's ship with its package; VGG16 untrained when
its file is not in the torch hub cache: the cost is the same). Medians over ``--rounds``, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from asc.data.augment import ViewSpec
from asc.data.clips import ClipBank
from asc.model.embeddings import EmbeddingCacheConfig, build_or_load
from asc.model.networks import SceneNet, weights_file

BACKBONES = ("efficientnet_lite0", "vgg16")


def median_time(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build(name: str) -> tuple[SceneNet, bool]:
    """The backbone with its ImageNet weights if they are on this machine (no download is tried)."""
    pretrained = name == "efficientnet_lite0" or weights_file(name).is_file()
    return SceneNet(n_classes=10, backbone=name, pretrained=pretrained).eval(), pretrained


def measure(name: str, batch: int, rounds: int, clips: int) -> dict:
    net, pretrained = build(name)
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        forward = median_time(lambda: net.backbone(x), rounds)
        with FlopCounterMode(display=False) as counter:
            net.backbone(x[:1])
    # the cache as a run fills it: 4 positions x 2 masks per training clip, the centre window of val/test clips
    g = torch.Generator().manual_seed(0)
    banks = {p: ClipBank.from_images(list(torch.randint(0, 256, (clips, 256, 469), dtype=torch.uint8, generator=g).numpy()),
                                     [0] * clips, 469) for p in ("train", "val", "test")}
    cfg = EmbeddingCacheConfig(enabled=True, positions=4, masks=2, batch_size=64)
    spec = ViewSpec.for_clip(469, 5.0, 1024 / 48_000, crop="reference", band="reference", mask=0.1)
    views = clips * (cfg.views(0.1) + 2)

    def fill() -> None:
        with tempfile.TemporaryDirectory() as root:
            build_or_load(net, banks, cfg, spec, root=root, spec_key="bench", backbone=name)

    t0 = time.perf_counter()
    fill()
    fill_s = time.perf_counter() - t0
    return {
        "backbone": name, "pretrained": pretrained,
        "params": sum(p.numel() for p in net.backbone.parameters()),
        "gflops_per_image": counter.get_total_flops() / 1e9,
        "forward_ms_per_image": 1000 * forward / batch,
        "cache_fill_views_per_s": views / fill_s, "cache_views": views,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clips", type=int, default=8, help="clips per part for the cache fill")
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = [measure(name, a.batch, a.rounds, a.clips) for name in BACKBONES]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {a.threads} threads, batch {a.batch}, fp32")
    print(f"{'backbone':<20}{'params':>12}{'GFLOPs':>9}{'ms/image':>10}{'cache views/s':>15}")
    for r in rows:
        print(f"{r['backbone']:<20}{r['params']:>12,}{r['gflops_per_image']:>9.2f}{r['forward_ms_per_image']:>10.1f}"
              f"{r['cache_fill_views_per_s']:>15.1f}")
    a_, b_ = rows
    print(f"{b_['backbone']} / {a_['backbone']}: {b_['gflops_per_image'] / a_['gflops_per_image']:.1f}x the FLOPs, "
          f"{b_['forward_ms_per_image'] / a_['forward_ms_per_image']:.1f}x the time, "
          f"{a_['cache_fill_views_per_s'] / b_['cache_fill_views_per_s']:.1f}x the cache fill rate of the former")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "batch": a.batch, "rounds": a.rounds, "argv": sys.argv, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
