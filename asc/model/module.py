"""The LightningModule that trains a :class:`asc.model.networks.SceneNet` on spectrogram clips.

Batches arrive as raw uint8 clips: ``[B, H, W]`` for training, ``[B, n, H, W]`` with a mask of the real ones
``[B, n]`` for evaluation (the clips covering each recording, see :mod:`asc.data.clips`). The input pipeline
(:class:`asc.data.augment.ViewSpec`) runs in ``on_after_batch_transfer``, i.e. batched on the training device. With
``inputs="embeddings"`` they are the frozen backbone's cached outputs instead (``[B, D]`` for training, ``[B, n, D]``
and the mask for evaluation, see :mod:`asc.model.embeddings`) and only the head runs; the checkpoint still holds the
whole network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from asc.data.augment import ViewSpec
from asc.data.features import FEATURE_VERSION
from asc.model.augmentations import Augmentations, Mixup
from asc.model.networks import SceneNet
from asc.model.optimisers import Adam


class SceneClassifier(L.LightningModule):
    """Trains the head (and an unfrozen backbone) with Adam; validation and test share one step.

    Everything needed to use the model later is in its hyperparameters, so a checkpoint alone turns audio into
    predictions (:mod:`asc.inference`).

    Args:
        class_names: label names, index = class id.
        model: keyword arguments of :class:`SceneNet` (backbone, pretrained, freeze, hidden, dropout, ...).
        views: the :class:`asc.data.augment.ViewSpec` fields: window, crop and band rules, input side, mask,
            evaluation views, channels-last.
        clip: ``{"frames", "seconds", "pad"}``: the clip length the model was trained on and how shorter recordings
            were padded (:mod:`asc.data.clips`).
        features: the full :class:`asc.data.features.FeatureSpec` as a plain dict (``dataclasses.asdict``);
            ``feature_version``: the feature code's version it was computed with.
        window: the time window in seconds (as configured; ``views.window_frames`` is its width in frames).
        lr: Adam learning rate.
        inputs: ``"images"`` (clips, the full path) or ``"embeddings"`` (cached backbone outputs).
        compile: ``torch.compile`` the network (in ``configure_model``, so before the first step).
        steps_per_call: with ``inputs="embeddings"``, training items are lists of this many batches and each
            Lightning step takes one optimiser step per batch (manual optimisation): the same updates in the
            same order as one batch per Lightning step, without the framework's cost per step, which exceeds a
            head step's GPU work.
        augment: the ``augment`` group (``_target_`` and its arguments, :mod:`asc.model.augmentations`), or None:
            the paper's augmentation only (the window and band of ``views``).
        optim: the ``optim`` group (:mod:`asc.model.optimisers`), or None: Adam at ``lr``, no schedule (the paper's).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        model: dict[str, Any],
        views: dict[str, Any],
        clip: dict[str, Any],
        features: dict[str, Any] | None = None,
        window: float | None = None,
        lr: float = 1e-3,
        inputs: str = "images",
        compile: bool = False,
        steps_per_call: int = 1,
        feature_version: int = FEATURE_VERSION,
        augment: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if inputs not in ("images", "embeddings"):
            raise ValueError(f"inputs: {inputs!r} is not one of 'images', 'embeddings'")
        if steps_per_call < 1 or (steps_per_call > 1 and inputs != "embeddings"):
            raise ValueError(f"steps_per_call: {steps_per_call} must be 1, or more with inputs='embeddings'")
        self.views = ViewSpec(**views)
        self.augment: Augmentations | None = instantiate(augment, _convert_="all") if augment else None
        if self.augment is not None and self.augment.on_images and inputs == "embeddings":
            raise ValueError("augment: time roll, gain and SpecAugment masks change the images, and the embedding cache "
                             "stores the backbone's outputs of fixed ones: use augment=mixup with the cache, or "
                             "model.embedding_cache.enabled=false")
        self.optim = instantiate(optim) if optim else None
        self.automatic_optimization = steps_per_call == 1
        self.save_hyperparameters(logger=False)  # the run logs the whole resolved config instead
        self.class_names = list(class_names)
        n = len(self.class_names)
        self.net = SceneNet(n_classes=n, **model)
        if self.views.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # No checks that wait for the GPU at every update (the inputs are this module's own outputs): argument
        # validation off, and a NaN loss makes the mean NaN rather than being looked for (nan_strategy). With
        # nan_strategy="disable", torchmetrics 1.9 ignores MeanMetric's `weight`: losses go in once per sample.
        self.train_acc = MulticlassAccuracy(n, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(n, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(n, average="micro", validate_args=False)
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric(nan_strategy="disable") for _ in range(3))
        self.test_confusion = MulticlassConfusionMatrix(n, validate_args=False)
        self.confusion: torch.Tensor | None = None  # filled at the end of testing, rows true, columns predicted
        self.test_probabilities: torch.Tensor | None = None  # [N, classes] in the test loader's order, ditto
        self._test_probs: list[torch.Tensor] = []

    def configure_model(self) -> None:
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.net.compile()  # in place: the state dict keeps its names
            self._compiled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` for network input ``[B, 3, S, S]``, or for backbone outputs ``[B, D]``."""
        if x.dim() == 2:
            return self.net.head(x)
        if self.views.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # no copy when the pipeline made it so
        return self.net(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.hparams.inputs == "embeddings":
            if isinstance(batch, list):  # several training batches (steps_per_call)
                return [(x.float(), y) for x, y in batch]
            return (batch[0].float(), *batch[1:])
        if self.trainer is not None and self.trainer.training:
            x, y = batch
            if self.augment is not None and self.augment.on_images:
                x = self.augment.apply_images(x)
            return self.views.train(x, self.net.norm), y
        clips, y, real = batch
        x, real = self.views.eval_clips(clips, real, self.net.norm)
        return x, y, real

    def predict_proba(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Class probabilities ``[B, classes]``: the mean over the real ones of ``n`` views ``[B, n, 3, S, S]`` (or
        cached backbone outputs ``[B, n, D]``); ``valid`` ``[B, n]`` (default: all)."""
        B, n = x.shape[:2]
        probs = self(x.flatten(0, 1)).float().softmax(-1).view(B, n, -1)
        if valid is None:
            return probs.mean(1)
        w = valid.to(probs.dtype).unsqueeze(-1)
        return (probs * w).sum(1) / w.sum(1).clamp_min(1)

    # Metrics are updated at every step and logged once per epoch: ``self.log`` at every step costs more than
    # a head step from the embedding cache. The values are the same: per-sample means over the epoch.
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            return self._loss(*batch)
        opt = self.optimizers()
        seen = []
        schedule = self.lr_schedulers()
        for x, y in batch:  # what Lightning's automatic step does, once per batch: forward, zero_grad, backward, step
            logits, loss = self._forward_loss(x, y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            if schedule is not None:
                schedule.step()
            seen.append((logits.detach(), y, loss.detach().expand(len(y))))
        logits, y, losses = (torch.cat(parts) for parts in zip(*seen, strict=True))
        self.train_acc.update(logits, y)  # once per call: the same per-sample means over the epoch
        self.train_loss.update(losses)
        return None

    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, classes]`` and the training loss ``[]``: cross-entropy, or with ``augment.mixup`` the
        soft-target cross-entropy of the mixed batch (inputs and labels mixed with the same ``lam``)."""
        mixup: Mixup | None = self.augment.mixup if self.augment is not None else None
        if mixup is None:
            logits = self(x)
            return logits, F.cross_entropy(logits, y)
        lam, perm = mixup.draw(len(y), x.device)
        logits = self(mixup.mix(x, lam, perm))
        return logits, mixup.loss(logits, y, lam, perm)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, loss = self._forward_loss(x, y)
        self.train_acc.update(logits.detach(), y)
        self.train_loss.update(loss.detach().expand(len(y)))
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, y, valid = batch
        probs = self.predict_proba(x, valid)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), y)
        (self.val_acc if stage == "val" else self.test_acc).update(probs, y)
        (self.val_loss if stage == "val" else self.test_loss).update(loss.expand(len(y)))
        if stage == "test":
            self.test_confusion.update(probs, y)
            self._test_probs.append(probs.detach().float().cpu())  # the seeds' ensemble (asc compare) averages them

    def _log_epoch(self, stage: str) -> None:
        loss, acc = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        # compute() gathers the states of every device, so each rank logs the same global value: sync_dist's mean of
        # equal numbers changes nothing and keeps Lightning from asking for it
        self.log(f"{stage}/loss", loss.compute(), prog_bar=stage != "test", sync_dist=True)
        self.log(f"{stage}/acc", acc.compute(), prog_bar=stage == "val", sync_dist=True)
        loss.reset()
        acc.reset()

    def on_train_epoch_end(self) -> None:
        # Sent to the logger here, not through self.log: Lightning sends an epoch's training metrics only after the
        # checkpoint callbacks have saved last.ckpt, so a kill in between lost them for good (the resumed run starts
        # at the next epoch). This hook runs before those callbacks; the step is the one Lightning would use.
        loss, acc = self.train_loss.compute(), self.train_acc.compute()
        if self.logger is not None:
            step = self.trainer.fit_loop.epoch_loop._batches_that_stepped - 1
            self.logger.log_metrics({"train/loss": float(loss), "train/acc": float(acc),
                                     "epoch": float(self.current_epoch)}, step=step)
        self.log("train/loss", loss, prog_bar=True, logger=False, sync_dist=True)  # progress bar, callback_metrics
        self.log("train/acc", acc, logger=False, sync_dist=True)
        self.train_loss.reset()
        self.train_acc.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._test_probs = []

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self.test_probabilities = torch.cat(self._test_probs) if self._test_probs else None
        self._test_probs = []
        cm = self.test_confusion.compute()
        self.confusion = cm.detach().cpu()
        per_class = cm.diag().float() / cm.sum(1).clamp_min(1).float()
        for name, value in zip(self.class_names, per_class.tolist(), strict=True):
            self.log(f"test/acc_{name}", value, sync_dist=True)
        self.test_confusion.reset()

    # A run resumed from its last checkpoint continues with the random numbers it would have drawn (crops, bands,
    # dropout, batch order): the generators' states travel in the checkpoint.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("rng")
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def configure_optimizers(self) -> Any:
        head = list(self.net.head.parameters())
        in_head = {id(p) for p in head}
        backbone = [p for p in self.net.parameters() if id(p) not in in_head]
        # optimiser steps over the whole fit (Lightning's estimate times the batches per step), for a schedule; the
        # paper's Adam has none, and asking for it would set up the training data early
        total = int(self.trainer.estimated_stepping_batches) * self.hparams.steps_per_call if self.optim else 0
        opt, schedule = (self.optim or Adam()).build(head, backbone, self.hparams.lr, total)
        return opt if schedule is None else {"optimizer": opt, "lr_scheduler": schedule}
