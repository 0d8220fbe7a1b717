"""A full-path training step in samples per second: fp32 against bf16 autocast with channels-last.

The step is the real one: uint8 spectrograms on the device -> batched augmentation -> frozen VGG16 (random
weights, the same cost as ImageNet's) -> 512-unit head -> cross-entropy -> backward -> Adam. On the CPU,
and on the GPU when there is one. bf16 needs hardware support for speed (AVX-512 BF16/AMX on CPUs,
tensor cores on GPUs); elsewhere it runs, slowly.

    python -m benchmarks.train_step [--batch 8] [--rounds 3]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks import steps
from benchmarks.common import interleaved, save, table


def measure(device: str, batch: int, rounds: int, size: int = 224, backbone: str = "vgg16") -> dict[str, float]:
    """Samples/s of fp32 and of bf16 + channels-last training steps on ``device``."""
    x, y = steps.images(batch, device)
    runs = {}
    for name, cl, amp in (("fp32", False, None), ("bf16_cl", True, torch.bfloat16)):
        m = steps.make_module(backbone, size, channels_last=cl, device=device)
        runs[name] = (m, steps.optimiser(m), amp)
    fns = {name: (lambda m=m, o=o, a=a: steps.full_step(m, o, x, y, a)) for name, (m, o, a) in runs.items()}
    t = interleaved(fns, rounds=rounds, device=device)
    return {f"{name}_samples_per_s": batch / s for name, s in t.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="CPU batch (the GPU uses --gpu-batch)")
    p.add_argument("--gpu-batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--json")
    args = p.parse_args(argv)

    res = {"cpu": measure("cpu", args.batch, args.rounds, args.size, args.backbone), "batch": args.batch}
    c = res["cpu"]
    rows = [
        (f"CPU fp32, batch {args.batch}", f"{c['fp32_samples_per_s']:.2f} samples/s"),
        ("CPU bf16 + channels-last", f"{c['bf16_cl_samples_per_s']:.2f} samples/s   "
                                      f"{c['bf16_cl_samples_per_s'] / c['fp32_samples_per_s']:.2f}x fp32"),
    ]
    if torch.cuda.is_available():
        g = res["gpu"] = measure("cuda", args.gpu_batch, max(args.rounds, 10), args.size, args.backbone)
        rows += [
            (f"GPU fp32 (TF32 convs), batch {args.gpu_batch}", f"{g['fp32_samples_per_s']:.0f} samples/s"),
            ("GPU bf16 + channels-last", f"{g['bf16_cl_samples_per_s']:.0f} samples/s   "
                                         f"{g['bf16_cl_samples_per_s'] / g['fp32_samples_per_s']:.2f}x fp32"),
        ]
    table(f"training step, full path, {args.backbone} at {args.size}x{args.size} (measured)", rows,
          "GPU target: >= 2000 samples/s with bf16 + channels-last")
    save({"train_step": res}, args.json)
    return res


if __name__ == "__main__":
    main()
