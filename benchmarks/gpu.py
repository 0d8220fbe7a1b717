"""Everything the GPU is measured for, in one run (the device machine is lent by the minute).

Needs only torch, torchvision, lightning, torchmetrics and numpy (no Hydra, MLflow or librosa), so it runs
on a bare GPU image from the repository root:

    python -m benchmarks.gpu --json gpu.json          # on the GPU machine
    python -m benchmarks.gpu --tiny                   # a smoke test anywhere (tiny sizes, CPU if no GPU)

Measured, all at 224 x 224 with frozen VGG16 (random weights: ImageNet's cost the same) + the 512-unit head:
training steps fp32 vs bf16 + channels-last (+ torch.compile), whole Lightning epochs on the full path and
from the embedding cache, the evaluation and cache-filling passes, batched augmentation against per-sample
PIL. Then the grid projection from those rates (``benchmarks.grid.project``).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import torch

from benchmarks import steps
from benchmarks.common import interleaved, machine, save, table


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny sizes: check that the script runs")
    p.add_argument("--budget", type=float, default=240, help="seconds; the optional parts are skipped past it")
    p.add_argument("--json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    accel = "gpu" if dev == "cuda" else "cpu"
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    tiny = args.tiny
    size = 64 if tiny else 224
    backbone = "small_cnn" if tiny else "vgg16"
    B = 4 if tiny else 32
    res: dict = {"machine": machine(), "device": dev, "size": size, "backbone": backbone}
    print(res["machine"], flush=True)

    def module(**kw):
        return steps.make_module(backbone, size, device=dev, **kw)

    # 1. training steps, samples/s (raw loop: augmentation + backbone + head + Adam)
    x, y = steps.images(B, dev)
    runs = {}
    for name, cl, amp in (("fp32", False, None), ("bf16", False, torch.bfloat16), ("bf16_cl", True, torch.bfloat16)):
        m = module(channels_last=cl)
        runs[name] = (m, steps.optimiser(m), amp)
    t = interleaved({n: (lambda m=m, o=o, a=a: steps.full_step(m, o, x, y, a)) for n, (m, o, a) in runs.items()},
                    rounds=3 if tiny else 20, warmup=2, device=dev)
    res["step_batch32"] = {n: B / s for n, s in t.items()}
    xb, yb = steps.images(4 * B, dev)
    m, o, a = runs["bf16_cl"]
    tb = interleaved({"bf16_cl": lambda: steps.full_step(m, o, xb, yb, a)}, rounds=3 if tiny else 10, warmup=2, device=dev)
    res["step_batch128_bf16_cl"] = 4 * B / tb["bf16_cl"]
    del runs
    print("steps", res["step_batch32"], res["step_batch128_bf16_cl"], flush=True)

    # 2. evaluation / cache-filling passes (forward only), bf16 + channels-last
    m = module(channels_last=True)
    xe, _ = steps.images(16 if tiny else 256, dev)
    te = interleaved({"eval": lambda: steps.eval_pass(m, xe, torch.bfloat16),
                      "embed": lambda: steps.embed_pass(m, xe[: len(xe) // 4], torch.bfloat16)},
                     rounds=3 if tiny else 10, device=dev)
    res["eval_samples_per_s"] = len(xe) / te["eval"]
    res["embed_views_per_s"] = len(xe) / te["embed"]  # len/4 clips x 4 views
    print("eval/embed", res["eval_samples_per_s"], res["embed_views_per_s"], flush=True)

    # 3. Lightning epochs: full path vs cache, same samples
    n = 64 if tiny else 8640
    full = steps.lightning_epoch(module(channels_last=True), steps.image_data(n, B), "bf16-mixed", accel)
    cached = steps.lightning_epoch(steps.make_module(backbone, size, channels_last=True, inputs="embeddings"),
                                   steps.embedding_data(n, dim=25088 if backbone == "vgg16" else 4 * 128, batch=B, device=dev),
                                   "bf16-mixed", accel, epochs=3)
    dim = 25088 if backbone == "vgg16" else 4 * 128
    grouped = steps.lightning_epoch(
        steps.make_module(backbone, size, channels_last=True, inputs="embeddings", steps_per_call=16),
        steps.embedding_data(n, dim=dim, batch=B, device=dev, steps_per_call=16), "bf16-mixed", accel, epochs=3)
    full32 = steps.lightning_epoch(module(), steps.image_data(n // 4, B), "32-true", accel)
    head = steps.make_module(backbone, size, inputs="embeddings", device=dev).eval()
    bank = torch.empty(1024, 1, 25088 if backbone == "vgg16" else 4 * 128, dtype=torch.float16, device=dev).uniform_()
    th = interleaved({"head_eval": torch.no_grad()(lambda: head.predict_proba(bank.float()))}, rounds=10, device=dev)
    res["head_eval_samples_per_s"] = len(bank) / th["head_eval"]
    res["epoch"] = {"samples": n, "full_bf16_cl_s": full, "cache_s": cached, "ratio": full / cached,
                    "full_samples_per_s": n / full, "cache_samples_per_s": n / cached,
                    "cache_16_steps_per_call_s": grouped, "ratio_16_steps_per_call": full / grouped,
                    "cache_16_steps_per_call_samples_per_s": n / grouped,
                    "full_fp32_samples_per_s": (n // 4) / full32}
    print("epochs", res["epoch"], flush=True)

    # 4. augmentation: batched on the GPU vs per-sample PIL on this machine's CPU (one thread)
    from benchmarks.augmentation import FRAMES, MASK, RESIZED, SIZE, WIDTH, pil_sample

    imgs, _ = steps.images(256 if not tiny else 16, dev)
    arrays = list(imgs.cpu().numpy()[:64])
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tp = time.perf_counter()
    torch.stack([pil_sample(a, rng) for a in arrays])
    pil_us = (time.perf_counter() - tp) / len(arrays) * 1e6
    torch.set_num_threads(threads)
    from asc.data import augment

    ta = interleaved({"gpu": lambda: augment.train_batch(imgs, WIDTH, SIZE, MASK, crop="reference", resized=RESIZED,
                                                         band="reference")}, rounds=10, device=dev)
    res["augment"] = {"pil_us_per_sample": pil_us, "batched_us_per_sample": ta["gpu"] / len(imgs) * 1e6,
                      "ratio": pil_us / (ta["gpu"] / len(imgs) * 1e6)}
    assert FRAMES == steps.FRAMES
    print("augment", res["augment"], flush=True)

    # 5. torch.compile (optional: compiling costs time of its own)
    if time.perf_counter() - t0 < args.budget:
        mc = module(channels_last=True, compile=True)
        oc = steps.optimiser(mc)
        tc = time.perf_counter()
        steps.full_step(mc, oc, x, y, torch.bfloat16)
        steps.full_step(mc, oc, x, y, torch.bfloat16)
        res["compile_s"] = time.perf_counter() - tc
        m, o = module(channels_last=True), None
        o = steps.optimiser(m)
        tcc = interleaved({"eager": lambda: steps.full_step(m, o, x, y, torch.bfloat16),
                           "compiled": lambda: steps.full_step(mc, oc, x, y, torch.bfloat16)},
                          rounds=3 if tiny else 20, warmup=2, device=dev)
        res["compile"] = {k: B / v for k, v in tcc.items()}
        print("compile", res["compile_s"], res["compile"], flush=True)
    else:
        res["compile"] = "skipped: past the time budget"

    # 6. the grid, projected from the measured rates
    from benchmarks.grid import print_projection

    res["rates"] = {"train": res["epoch"]["full_samples_per_s"], "eval": res["eval_samples_per_s"],
                    "embed": res["embed_views_per_s"],
                    "head": res["epoch"]["cache_16_steps_per_call_samples_per_s"],  # the default steps_per_call
                    "head_eval": res["head_eval_samples_per_s"]}
    res["grid"] = print_projection(f"{res['machine'].get('gpu', dev)}", res["rates"])
    s = res["step_batch32"]
    table(f"GPU benchmarks on {res['machine'].get('gpu', dev)} (measured)", [
        ("train step fp32 (TF32 convs), batch 32", f"{s['fp32']:.0f} samples/s"),
        ("train step bf16, batch 32", f"{s['bf16']:.0f} samples/s"),
        ("train step bf16 + channels-last, batch 32", f"{s['bf16_cl']:.0f} samples/s  {s['bf16_cl'] / s['fp32']:.2f}x fp32"),
        ("  same, batch 128", f"{res['step_batch128_bf16_cl']:.0f} samples/s"),
        ("Lightning epoch, full path bf16 + CL", f"{res['epoch']['full_samples_per_s']:.0f} samples/s"),
        ("Lightning epoch, full path fp32", f"{res['epoch']['full_fp32_samples_per_s']:.0f} samples/s"),
        ("Lightning epoch from the cache", f"{res['epoch']['cache_samples_per_s']:.0f} samples/s  {res['epoch']['ratio']:.1f}x full"),
        ("  same, 16 steps per Lightning step", f"{res['epoch']['cache_16_steps_per_call_samples_per_s']:.0f} samples/s  "
                                                f"{res['epoch']['ratio_16_steps_per_call']:.1f}x full"),
        ("eval pass / cache fill (bf16 + CL)", f"{res['eval_samples_per_s']:.0f} / {res['embed_views_per_s']:.0f} samples/s"),
        ("augmentation GPU vs PIL (1 CPU thread)", f"{res['augment']['batched_us_per_sample']:.2f} vs {res['augment']['pil_us_per_sample']:.0f} us/sample, "
                                                    f"{res['augment']['ratio']:.0f}x"),
        ("torch.compile", str(res["compile"]) if isinstance(res["compile"], str) else
         f"{res['compile']['compiled']:.0f} vs eager {res['compile']['eager']:.0f} samples/s (compile {res['compile_s']:.0f} s)"),
    ], f"total {time.perf_counter() - t0:.0f} s; targets: >= 2000 samples/s full path, grid <= 30 min with the cache")
    save(res, args.json)
    return res


if __name__ == "__main__":
    main()
