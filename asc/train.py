"""One training run: config -> data module -> classifier -> Lightning Trainer -> MLflow.

``train.py`` at the repository root is the Hydra entry point; it calls :func:`run`.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: Keys of the ``model`` group that configure the LightningModule rather than the network.
_MODULE_KEYS = ("image_size", "lr", "eval_windows", "channels_last", "compile", "crop", "band")


def check_top_level(cfg: DictConfig) -> None:
    """Clear errors for the settings users type every day."""
    if not 0 <= float(cfg.mask) < 1:
        raise ValueError(f"mask={cfg.mask}: must be a fraction in [0, 1) (e.g. 0.1 masks at most 10 % of the height)")
    if float(cfg.window) <= 0:
        raise ValueError(f"window={cfg.window}: must be a positive number of seconds")


def output_dir() -> Path:
    """Hydra's run folder when running under Hydra, else a fresh temporary folder."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path(tempfile.mkdtemp(prefix="asc-run-"))


def parameter_counts(net) -> dict[str, int]:
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"params/total": total, "params/trainable": trainable}


def flops_per_sample(net, image_size: int) -> int:
    """Forward FLOPs for one ``[1, 3, S, S]`` input (torch's FLOP counter; a multiply-add counts 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, image_size, image_size))
    net.train(was_training)
    return int(counter.get_total_flops())


def run(
    cfg: DictConfig,
    callbacks: list | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, test on the best-validation checkpoint, log everything to MLflow. Returns the key results.

    ``callbacks`` are added to the Trainer's (e.g. Optuna's pruning callback); ``parent_run_id`` makes the
    MLflow run a nested child of that run (an Optuna trial, say); ``tags`` are added to the run's tags.
    In a sweep (``train.py -m``) the run is a nested child of the sweep's parent run, and with ``resume=true`` a
    run whose scientific config already finished under that parent is skipped (see :mod:`asc.sweep`).
    """
    from asc.config import settings
    from asc.datamodule import DataConfig
    from asc.embeddings import EmbeddingCacheConfig
    from asc.features import FeatureSpec
    from asc.sweep import config_hash, finished_child, job_sweep
    from asc.tracking import make_logger, run_name, tracking_uri

    check_top_level(cfg)
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")  # augmentation is the module's
    spec = settings(FeatureSpec, cfg.features, "features")
    data = settings(DataConfig, cfg.data, "data")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module_kwargs = {k: model_cfg.pop(k) for k in _MODULE_KEYS if k in model_cfg}
    model_cfg.pop("name", None)
    emb = settings(EmbeddingCacheConfig, model_cfg.pop("embedding_cache", None) or {}, "model.embedding_cache")
    if emb.enabled and not model_cfg.get("freeze", True):
        raise ValueError("model.embedding_cache.enabled=true needs a frozen backbone (model.freeze=true)")

    name = run_name(float(cfg.window), float(cfg.mask), int(cfg.seed))
    run_hash = config_hash(cfg)
    run_tags = {
        "window": cfg.window, "mask": cfg.mask, "seed": cfg.seed, "split": data.split,
        "features": spec.kind, "backbone": model_cfg.get("backbone"), "cell": f"window={cfg.window:g},mask={cfg.mask:g}",
        "config_hash": run_hash, "settings_hash": config_hash(cfg, drop=("seed",)),
        "inputs": "embeddings" if emb.applies(float(cfg.mask)) else "images",
    }
    sweep = job_sweep()
    if sweep is not None:  # a job of `train.py -m`: a nested child of the sweep's parent run
        run_tags.update({"sweep": sweep.sweep_id, "mlflow.parentRunId": sweep.parent_run_id})
        if cfg.get("resume", True):
            from mlflow import MlflowClient

            done = finished_child(MlflowClient(tracking_uri(cfg.logger.tracking_uri)), sweep.parent_run_id, run_hash)
            if done is not None:
                log.info("%s: already finished in this sweep (MLflow run %s): skipped (resume=false reruns it)",
                         name, done.info.run_id)
                metrics = done.data.metrics
                return {
                    "run_name": name, "run_id": done.info.run_id, "experiment_id": done.info.experiment_id,
                    "test/acc": metrics.get("test/acc", float("nan")), "val/acc": metrics.get("best_val/acc", float("nan")),
                    "checkpoint": None, "epochs": None, "skipped": True,
                }
    elif cfg.get("sweep_id"):
        run_tags["sweep"] = cfg.sweep_id
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    run_tags.update(tags or {})
    logger = make_logger(cfg.logger.experiment, name, cfg.logger.tracking_uri, cfg.logger.get("artifacts"), run_tags)
    client, run_id = logger.experiment, logger.run_id
    out = output_dir() / name if parent_run_id else output_dir()  # nested runs share their process's folder
    try:
        return _train(cfg, logger, spec, data, model_cfg, module_kwargs, name, out, callbacks or [], emb)
    except BaseException as err:  # the run shows as failed in MLflow, so a resumed sweep reruns it
        # a pruned Optuna trial or Ctrl-C is KILLED, anything else FAILED: the run never stays RUNNING
        stopped = isinstance(err, KeyboardInterrupt) or type(err).__name__ == "TrialPruned"
        client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, "KILLED" if stopped else "FAILED")
        raise


def _train(
    cfg: DictConfig, logger, spec, data, model_cfg: dict, module_kwargs: dict, name: str, out: Path, callbacks: list,
    emb=None,
) -> dict[str, Any]:
    """The body of :func:`run` once its MLflow run exists. ``emb``: the ``model.embedding_cache`` settings."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from asc.datamodule import SceneDataModule
    from asc.embeddings import EmbeddingData, build_or_load
    from asc.module import SceneClassifier
    from asc.tracking import flatten, log_confusion, tracking_uri

    client, run_id = logger.experiment, logger.run_id
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger.log_hyperparams(flatten(resolved))
    client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    L.seed_everything(int(cfg.seed), workers=True)
    dm = SceneDataModule(data, spec, float(cfg.window), progress=bool(cfg.progress))
    dm.prepare_data()
    dm.setup("fit")
    from_cache = emb is not None and emb.applies(float(cfg.mask))
    if emb is not None and emb.enabled and not from_cache:
        log.info("mask=%g with model.embedding_cache.masks=0: this run takes the full path", float(cfg.mask))
    module = SceneClassifier(
        class_names=dm.class_names,
        model=model_cfg,
        window_frames=spec.window_frames(float(cfg.window)),
        mask=float(cfg.mask),
        features=dataclasses.asdict(spec),  # the model carries its feature settings (see asc.predict)
        window=float(cfg.window),
        clip_seconds=(dm.frames - 1) * spec.hop_length / spec.sample_rate,
        inputs="embeddings" if from_cache else "images",
        steps_per_call=emb.steps_per_call if from_cache else 1,
        **module_kwargs,
    )
    facts = {
        **parameter_counts(module.net),
        "flops_per_sample": flops_per_sample(module.net, module.hparams.image_size),
        **{f"split/{k}": v for k, v in dm.split_sizes.items()},
        "split/leakage": dm.leakage,
        "data/skipped": dm.skipped,
    }
    logger.log_metrics(facts)

    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    patience = trainer_cfg.pop("patience", 10)  # the only key that is not a lightning.Trainer argument
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/acc", mode="max", save_top_k=1)
    trainer = L.Trainer(
        **trainer_cfg,
        logger=logger,
        callbacks=[checkpoint, EarlyStopping(monitor="val/acc", mode="max", patience=patience), *callbacks],
        default_root_dir=out,
        enable_progress_bar=bool(cfg.progress),
    )
    inputs = dm
    if from_cache:  # the head trains on the frozen backbone's stored outputs instead of the images
        hp = module.hparams
        parts = {p: dm.tensors(p) for p in ("train", "val", "test")}
        banks, _, computed = build_or_load(
            module.net, {p: images for p, (images, _) in parts.items()}, emb,
            root=data.cache_dir, spec_key=spec.key(), backbone=str(model_cfg.get("backbone")),
            width=hp.window_frames, size=hp.image_size, mask=hp.mask, eval_windows=hp.eval_windows,
            precision=trainer_cfg.get("precision"), channels_last=hp.channels_last, device=trainer.strategy.root_device,
            crop=hp.crop, band=hp.band, resized=module.resized_width(dm.frames),
        )
        inputs = EmbeddingData(banks, {p: labels for p, (_, labels) in parts.items()}, data.batch_size,
                               steps_per_call=emb.steps_per_call)
        logger.log_metrics({"embedding_cache/views": banks["train"].shape[1], "embedding_cache/computed": int(computed)})
    trainer.fit(module, datamodule=inputs)
    trainer.test(module, datamodule=inputs, ckpt_path="best", weights_only=True, verbose=False)

    test_acc = float(trainer.callback_metrics["test/acc"])
    best_val = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else float("nan")
    logger.log_metrics({"best_val/acc": best_val})
    log_confusion(client, run_id, module.confusion.numpy(), dm.class_names, title=f"{name}: test")
    client.log_artifact(run_id, checkpoint.best_model_path, "checkpoints")
    model_uri = None
    if cfg.logger.get("log_model", True):
        from asc.packaging import log_model

        example = dm.tensors("val")[0][:1].cpu().numpy()  # one validation clip's uint8 image [1, H, W]
        model_uri = log_model(run_id, tracking_uri(cfg.logger.tracking_uri), checkpoint.best_model_path, example)
    logger.finalize("success")
    result = {
        "run_name": name, "run_id": run_id, "experiment_id": logger.experiment_id, "test/acc": test_acc,
        "val/acc": best_val, "checkpoint": checkpoint.best_model_path, "epochs": trainer.current_epoch,
        "model_uri": model_uri,
    }
    print(
        f"\n{name}: test accuracy {test_acc:.3f} (best validation {best_val:.3f}, {trainer.current_epoch} epochs)\n"
        f"MLflow run {run_id} in experiment '{cfg.logger.experiment}' at {tracking_uri(cfg.logger.tracking_uri)}\n"
        "Browse it: make ui  ->  http://127.0.0.1:5000\n",
        flush=True,
    )
    return result
