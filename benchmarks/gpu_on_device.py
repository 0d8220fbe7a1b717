"""``data.on_device`` on a GPU: the split held on the device (batches cut there) against host memory (a pinned
copy per batch). Same random TAU-sized images, same model; prints the seconds of one training epoch of each
and their ratio, and checks where the tensors ended up.

    python benchmarks/gpu_on_device.py [--clips 8640] [--backbone small_cnn|vgg16]
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch

from asc.data.clips import ClipBank
from asc.data.datamodule import ClipBatches, DataConfig, SceneDataModule
from asc.data.features import FeatureSpec
from asc.model.module import SceneClassifier


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.start)


def epoch_seconds(images: torch.Tensor, labels: torch.Tensor, on_device: bool, backbone: str, size: int,
                  accelerator: str = "gpu") -> float:
    spec = FeatureSpec()
    dm = SceneDataModule(DataConfig(root="unused", on_device=on_device, batch_size=32), spec, window=5.0,
                         progress=False)
    dm._prepared = True
    bank = ClipBank.from_images(list(images.numpy()), labels.tolist(), images.shape[2])
    dm._parts = {p: ClipBatches(bank, train=p == "train") for p in ("train", "val", "test")}
    dm.class_names = [str(i) for i in range(10)]
    model = {"backbone": backbone, "pretrained": False, "freeze": backbone == "vgg16", "hidden": [512], "dropout": 0.5}
    module = SceneClassifier(dm.class_names, model, views=dict(window_frames=spec.window_frames(5.0), size=size, mask=0.1),
                             clip=dict(frames=images.shape[2], seconds=10.0, pad="none"))
    timer = EpochTimer()
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer])
    trainer.fit(module, datamodule=dm)
    expected = on_device and trainer.strategy.root_device.type == "cuda"
    assert dm.bank("train").images.is_cuda == expected, "tensors not where data.on_device says"
    return timer.seconds[-1]  # the second epoch: warm


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=8640, help="training images (TAU paper split: 8640)")
    p.add_argument("--backbone", default="small_cnn")
    p.add_argument("--accelerator", default="gpu")
    a = p.parse_args()
    torch.manual_seed(0)
    images = torch.randint(0, 256, (a.clips, 256, 469), dtype=torch.uint8)
    labels = torch.randint(0, 10, (a.clips,))
    size = 224 if a.backbone == "vgg16" else 128
    host = epoch_seconds(images, labels, False, a.backbone, size, a.accelerator)
    dev = epoch_seconds(images, labels, True, a.backbone, size, a.accelerator)
    name = torch.cuda.get_device_name() if a.accelerator == "gpu" else a.accelerator
    print(f"{name}: {a.clips} images [256, 469] uint8, {a.backbone} at {size}px, batch 32: "
          f"epoch {host:.2f} s from host memory, {dev:.2f} s on the device; ratio {host / dev:.2f}x")


if __name__ == "__main__":
    main()
