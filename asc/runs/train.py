"""One training run, as three steps a reader can see: build, fit and test, record.

1. :func:`build` -- the data module (metadata -> split -> cached images), the LightningModule and the Trainer,
   from typed :class:`RunSettings`. With the embedding cache the module's input is the frozen backbone's stored
   outputs instead of the images: a different input to the same module, chosen here.
2. :func:`fit_and_test` -- ``Trainer.fit``, then ``Trainer.test`` on the best-validation checkpoint.
3. :func:`record` -- metrics, confusion matrix, checkpoint and MLflow model into the run.

:func:`run` ties them to the tracking store: it names and tags the run (its grid cell, its config hash, whether
it is the paper's setup), skips a job that already finished in a resumed sweep, and marks a run that raises as
FAILED (or KILLED). ``asc train`` / ``python train.py`` (Hydra) call it once, a sweep once per job, an Optuna
study once per trial and seed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from asc.config import settings
from asc.data.augment import ViewSpec
from asc.data.datamodule import DataConfig, SceneDataModule
from asc.data.features import FeatureSpec
from asc.errors import SettingError
from asc.model.embeddings import EmbeddingCacheConfig, EmbeddingData, build_or_load
from asc.model.module import SceneClassifier
from asc.model.networks import backbone_id
from asc.files import exclusive
from asc.runs.ensemble import ARTIFACT, probabilities_csv
from asc.runs.identity import config_hash, config_lock, leaves, paper_differences
from asc.runs.placement import placement_tags
from asc.runs.sweep import job_sweep
from asc.tracking.packaging import log_model
from asc.tracking.store import JOURNAL, TrackingStore

log = logging.getLogger(__name__)

#: Keys of the ``model`` group that say how clips become network inputs (:class:`asc.data.augment.ViewSpec`), and
#: those that configure the optimisation; the rest are the network's (:class:`asc.model.networks.SceneNet`).
VIEW_KEYS = {"image_size": "size", "eval_windows": "eval_windows", "channels_last": "channels_last", "crop": "crop",
             "band": "band"}
TRAINING_KEYS = ("lr", "compile")


def run_name(window: float, mask: float, seed: int) -> str:
    """The run's identity in the grid, e.g. ``window=5,mask=0.1,seed=2``."""
    return f"window={window:g},mask={mask:g},seed={seed}"


def _group(cfg: DictConfig, name: str) -> dict[str, Any] | None:
    """A recipe group's resolved config (``_target_`` and its arguments), or None where the run has none."""
    node = cfg.get(name)
    return OmegaConf.to_container(node, resolve=True) if node else None


@dataclass(frozen=True)
class RunSettings:
    """One run's settings, typed: the only place that reads the Hydra config's groups."""

    window: float  # seconds
    mask: float  # largest masked band, fraction of the height
    seed: int
    features: FeatureSpec
    data: DataConfig
    network: dict[str, Any]  # asc.model.networks.SceneNet arguments
    views: dict[str, Any]  # asc.data.augment.ViewSpec arguments but the window's (VIEW_KEYS)
    training: dict[str, Any]  # the optimisation's SceneClassifier arguments (TRAINING_KEYS)
    cache: EmbeddingCacheConfig
    trainer: dict[str, Any]  # lightning.Trainer arguments
    patience: int  # epochs without a better val/acc before stopping
    progress: bool
    augment: dict[str, Any] | None = None  # the `augment` group (asc.model.augmentations), None: the paper's only
    optim: dict[str, Any] | None = None  # the `optim` group (asc.model.optimisers), None: Adam at model.lr

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunSettings:
        mask, window = float(cfg.mask), float(cfg.window)
        if not 0 <= mask < 1:
            raise SettingError(f"mask={cfg.mask}: must be a fraction in [0, 1) (e.g. 0.1 masks at most 10 % of the height)")
        if window <= 0:
            raise SettingError(f"window={cfg.window}: must be a positive number of seconds")
        model = OmegaConf.to_container(cfg.model, resolve=True)
        model.pop("name", None)
        views = {VIEW_KEYS[k]: model.pop(k) for k in list(VIEW_KEYS) if k in model}
        training = {k: model.pop(k) for k in TRAINING_KEYS if k in model}
        cache = settings(EmbeddingCacheConfig, model.pop("embedding_cache", None) or {}, "model.embedding_cache")
        if cache.enabled and not model.get("freeze", True):
            raise SettingError("model.embedding_cache.enabled=true needs a frozen backbone (model.freeze=true)")
        trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
        patience = int(trainer.pop("patience", 10))  # the only key that is not a lightning.Trainer argument
        return cls(
            window=window, mask=mask, seed=int(cfg.seed), features=settings(FeatureSpec, cfg.features, "features"),
            data=settings(DataConfig, cfg.data, "data"), network=model, views=views, training=training, cache=cache,
            trainer=trainer,
            patience=patience, progress=bool(cfg.progress),
            augment=_group(cfg, "augment"), optim=_group(cfg, "optim"),
        )

    @property
    def name(self) -> str:
        return run_name(self.window, self.mask, self.seed)

    @property
    def from_cache(self) -> bool:
        """Whether the head trains on the frozen backbone's cached outputs (else on the images)."""
        return self.cache.applies(self.mask)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns: the run's accuracies, where it is tracked, and how it went."""

    run_name: str
    val_acc: float = math.nan  # best validation accuracy (the early-stopping checkpoint's)
    test_acc: float = math.nan  # test accuracy of that checkpoint
    run_id: str | None = None
    experiment_id: str | None = None
    experiment: str = ""
    checkpoint: str | None = None  # the best checkpoint's path
    epochs: int | None = None
    model_uri: str | None = None  # the MLflow model, when logged
    ui: str = ""
    tracking_uri: str = ""
    seconds: float = 0.0
    skipped: bool = False  # finished before in this sweep: not run again
    resumed: bool = False  # continued from an unfinished run's last checkpoint
    faithful: bool = False  # the paper's setup (tag faithful=true)
    faithful_why: str = ""  # how it differs from it (tag faithful.why)
    worker: bool = False  # a rank > 0 process of a multi-device run (tracks nothing)
    rank: int = 0


# -- 1. build ---------------------------------------------------------------------------------------------------
@dataclass
class Built:
    """What :func:`build` made: the pieces :func:`fit_and_test` and :func:`record` work on."""

    settings: RunSettings
    images: SceneDataModule  # the spectrogram images of the split (always: class names, sizes, examples)
    inputs: L.LightningDataModule  # what the module trains on: ``images``, or the cached backbone outputs
    module: SceneClassifier
    trainer: L.Trainer
    checkpoint: ModelCheckpoint
    facts: dict[str, float]  # parameter counts, FLOPs, split sizes and leakage: logged before training


def build(s: RunSettings, logger: Any, callbacks: list[Callback], out: Path, checkpoints: Path) -> Built:
    """Data module, LightningModule and Trainer from the settings; the embedding cache filled if it is used.

    ``checkpoints``: the run's checkpoint folder (``best.ckpt`` by validation accuracy, ``last.ckpt`` for resuming).
    """
    L.seed_everything(s.seed, workers=True, verbose=False)
    images = SceneDataModule(s.data, s.features, s.window, progress=s.progress)
    images.prepare_data()
    images.setup("fit")
    hop = s.features.hop_length / s.features.sample_rate
    views = ViewSpec.for_clip(images.clip_frames, s.window, hop, mask=s.mask, **s.views)
    checkpoint = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val/acc", mode="max", save_top_k=1)
    # every epoch, not only the better ones (Lightning's save_last follows the best): a resumed run redoes no epoch
    latest = ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, enable_version_counter=False)
    trainer = L.Trainer(
        **s.trainer,
        logger=logger,
        callbacks=[checkpoint, latest, EarlyStopping(monitor="val/acc", mode="max", patience=s.patience), StayStopped(),
                   *callbacks],
        default_root_dir=out,
        enable_progress_bar=s.progress,
        enable_model_summary=False,  # the run logs its parameter counts and FLOPs instead
    )
    # Several optimiser steps per Lightning step take several backward passes per DDP forward, and DDP averages the
    # gradients of the first only: on several devices, one step per call.
    grouped = s.cache.steps_per_call if s.from_cache and trainer.world_size == 1 else 1
    module = SceneClassifier(  # the model carries what turns audio into its inputs (see asc.inference)
        class_names=images.class_names,
        model=s.network,
        views=dataclasses.asdict(views),
        clip={"frames": images.clip_frames, "seconds": s.data.clip_seconds, "pad": s.data.pad},
        features=dataclasses.asdict(s.features),
        window=s.window,
        inputs="embeddings" if s.from_cache else "images",
        steps_per_call=grouped,
        augment=s.augment,
        optim=s.optim,
        **s.training,
    )
    facts = {
        **parameter_counts(module.net),
        "flops_per_sample": flops_per_sample(module.net, views.size),
        **{f"split/{k}": v for k, v in images.split_sizes.items()},
        "split/leakage": images.leakage,
        "split/leakage_val": images.leakage_val,
        **{f"data/{k}": v for k, v in images.counts.items()},  # recordings padded, cropped, skipped, copies
    }
    inputs: L.LightningDataModule = images
    if s.from_cache:
        inputs, facts["embedding_cache/views"], facts["embedding_cache/computed"] = embedding_inputs(s, images, module, trainer)
    elif s.cache.enabled:
        log.info("mask=%g with model.embedding_cache.masks=0: this run takes the full path", s.mask)
    return Built(s, images, inputs, module, trainer, checkpoint, facts)


class StayStopped(Callback):
    """A run resumed after early stopping had ended its training goes straight to testing: Lightning does not keep
    ``should_stop`` in the checkpoint, and would train one epoch more than the run that was never interrupted."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stopper = trainer.early_stopping_callback
        if stopper is not None and stopper.stopped_epoch > 0:
            trainer.should_stop = True


def embedding_inputs(s: RunSettings, images: SceneDataModule, module: SceneClassifier,
                     trainer: L.Trainer) -> tuple[EmbeddingData, int, int]:
    """The frozen backbone's outputs for the split's clips (computed once, cached): ``(data, views, computed)``."""
    banks = {p: images.bank(p) for p in ("train", "val", "test")}
    outputs, real, _, computed = build_or_load(
        module.net, banks, s.cache, module.views, root=s.data.cache_dir, spec_key=s.features.key(),
        backbone=backbone_id(s.network.get("backbone")), precision=s.trainer.get("precision"),
        device=trainer.strategy.root_device, progress=s.progress and trainer.is_global_zero,
    )
    data = EmbeddingData(outputs, {p: bank.labels for p, bank in banks.items()}, s.data.batch_size,
                         steps_per_call=module.hparams.steps_per_call, real=real)
    return data, int(outputs["train"].shape[1]), int(computed)


def parameter_counts(net: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"params/total": total, "params/trainable": trainable}


def flops_per_sample(net: torch.nn.Module, image_size: int) -> int:
    """Forward FLOPs for one ``[1, 3, S, S]`` input (torch's FLOP counter; a multiply-add counts 2)."""
    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, image_size, image_size))
    net.train(was_training)
    return int(counter.get_total_flops())


# -- 2. fit and test --------------------------------------------------------------------------------------------
def fit_and_test(b: Built, resume_from: Path | None = None) -> None:
    """Train with early stopping on val/acc (from ``resume_from``'s epoch, optimiser and callbacks if given), then test
    the best-validation checkpoint. Checkpoints are loaded weights-only."""
    launched = {key: os.environ.get(key) for key in DDP_ENVIRONMENT}
    try:
        with ddp_command():
            b.trainer.fit(b.module, datamodule=b.inputs, ckpt_path=resume_from, weights_only=True)
        b.trainer.test(b.module, datamodule=b.inputs, ckpt_path="best", weights_only=True, verbose=False)
    finally:
        # Lightning's DDP launcher leaves its process group up and its variables in this process's environment: the
        # next job of a sweep in this process would take itself for a process someone else launched and wait for
        # the ranks of this run, which have ended.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in launched.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- 3. record --------------------------------------------------------------------------------------------------
def record(b: Built, store: TrackingStore, run_id: str, log_mlflow_model: bool = True) -> dict[str, Any]:
    """Test metrics, confusion matrix, best checkpoint and the MLflow model into run ``run_id``; the results as
    :class:`RunResult` fields."""
    test_acc = float(b.trainer.callback_metrics["test/acc"])
    best_val = float(b.checkpoint.best_model_score) if b.checkpoint.best_model_score is not None else float("nan")
    store.log_metrics(run_id, {"best_val/acc": best_val})
    store.log_confusion(run_id, b.module.confusion.numpy(), b.images.class_names, title=f"{b.settings.name}: test")
    store.log_artifact(run_id, b.checkpoint.best_model_path, "checkpoints")
    probs, names = b.module.test_probabilities, b.images.names.get("test", [])
    if probs is not None and len(probs) == len(names):  # on several devices each has its share: not written
        store.log_text(run_id, probabilities_csv(names, b.images.bank("test").labels.tolist(), probs.numpy(),
                                                 b.images.class_names), ARTIFACT)
    model_uri = None
    if log_mlflow_model:
        first = torch.zeros(1, dtype=torch.long, device=b.images.bank("val").device)
        example = b.images.bank("val").clips(first, first).cpu().numpy()  # one validation clip, uint8 [1, H, W]
        model_uri = log_model(store, run_id, b.checkpoint.best_model_path, example)
    return {"test_acc": test_acc, "val_acc": best_val, "checkpoint": b.checkpoint.best_model_path,
            "epochs": b.trainer.current_epoch, "model_uri": model_uri}


# -- the run ----------------------------------------------------------------------------------------------------
def output_dir() -> Path:
    """Hydra's run folder when running under Hydra, else a fresh temporary folder."""
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path(tempfile.mkdtemp(prefix="asc-run-"))


def run_tags(cfg: DictConfig, s: RunSettings) -> dict[str, Any]:
    """What a run is, as MLflow tags: its grid cell, identity hashes, inputs, and whether it is the paper's setup."""
    differences = paper_differences(cfg)
    if s.from_cache:
        differences.append("model.embedding_cache: the head trains on stored views (fixed windows and masks)")
    return {
        "window": s.window, "mask": s.mask, "seed": s.seed, "split": s.data.split, "features": s.features.kind,
        "backbone": backbone_id(s.network.get("backbone")), "cell": f"window={s.window:g},mask={s.mask:g}",
        "config_hash": config_hash(cfg), "settings_hash": config_hash(cfg, drop=("seed",)),
        "inputs": "embeddings" if s.from_cache else "images",
        "faithful": str(not differences).lower(), "faithful.why": "; ".join(differences)[:5000],
        **placement_tags(),  # host, process, GPUs, SLURM job
    }


#: What the rank-0 process tells the other processes of a multi-device run (Lightning's DDP launcher starts them
#: with its environment): the checkpoint folder and the checkpoint to resume from ("" for none).
ENV_CHECKPOINT_DIR = "ASC_CHECKPOINT_DIR"
ENV_RESUME_FROM = "ASC_RESUME_FROM"
#: What Lightning's DDP launcher sets in the environment of the process that starts the others.
DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
#: The arguments before the overrides that start a run again (``["train"]`` for ``asc train``; see ddp_command).
COMMAND_PREFIX: list[str] = []


def global_rank() -> int:
    """This process's rank in a multi-device run (0 in a single-device run, and in the process that tracks)."""
    return int(rank_zero_only.rank)


@contextmanager
def ddp_command() -> Iterator[None]:
    """The command Lightning's DDP launcher runs again for the processes of ranks 1..N-1: this job's own.

    Lightning re-runs ``sys.argv`` with the Hydra run folder added. In a sweep (``-m``) that command is the whole
    sweep, and for ``asc train`` its first argument is the subcommand: present the job's own overrides instead.
    """
    if not HydraConfig.initialized():
        yield
        return
    saved = sys.argv
    sys.argv = [saved[0], *COMMAND_PREFIX, *HydraConfig.get().overrides.task]
    try:
        yield
    finally:
        sys.argv = saved


def resumable(store: TrackingStore, experiment_id: str, config_hash_: str, parent: str | None):
    """The newest unfinished run of this scientific config (under ``parent``, or at the top level) that left a last
    checkpoint, or None. The caller holds the config's lock (:func:`asc.runs.identity.config_lock`), so a run of it
    that is still RUNNING belongs to a process that died: it is marked KILLED (and resumed, if it left a checkpoint)."""
    query = f"tags.config_hash = '{config_hash_}' and attributes.status != 'FINISHED'"
    chosen = None
    for found in store.search([experiment_id], query):
        if found.data.tags.get("mlflow.parentRunId") != parent:
            continue
        if found.info.status == "RUNNING":
            store.end_run(found.info.run_id, "KILLED")
            log.info("MLflow run %s of this configuration was left RUNNING by a process that died: marked KILLED",
                     found.info.run_id)
        folder = found.data.tags.get("checkpoint_dir")
        if chosen is None and folder and (Path(folder) / "last.ckpt").is_file():
            chosen = found
    return chosen


def _reopen(store: TrackingStore, earlier: Any, cfg: DictConfig, name: str) -> tuple[Any, Path]:
    """Continue the unfinished MLflow run ``earlier`` (see :func:`resumable`): reopened, a half-written checkpoint
    removed, the metrics a server that went away could not take sent, tagged ``resumed`` and ``resumed.after`` (what
    ended the attempt before; its ``error`` tag removed). Returns its logger and checkpoint folder."""
    run_id = earlier.info.run_id
    folder = Path(earlier.data.tags["checkpoint_dir"])
    store.reopen_run(run_id)
    for tmp in folder.glob(".*.tmp"):  # a checkpoint the killed process was writing
        tmp.unlink(missing_ok=True)
    sent = store.replay(run_id, folder / JOURNAL)
    if sent:
        log.info("%s: %d metric value(s) kept while the tracking server was away sent to run %s", name, sent, run_id)
    stopped = earlier.data.tags.get("error", f"left {earlier.info.status}")
    store.set_tags(run_id, {"resumed": int(earlier.data.tags.get("resumed", 0)) + 1, "resumed.after": stopped,
                            **placement_tags()})
    if "error" in earlier.data.tags:
        store.delete_tag(run_id, "error")
    log.info("%s: resuming MLflow run %s from %s (resume=false starts afresh)", name, run_id, folder / "last.ckpt")
    logger = store.logger(cfg.logger.experiment, name, {}, cfg.logger.get("artifacts"), run_id=run_id)
    logger.journal = folder / JOURNAL
    return logger, folder


def run(cfg: DictConfig, callbacks: list[Callback] | None = None, parent_run_id: str | None = None,
        tags: dict[str, Any] | None = None) -> RunResult:
    """Build, fit and test, record one run into MLflow; returns its results (accuracies, ids, time).

    ``callbacks`` are added to the Trainer's (e.g. Optuna's pruning callback); ``parent_run_id`` makes the
    MLflow run a nested child of that run (an Optuna trial, say); ``tags`` are added to the run's tags.

    - **Sweeps.** In a sweep (``train.py -m``) the run is a nested child of the sweep's parent run, and with
      ``resume=true`` a run whose scientific config already finished under that parent is skipped.
    - **Resume.** With ``resume=true`` (the default) a run of the same scientific config that did not finish (killed,
      crashed, preempted) and left a last checkpoint is continued: the same MLflow run, from its last epoch, with the
      optimiser, early stopping, the best checkpoint and the random number generators as they were. Checkpoints
      live in ``paths.outputs/checkpoints/<MLflow run id>`` (the run's tag ``checkpoint_dir``). Optuna trials'
      runs are never resumed.
    - **Several devices** (``trainer.devices=N trainer.strategy=ddp``): one process per device; only rank 0 tracks
      (one MLflow run, one checkpoint folder, which it passes on to the others), the metrics and the confusion matrix
      are reduced over all ranks, the embedding cache is filled once.
    """
    start = time.perf_counter()
    s = RunSettings.from_config(cfg)
    if global_rank() > 0:  # started by rank 0's DDP launcher: train and test, track nothing
        return _worker(cfg, s, callbacks or [])
    store = TrackingStore(cfg.logger.tracking_uri)
    run_tags_ = run_tags(cfg, s)
    sweep = job_sweep()
    parent = sweep.parent_run_id if sweep is not None else parent_run_id
    experiment_id = store.experiment(cfg.logger.experiment, cfg.logger.get("artifacts"))
    # one process at a time per config: a second one waits, then finds it finished (a sweep skips it) or resumes it
    lock = config_lock(cfg.paths.outputs, experiment_id, parent, run_tags_["config_hash"])
    with exclusive(lock, f"{s.name}: another process is running this configuration ({lock}); waiting for it"):
        if sweep is not None:  # a job of `train.py -m`: a nested child of the sweep's parent run
            run_tags_["sweep"] = sweep.sweep_id
            done = store.finished_child(sweep.parent_run_id, run_tags_["config_hash"]) if cfg.get("resume", True) else None
            if done is not None:
                log.info("%s: already finished in this sweep (MLflow run %s): skipped (resume=false reruns it)",
                         s.name, done.info.run_id)
                return RunResult(
                    run_name=s.name, run_id=done.info.run_id, experiment_id=done.info.experiment_id,
                    test_acc=done.data.metrics.get("test/acc", math.nan),
                    val_acc=done.data.metrics.get("best_val/acc", math.nan), skipped=True,
                    seconds=time.perf_counter() - start, tracking_uri=store.uri,
                    ui=store.ui_url(done.info.experiment_id, done.info.run_id), faithful=run_tags_["faithful"] == "true",
                    faithful_why=run_tags_["faithful.why"], experiment=str(cfg.logger.experiment))
        elif cfg.get("sweep_id"):
            run_tags_["sweep"] = cfg.sweep_id
        if parent:
            run_tags_["mlflow.parentRunId"] = parent
        run_tags_.update(tags or {})
        earlier = None
        if cfg.get("resume", True) and parent_run_id is None:
            earlier = resumable(store, experiment_id, run_tags_["config_hash"], parent)
        if earlier is not None:
            logger, folder = _reopen(store, earlier, cfg, s.name)
            resume_from: Path | None = folder / "last.ckpt"
        else:
            logger = store.logger(cfg.logger.experiment, s.name, run_tags_, cfg.logger.get("artifacts"))
            folder = (Path(cfg.paths.outputs) / "checkpoints" / logger.run_id).resolve()
            resume_from = None
            store.set_tags(logger.run_id, {"checkpoint_dir": folder})
            folder.mkdir(parents=True, exist_ok=True)
            logger.journal = folder / JOURNAL
        out = output_dir() / s.name if parent_run_id else output_dir()  # nested runs share their process's folder
        with store.failure_marked(logger.run_id, f"the checkpoints are in {folder}"):
            if resume_from is None:
                store.log_params(logger.run_id, leaves(OmegaConf.to_container(cfg, resolve=True)))
                store.log_text(logger.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            os.environ[ENV_CHECKPOINT_DIR], os.environ[ENV_RESUME_FROM] = str(folder), str(resume_from or "")
            built = build(s, logger, callbacks or [], out, folder)
            logger.log_metrics(built.facts)
            fit_and_test(built, resume_from)
            result = record(built, store, logger.run_id, bool(cfg.logger.get("log_model", True)))
            logger.end("success")
        return RunResult(run_name=s.name, run_id=logger.run_id, experiment_id=logger.experiment_id, **result,
                         ui=store.ui_url(logger.experiment_id, logger.run_id), resumed=resume_from is not None,
                         seconds=time.perf_counter() - start, tracking_uri=store.uri,
                         faithful=run_tags_["faithful"] == "true", faithful_why=run_tags_["faithful.why"],
                         experiment=str(cfg.logger.experiment))


def _worker(cfg: DictConfig, s: RunSettings, callbacks: list[Callback]) -> RunResult:
    """Rank > 0 of a multi-device run: the same build, fit and test in rank 0's checkpoint folder, no tracking."""
    folder, resume_from = Path(os.environ[ENV_CHECKPOINT_DIR]), os.environ.get(ENV_RESUME_FROM) or None
    built = build(s, False, callbacks, output_dir(), folder)
    fit_and_test(built, Path(resume_from) if resume_from else None)
    return RunResult(run_name=s.name, rank=global_rank(), worker=True)


def summary(result: RunResult) -> str:
    """The run's result in three lines: accuracy and time, whether it is the paper's setup, where it is logged."""
    minutes, seconds = divmod(round(result.seconds), 60)
    took = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    if result.skipped:
        head = f"{result.run_name}: skipped, finished before (test accuracy {result.test_acc:.3f})"
    else:
        head = (f"{result.run_name}: test accuracy {result.test_acc:.3f} (best validation {result.val_acc:.3f}, "
                f"{result.epochs} epochs) in {took}")
    why = [w for w in result.faithful_why.split("; ") if w]
    setup = ("the paper's setup (faithful=true)" if result.faithful else
             "not the paper's setup: " + "; ".join(why[:3]) + (f"; and {len(why) - 3} more (run tag faithful.why)"
                                                                if len(why) > 3 else ""))
    return (f"{head}\n{setup}\n"
            f"MLflow run {result.run_id} in experiment '{result.experiment}' at {result.tracking_uri}\n"
            f"browse it: {result.ui}" + ("  (after `make ui`)" if result.tracking_uri.startswith("sqlite") else ""))
