"""Training-input augmentation: the batched tensor pipeline (``asc.data.augment.train_batch``) against the reference's
per-sample PIL pipeline, on the CPU.

Both take uint8 spectrogram images ``[256, 469]`` (10 s) and produce the network input ``[3, 224, 224]`` for a
"5 s" window with a band mask of at most 10 %. The PIL path is the reference's: ``Image.resize`` to 448 px wide
(bicubic), ``ImageOps.fit`` to 224 x 224 at a uniform random horizontal position (bicubic), a band by the
reference's rule filled with mid-grey, ``to_tensor`` + ImageNet normalisation. The batched path does the same
(``model.crop=reference``, ``model.band=reference``) as integer tensor operations that reproduce PIL's 8-bit
resampling exactly; a row checks that on the benchmark's own samples (same random numbers). A last row times the
``exact`` crop (exactly 5 s, one float resize, torch's bicubic: the default before the faithful preset). The
per-sample path runs with one torch thread (as a DataLoader worker does: on a thread pool its tiny operations only
wait for each other); the batched path uses all of them, and one.

    python -m benchmarks.augmentation [--samples 256] [--batch 32]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from asc.data import augment
from benchmarks.common import interleaved, save, table

H, FRAMES, WIDTH, SIZE, MASK = 256, 469, 234, 224, 0.1
WINDOW = 5.0  # seconds: the reference resizes to 224 / (5 / 10) = 448 px
RESIZED = augment.reference_width(FRAMES, WINDOW, 1024 / 48_000)


def pil_view(image: np.ndarray, u: tuple[float, float, float]) -> np.ndarray:
    """The reference's training view before normalisation, ``uint8 [SIZE, SIZE]``, from three uniforms."""
    from PIL import Image, ImageOps

    wide = Image.fromarray(image).convert("RGB").resize((RESIZED, H), Image.BICUBIC)
    a = np.array(ImageOps.fit(wide, (SIZE, SIZE), Image.BICUBIC, centering=(u[0], 0.5)))
    if MASK > 0:
        h = SIZE * MASK * u[1]
        ymin = math.floor((SIZE - h) * u[2])
        a[ymin : math.floor(h + ymin) + 1] = int(augment.MASK_FILL)
    return a


def pil_sample(image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """One sample, the per-sample way (PIL + torchvision.transforms.functional): ``[3, SIZE, SIZE]``."""
    import torchvision.transforms.functional as TF

    a = pil_view(image, tuple(rng.random(3)))
    return TF.normalize(TF.to_tensor(a), augment.IMAGENET_MEAN, augment.IMAGENET_STD)


def agreement(images: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """Mean and maximum ``|batched - PIL|`` in grey levels over ``images`` (the same random numbers for both)."""
    u = torch.from_numpy(np.random.default_rng(seed).random((3, len(images))))
    x = augment.train_batch(images, WIDTH, SIZE, MASK, crop="reference", resized=RESIZED, band="reference", u=u)
    ours = (x[:, 0].double() * augment.IMAGENET_STD[0] + augment.IMAGENET_MEAN[0]) * 255
    ref = np.stack([pil_view(img, tuple(u[:, i].tolist()))[..., 0] for i, img in enumerate(images.numpy())])
    d = np.abs(ours.numpy() - ref)
    return float(d.mean()), float(d.max())


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

    def one_thread(fn) -> None:
        torch.set_num_threads(1)  # as in a DataLoader worker: tiny per-sample ops only lose on a thread pool
        try:
            fn()
        finally:
            torch.set_num_threads(threads)

    def pil() -> None:
        for i in range(0, len(arrays), args.batch):
            torch.stack([pil_sample(a, rng) for a in arrays[i : i + args.batch]])

    def reference() -> None:
        for b in batches:
            augment.train_batch(b, WIDTH, SIZE, MASK, crop="reference", resized=RESIZED, band="reference")

    def exact() -> None:
        for b in batches:
            augment.train_batch(b, WIDTH, SIZE, MASK)

    fns = {"pil": lambda: one_thread(pil), "reference": reference, "reference_1": lambda: one_thread(reference),
           "exact": exact}
    t = interleaved(fns, rounds=args.rounds)
    n = args.samples
    mean_diff, max_diff = agreement(images[: min(n, 64)])
    us = {k: v / n * 1e6 for k, v in t.items()}
    res = {
        "samples": n, "batch": args.batch, "threads": threads, "window_s": WINDOW, "resized_px": RESIZED,
        "pil_us_per_sample": us["pil"],
        "reference_us_per_sample": us["reference"], "reference_1thread_us_per_sample": us["reference_1"],
        "exact_us_per_sample": us["exact"],
        "ratio": us["pil"] / us["reference"], "ratio_1thread": us["pil"] / us["reference_1"],
        "ratio_exact": us["pil"] / us["exact"], "reference_vs_exact": us["reference"] / us["exact"],
        "pil_mean_abs_diff": mean_diff, "pil_max_abs_diff": max_diff,
    }
    rows = [
        ("per-sample PIL (the reference's steps), CPU, 1 thread", f"{us['pil']:.0f} us/sample"),
        (f"batched, crop=reference (PIL exactly), {threads} threads", f"{us['reference']:.0f} us/sample   {res['ratio']:.2f}x PIL"),
        ("batched, crop=reference, 1 thread", f"{us['reference_1']:.0f} us/sample   {res['ratio_1thread']:.2f}x PIL"),
        (f"batched, crop=exact (torch bicubic), {threads} threads", f"{us['exact']:.0f} us/sample   {res['ratio_exact']:.2f}x PIL"),
        ("crop=reference vs PIL, same random numbers", f"mean {mean_diff:.4f}, max {max_diff:.4f} grey levels"),
    ]
    if torch.cuda.is_available():
        gpu = [b.cuda() for b in batches]
        tg = interleaved({"gpu": lambda: [augment.train_batch(b, WIDTH, SIZE, MASK, crop="reference", resized=RESIZED,
                                                              band="reference") for b in gpu]},
                         rounds=args.rounds, device="cuda")
        res["gpu_us_per_sample"] = tg["gpu"] / n * 1e6
        res["ratio_gpu"] = us["pil"] / res["gpu_us_per_sample"]
        rows.append(("batched, crop=reference, GPU", f"{res['gpu_us_per_sample']:.1f} us/sample   {res['ratio_gpu']:.0f}x PIL on CPU"))
    table(f"augmentation: 5 s window ({RESIZED} px, fit 224) + band mask <= 10 % + normalise, {n} samples, "
          f"batch {args.batch} (measured)", rows, "target: batched >= 10x PIL on CPU; PIL's pixels exactly")
    save({"augmentation": res}, args.json)
    return res


if __name__ == "__main__":
    main()
