"""A quiet console for the training commands: one line per log record, no advertisements, no library noise that
the user cannot act on, and the run's result as the last thing printed (``asc train``, ``asc tune``); a mistake in
the user's input as one line and status 2, the run folder Hydra made for it removed (:func:`mistake`)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from omegaconf import DictConfig

#: Warnings that say nothing a user of asc can act on (each is about the libraries' internals or a choice asc made).
NOISE = (
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of torch's pytree API
    r"The number of training batches .* is smaller than the logging interval",  # asc logs per epoch
    r"The '\w+_dataloader' does not have many workers",  # the images are in memory: workers do not pay off
    r".*Add type hints to the `predict` method",  # the pyfunc's signature is given explicitly
    r"n_fft=.* is too large for input signal",  # librosa's CQT on a short clip: the image is still computed
    r".*Checkpoint directory .* exists and is not empty",  # one folder per run; a resumed run reuses it
    r"Found \d+ module\(s\) in eval mode at the start of training",  # the frozen backbone, on purpose
    r"You have overridden `on_after_batch_transfer`",  # the augmentation is the module's, on purpose
    r"The `srun` command is available on your system but is not used",  # a local run on a SLURM login node
)
#: Lightning's log lines that advertise other products.
ADVERTS = ("💡 Tip:", "litlogger", "litmodels")


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(a in message for a in ADVERTS)


def quiet() -> None:
    """Call once the logging is configured (inside a Hydra task function), and again once Lightning is imported."""
    # `lightning` gives its logger a console handler of its own when it is imported (`lightning.pytorch` and
    # `lightning.fabric` when logging is not configured yet): under Hydra's handler every record would print twice.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _NoAdverts) for f in handler.filters):
            handler.addFilter(_NoAdverts())
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema creation, "validating input example"...
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "failed to resolve installed pip version"
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def fail(command: str, err: BaseException, code: int = 1) -> None:
    """Print an error that says what to do (no tracking server, no disk space) as one message; stop with ``code``
    (2 for a mistake in the user's input, :class:`asc.errors.UserMistake`). ``HYDRA_FULL_ERROR=1`` raises it instead,
    traceback and all."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"asc {command}: {err}", file=sys.stderr, flush=True)
    raise SystemExit(code) from None


def mistake(command: str, err: BaseException, cfg: DictConfig | None = None) -> None:
    """A mistake in the user's input (:class:`asc.errors.UserMistake`): one line, status 2. With ``cfg`` it was found
    before the run wrote anything, and Hydra's just-made run folder is removed too (:func:`discard_run_folder`).

    In a job of a sweep (``-m``) the error is raised again after its line: Hydra marks the job failed and goes on
    with the others, and the sweep's summary names it (:meth:`asc.runs.sweep.SweepCallback.on_job_end`).
    ``HYDRA_FULL_ERROR=1`` raises it, traceback and all."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    if cfg is not None:
        discard_run_folder(cfg)
    print(f"asc {command}: {err}", file=sys.stderr, flush=True)
    if _in_sweep():
        raise err
    raise SystemExit(2) from None


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def discard_run_folder(cfg: DictConfig) -> None:
    """Remove the folder Hydra made for this run or job (``.hydra/``, the log file) when nothing else was written
    there, and the folders above it that are left empty, up to ``paths.outputs`` (a run) or the sweep's folder (a
    job, which keeps ``sweep.json``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    out = Path(hydra.runtime.output_dir).resolve()
    ours = {out / f"{hydra.job.name}.log"}
    if hydra.output_subdir is not None:
        ours |= {out / hydra.output_subdir / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}
    root = logging.getLogger()
    for handler in list(root.handlers):  # Hydra's file handler holds the log open
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve() in ours:
            handler.close()
            root.removeHandler(handler)
    if not out.is_dir() or any(p not in ours for p in out.rglob("*") if not p.is_dir()):
        return  # something else wrote there: keep it all
    for path in ours:
        path.unlink(missing_ok=True)
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()  # .hydra/, emptied above
    out.rmdir()
    top = Path(hydra.sweep.dir).resolve() if _in_sweep() else Path(str(cfg.paths.outputs)).resolve().parent
    for folder in out.parents:  # <date>/ and outputs/, if this run was all they held
        if folder == top or top not in folder.parents:
            break
        try:
            folder.rmdir()
        except OSError:  # not empty
            break
