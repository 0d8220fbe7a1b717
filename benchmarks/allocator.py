"""The embedding-cache fill against the same network in a tight loop, and a full-path training step, with the
process's user and system time beside each rate: glibc's allocator as asc sets it (asc/allocator.py) and, in a child
process, as glibc leaves it (``ASC_MALLOC=default``). Ratios in one run.

    .venv/bin/python -m benchmarks.allocator [--backbones efficientnet_lite0 vgg16] [--seconds 6] [--json out.json]

The fill goes through ``build_or_load`` from uint8 spectrogram images to stored outputs (views made on the fly, the
cache's batch size), the tight loop is ``backbone(x)`` on one fixed batch under ``torch.no_grad``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from asc import allocator
from asc.data.augment import ViewSpec
from asc.data.clips import ClipBank
from asc.model.embeddings import EmbeddingCacheConfig, build_or_load
from asc.model.networks import SceneNet, weights_file


def timed(fn, units: int, seconds: float) -> dict:
    """Rate of ``fn`` (``units`` per call) over at least ``seconds`` after one warm-up call, with CPU times."""
    fn()
    r0, t0, n = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or n == 0:
        fn()
        n += units
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {"per_s": n / wall, "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime, "wall_s": wall}


def measure(name: str, seconds: float, batch: int) -> dict:
    pretrained = name == "efficientnet_lite0" or weights_file(name).is_file()
    net = SceneNet(n_classes=10, backbone=name, pretrained=pretrained).eval()
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        loop = timed(lambda: net.backbone(x), batch, seconds)
    clips = max(2, round(loop["per_s"] * seconds / 10))  # 4 positions x 2 masks + 2 evaluation views per clip
    g = torch.Generator().manual_seed(0)
    banks = {p: ClipBank.from_images(list(torch.randint(0, 256, (clips, 256, 469), dtype=torch.uint8, generator=g).numpy()),
                                     [0] * clips, 469) for p in ("train", "val", "test")}
    cfg = EmbeddingCacheConfig(enabled=True, positions=4, masks=2, batch_size=batch)
    spec = ViewSpec.for_clip(469, 5.0, 1024 / 48_000, crop="reference", band="reference", mask=0.1)

    def fill() -> None:
        with tempfile.TemporaryDirectory() as root:
            build_or_load(net, banks, cfg, spec, root=root, spec_key="bench", backbone=name)

    fill_r = timed(fill, clips * (cfg.views(0.1) + 2), 0)
    # the full path's training step (fine-tuning): forward and backward through the whole network, batch 16
    train_net = SceneNet(n_classes=10, backbone=name, pretrained=pretrained, freeze=False).train()
    xb, yb = torch.randn(16, 3, 224, 224), torch.randint(0, 10, (16,))

    def step() -> None:
        F.cross_entropy(train_net(xb), yb).backward()

    train = timed(step, 16, seconds)
    return {"backbone": name, "loop": loop, "fill": fill_r, "train_step": train, "fill_vs_loop": fill_r["per_s"] / loop["per_s"]}


def line(label: str, r: dict) -> str:
    return f"  {label:<22}{r['per_s']:8.1f} /s   user {r['user_s']:6.1f} s   sys {r['sys_s']:6.1f} s"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "vgg16"])
    p.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    p.add_argument("--batch", type=int, default=64, help="tight loop and cache fill batch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = [measure(b, a.seconds, a.batch) for b in a.backbones]
    if a.child:
        print(json.dumps(rows))
        return {"rows": rows}
    tuned = os.environ.get("ASC_MALLOC", "") != "default"
    args = [sys.executable, "-m", "benchmarks.allocator", "--child", "--seconds", str(a.seconds), "--batch", str(a.batch),
            "--threads", str(a.threads), "--backbones", *a.backbones]
    out = subprocess.run(args, env={**os.environ, "ASC_MALLOC": "default"}, capture_output=True, text=True, check=True)
    before = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"allocator: asc's thresholds {'set' if tuned else 'NOT set (ASC_MALLOC=default)'} "
          f"(mmap {allocator.MMAP_THRESHOLD >> 20} MiB, trim never) vs glibc's defaults in a child process")
    for r, b in zip(rows, before, strict=True):
        print(f"{r['backbone']} (batch {a.batch}, {a.threads} threads)")
        for key, label in (("loop", "tight loop, views"), ("fill", "cache fill, views"), ("train_step", "train step, samples")):
            print(line(label, r[key]) + f"   | glibc default {b[key]['per_s']:7.1f} /s, sys {b[key]['sys_s']:5.1f} s"
                  f"   -> {r[key]['per_s'] / b[key]['per_s']:.2f}x")
        print(f"  fill / tight loop: {r['fill_vs_loop']:.2f} (glibc default: fill / its own loop {b['fill_vs_loop']:.2f}, "
              f"fill / asc's loop {b['fill']['per_s'] / r['loop']['per_s']:.2f})")
    res = {"rows": rows, "glibc_default": before}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
