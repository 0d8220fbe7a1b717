"""What the paper's grid costs: measured step times of the paper's setup, projected to its 27 runs.

    python benchmarks/grid_cost.py                                   # CPU, fp32
    python benchmarks/grid_cost.py --device cuda --precision 32-true bf16-mixed

Measures, with the project's own code: a training step (batched augmentation of uint8 images [32, 256, 469]
+ VGG16 forward + backward through the 512-unit head + Adam), an evaluation step (centre window, no grad) and
the constant-Q image of one 10 s clip at 48 kHz. VGG16 is built without its ImageNet weights (the same compute).
Projects them onto TAU 2019 with the paper's split (8640 train / 2880 val / 2880 test clips, batch 32) and
27 runs of E epochs (early stopping with patience 10 stops after 11 epochs at the earliest).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

TRAIN, VAL, TEST, CLIPS, RUNS, BATCH = 8640, 2880, 2880, 14400, 27, 32
HEIGHT, FRAMES = 256, 469  # the paper's image of a 10 s clip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(device: torch.device, precision: str, steps: int, warmup: int, window: float = 5.0) -> tuple[float, float]:
    """Seconds per training step and per evaluation step (median over ``steps``)."""
    from asc import augment
    from asc.features import FeatureSpec
    from asc.model import SceneNet

    net = SceneNet(n_classes=10, backbone="vgg16", pretrained=False, freeze=True, hidden=[512], dropout=0.5).to(device)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    width = FeatureSpec().window_frames(window)
    images = torch.randint(0, 256, (BATCH, HEIGHT, FRAMES), dtype=torch.uint8).to(device)
    labels = torch.randint(0, 10, (BATCH,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def train_step() -> None:
        net.train()
        x = augment.train_batch(images, width, 224, 0.1)
        with autocast:
            loss = torch.nn.functional.cross_entropy(net(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step() -> None:
        net.eval()
        x = augment.eval_batch(images, width, 224, "centre").flatten(0, 1)
        with autocast:
            net(x).float().softmax(-1)

    out = []
    for step in (train_step, eval_step):
        times = []
        for i in range(warmup + steps):
            sync(device)
            t = time.perf_counter()
            step()
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
        out.append(float(np.median(times)))
    return out[0], out[1]


def time_cqt(clips: int) -> float:
    """Seconds of one core per 10 s clip (48 kHz mono) for the paper's constant-Q image."""
    from asc.features import FeatureSpec, image_from_audio

    spec = FeatureSpec()
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(10 * spec.sample_rate)).astype(np.float32)
    image_from_audio(y, spec)  # librosa's filter bank is built (and cached) on first use
    t = time.perf_counter()
    for _ in range(clips):
        image = image_from_audio(y, spec)
    assert image.shape == (HEIGHT, FRAMES), image.shape
    return (time.perf_counter() - t) / clips


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", nargs="+", default=["32-true"], choices=["32-true", "bf16-mixed"])
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--epochs", type=int, nargs="+", default=[11, 30], help="epochs per run for the projection")
    p.add_argument("--cqt-clips", type=int, default=3, help="clips for the feature timing (0: skip)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="feature extraction processes")
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    feature_s = 0.0
    if args.cqt_clips:
        per_clip = time_cqt(args.cqt_clips)
        feature_s = CLIPS * per_clip / args.workers
        print(f"constant-Q image: {per_clip:.2f} s per 10 s clip and core -> {CLIPS} clips on {args.workers} "
              f"processes: {hours(feature_s)} (once; cached for every run)")
    for precision in args.precision:
        train_s, eval_s = time_steps(device, precision, args.steps, args.warmup)
        epoch = math.ceil(TRAIN / BATCH) * train_s + math.ceil(VAL / BATCH) * eval_s
        test = math.ceil(TEST / BATCH) * eval_s
        print(f"[{precision}] train step {1000 * train_s:.0f} ms, eval step {1000 * eval_s:.0f} ms (batch {BATCH}) "
              f"-> epoch {hours(epoch)}")
        for e in args.epochs:
            run = e * epoch + test
            print(f"  {e} epochs: one run {hours(run)}, the grid ({RUNS} runs, one after another) {hours(RUNS * run)}"
                  f" + features {hours(feature_s)}")


if __name__ == "__main__":
    main()
