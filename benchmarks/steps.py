"""The per-step work the benchmarks time, written once: a full-path training step, an evaluation pass,
the backbone pass that fills the embedding cache, a head step from the cache, and whole Lightning epochs.

Imports only torch, lightning and the package's model/augmentation modules, so the GPU machine runs it.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from asc.data import augment
from asc.model.embeddings import EmbeddingData, train_starts
from asc.model.module import SceneClassifier

CLASSES = [f"c{i}" for i in range(10)]
HEIGHT, FRAMES, WIDTH = 256, 469, 234  # a 10 s clip, a 5 s window (the paper's best)


def make_module(
    backbone: str = "vgg16", size: int = 224, channels_last: bool = False, compile: bool = False,
    inputs: str = "images", mask: float = 0.0, device: str = "cpu", steps_per_call: int = 1,
) -> SceneClassifier:
    """The paper's network with random weights (same cost as ImageNet's): frozen VGG16 + 512-unit head."""
    model = dict(backbone=backbone, pretrained=False, freeze=True, hidden=(512,), dropout=0.5)
    if backbone == "small_cnn":
        model["hidden"] = (64,)
    views = dict(window_frames=WIDTH, size=size, mask=mask, channels_last=channels_last)
    m = SceneClassifier(CLASSES, model, views=views, clip=dict(frames=FRAMES, seconds=10.0, pad="none"), inputs=inputs,
                        compile=compile, steps_per_call=steps_per_call)
    if compile:
        m.configure_model()
    return m.to(device).train()


def autocast(device: str, amp: torch.dtype | None):
    return torch.autocast(torch.device(device).type, dtype=amp) if amp is not None else nullcontext()


def images(n: int, device: str = "cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, HEIGHT, FRAMES), dtype=torch.uint8, generator=g)
    return x.to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def full_step(module: SceneClassifier, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None) -> None:
    """One training step on the full path: augment on the device, frozen backbone, head forward/backward, Adam."""
    inputs = module.views.train(x, module.net.norm)
    with autocast(str(x.device), amp):
        logits = module(inputs)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@torch.no_grad()
def eval_pass(module: SceneClassifier, x: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
    """Class probabilities for the centre windows of ``x`` (what validation and test run)."""
    with autocast(str(x.device), amp):
        return module.predict_proba(module.views.eval(x, module.net.norm))


@torch.no_grad()
def embed_pass(module: SceneClassifier, x: torch.Tensor, amp: torch.dtype | None, positions: int = 4) -> torch.Tensor:
    """Backbone outputs of ``positions`` fixed windows of each clip (filling the embedding cache)."""
    views = module.views
    windows = views.views_at(x, train_starts(x.shape[2], views.window_frames, positions, views.crop))  # [B, K, S, S]
    inputs = augment.to_network(windows.flatten(0, 1), views.channels_last, module.net.norm)
    with autocast(str(x.device), amp):
        return module.net.embed(inputs)


def head_step(module: SceneClassifier, opt: torch.optim.Optimizer, e: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None) -> None:
    with autocast(str(e.device), amp):
        logits = module(e.float())
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def optimiser(module: SceneClassifier) -> torch.optim.Optimizer:
    return module.configure_optimizers()


class _ImageLoader:
    """Training batches ``(clips [B, H, W], labels [B])`` cut from tensors on one device, shuffled."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y)).to(self.x.device)
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            yield self.x[idx], self.y[idx]


class _ImageData(EmbeddingData):
    """In-memory spectrogram clips served like the embedding banks (one gather per batch, on the device)."""

    def _loader(self, part: str, shuffle: bool) -> _ImageLoader:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        return _ImageLoader(self.banks[part].to(device), self.labels[part].to(device), self.batch_size)


def lightning_epoch(module: SceneClassifier, data, precision: str, accelerator: str = "auto", epochs: int = 1) -> float:
    """Seconds of the last of ``epochs`` Lightning training epochs (no validation, logging or checkpoints).

    Later epochs leave out what a run pays once (the optimiser's state, the first batch's allocations).
    """
    import lightning as L

    class EpochTimer(L.Callback):
        seconds = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            EpochTimer.seconds = time.perf_counter() - self.t

    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=epochs, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, precision=precision, accelerator=accelerator, devices=1, callbacks=[timer],
    )
    trainer.fit(module, datamodule=data)
    return EpochTimer.seconds


def image_data(n: int, batch: int = 32) -> _ImageData:
    x, y = images(n)
    return _ImageData({"train": x, "val": x[:1], "test": x[:1]}, {"train": y, "val": y[:1], "test": y[:1]}, batch)


def embedding_data(
    n: int, views: int = 4, dim: int = 25088, batch: int = 32, device: str = "cpu", steps_per_call: int = 1
) -> EmbeddingData:
    """Stored backbone outputs ``[n, views, dim]`` (float16, made on ``device``) and labels."""
    bank = torch.empty(n, views, dim, dtype=torch.float16, device=device).uniform_()
    y = torch.randint(0, 10, (n,), device=device)
    return EmbeddingData({"train": bank, "val": bank[:1, :1], "test": bank[:1, :1]}, {"train": y, "val": y[:1], "test": y[:1]}, batch,
                         steps_per_call=steps_per_call)
