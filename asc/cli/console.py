"""A quiet console for the training commands: one line per log record, no advertisements, no library noise that
the user cannot act on, and the run's result as the last thing printed (``asc train``, ``asc tune``)."""

from __future__ import annotations

import logging
import os
import sys
import warnings

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
    """Call once the logging is configured (inside a Hydra task function)."""
    # Lightning gives its loggers a console handler of their own when it is imported before logging is configured;
    # under Hydra's handler every record would then print twice.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:
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
