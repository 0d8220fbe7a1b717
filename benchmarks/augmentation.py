"""Training-input augmentation: batched tensor ops (``asc.data.augment.train_batch``) against a per-sample PIL
pipeline with the same semantics.

Both take uint8 spectrogram images ``[256, 469]`` (10 s) and produce the network input ``[3, 224, 224]``:
a 5 s window at a uniform random position, bicubic resize to 224 x 224, a band of height uniform in
``[0, 0.1 * 224]`` at a uniform position filled with mid-grey, grey copied to 3 channels and ImageNet
normalisation. PIL's bicubic antialiases when it shrinks (256 -> 224 rows), torch's does not: the outputs
differ by that filter, the work is the same. A third row times the batched path as it was before this
benchmark (``F.interpolate`` and a four-step normalisation) to show what the matrix resize and the fused
normalisation gain. The per-sample path runs with one torch thread (as a DataLoader worker does: on a
thread pool its tiny operations only wait for each other); the batched path uses all of them.

    python -m benchmarks.augmentation [--samples 256] [--batch 32]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from asc.data import augment
from benchmarks.common import interleaved, save, table

H, FRAMES, WIDTH, SIZE, MASK = 256, 469, 234, 224, 0.1


def pil_sample(image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """One sample, the per-sample way (PIL + torchvision.transforms.functional)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    start = int(rng.integers(0, FRAMES - WIDTH + 1))
    window = Image.fromarray(image).crop((start, 0, start + WIDTH, H)).resize((SIZE, SIZE), Image.BICUBIC)
    a = np.array(window)
    height = int(rng.integers(0, int(MASK * SIZE) + 1))
    top = int(rng.integers(0, SIZE - height + 1))
    a[top : top + height] = int(augment.MASK_FILL)
    return TF.normalize(TF.to_tensor(Image.fromarray(a).convert("RGB")), augment.IMAGENET_MEAN, augment.IMAGENET_STD)


def previous_batched(x: torch.Tensor) -> torch.Tensor:
    """The batched path before the speed work: torch's bicubic kernel and a four-step normalisation."""
    crops = augment.crop(x, augment.random_offsets(x.shape[0], FRAMES, WIDTH, x.device), WIDTH)
    y = F.interpolate(crops.unsqueeze(1).float(), size=(SIZE, SIZE), mode="bicubic", align_corners=False).squeeze(1).clamp_(0, 255)
    y = augment.band_mask(y, MASK)
    mean = torch.tensor(augment.IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(augment.IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (y.unsqueeze(1) / 255.0 - mean) / std


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--batch", type=int, default=32, help="batch size of the batched path (the paper's: 32)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.samples, H, FRAMES), dtype=torch.uint8)
    arrays = list(images.numpy())
    rng = np.random.default_rng(0)
    batches = list(images.split(args.batch))

    threads = torch.get_num_threads()

    def pil() -> None:
        # one torch thread, as in a DataLoader worker: tiny per-sample ops only lose on a thread pool
        torch.set_num_threads(1)
        for i in range(0, len(arrays), args.batch):
            torch.stack([pil_sample(a, rng) for a in arrays[i : i + args.batch]])
        torch.set_num_threads(threads)

    def one_thread(fn) -> None:
        torch.set_num_threads(1)
        fn()
        torch.set_num_threads(threads)

    fns = {
        "pil": pil,
        "batched": lambda: [augment.train_batch(b, WIDTH, SIZE, MASK) for b in batches],
        "batched_1": lambda: one_thread(lambda: [augment.train_batch(b, WIDTH, SIZE, MASK) for b in batches]),
        "previous": lambda: [previous_batched(b) for b in batches],
    }
    t = interleaved(fns, rounds=args.rounds)
    n = args.samples
    res = {
        "samples": n, "batch": args.batch,
        "pil_us_per_sample": t["pil"] / n * 1e6,
        "batched_us_per_sample": t["batched"] / n * 1e6,
        "batched_1thread_us_per_sample": t["batched_1"] / n * 1e6,
        "previous_us_per_sample": t["previous"] / n * 1e6,
        "threads": threads,
        "ratio": t["pil"] / t["batched"],
        "ratio_1thread": t["pil"] / t["batched_1"],
        "ratio_previous": t["pil"] / t["previous"],
    }
    rows = [
        ("per-sample PIL, CPU, 1 thread", f"{res['pil_us_per_sample']:.0f} us/sample"),
        (f"batched tensors, CPU, {threads} threads", f"{res['batched_us_per_sample']:.0f} us/sample   {res['ratio']:.2f}x PIL"),
        ("batched tensors, CPU, 1 thread", f"{res['batched_1thread_us_per_sample']:.0f} us/sample   {res['ratio_1thread']:.2f}x PIL"),
        ("batched, before (F.interpolate)", f"{res['previous_us_per_sample']:.0f} us/sample   {res['ratio_previous']:.2f}x PIL"),
    ]
    if torch.cuda.is_available():
        gpu = [b.cuda() for b in batches]
        tg = interleaved({"gpu": lambda: [augment.train_batch(b, WIDTH, SIZE, MASK) for b in gpu]}, rounds=args.rounds, device="cuda")
        res["gpu_us_per_sample"] = tg["gpu"] / n * 1e6
        res["ratio_gpu"] = t["pil"] / tg["gpu"]
        rows.append(("batched tensors, GPU", f"{res['gpu_us_per_sample']:.1f} us/sample   {res['ratio_gpu']:.0f}x PIL on CPU"))
    table(f"augmentation: crop 5 s + resize 224 + band mask + normalise, {n} samples, batch {args.batch} (measured)",
          rows, "target: batched >= 10x PIL on CPU")
    save({"augmentation": res}, args.json)
    return res


if __name__ == "__main__":
    main()
