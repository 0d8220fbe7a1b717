"""Where a job runs: its own GPU in a parallel sweep on one node, and the facts each run records about its place.

**One job per GPU.** ``python train.py -m ... hydra/launcher=gpus sweep_gpus=N`` runs the sweep in N joblib worker
processes at once (``conf/hydra/launcher/gpus.yaml``). Each worker process takes GPU slot k of N the first time it
starts a job (:func:`claim_gpu`, from :meth:`asc.runs.sweep.SweepCallback.on_job_start`, before anything touches
CUDA) and keeps it until it exits: it sets ``CUDA_VISIBLE_DEVICES`` to the k-th GPU of the node, so the job's
``cuda:0`` is that GPU and no other job of the sweep uses it while the worker lives.

- A slot is an exclusive lock on ``SWEEP_DIR/.gpu-slots/<k>.lock``, held by the worker process; the OS releases it
  when the process exits (or is killed), so a worker that joblib restarts takes the slot that was freed.
- Slots, not job numbers: a worker runs several jobs one after another, and CUDA reads ``CUDA_VISIBLE_DEVICES`` once
  per process, so the GPU belongs to the process. ``job_num % N`` would put two running jobs on one GPU as soon as
  jobs take unequal times.
- "The k-th GPU of the node" is the k-th entry of ``CUDA_VISIBLE_DEVICES`` as the sweep command saw it (a
  scheduler's allocation, or yours: ``CUDA_VISIBLE_DEVICES=2,3 python train.py -m ... sweep_gpus=2``), else k.

**Records.** :func:`placement_tags` are tagged on every run: host, process id, the GPUs it could see, its GPU slot,
and under SLURM the job id (``<array job>_<task>``) and how many times the scheduler restarted it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

#: The node's GPUs as the sweep command saw them (``CUDA_VISIBLE_DEVICES`` before a slot narrows it), kept in the
#: environment so that a second claim in the same process, or a child process, still knows the full list.
ENV_NODE_GPUS = "ASC_NODE_GPUS"
#: The slot this process holds.
ENV_SLOT = "ASC_GPU_SLOT"

_held: dict[str, Any] = {}  # the slot lock of this process: kept referenced so it is held until the process exits


class PlacementError(RuntimeError):
    """A GPU slot cannot be given: the message says what to change."""


def node_gpus(slots: int) -> list[str]:
    """The ``slots`` GPUs jobs are spread over: the first entries of the inherited ``CUDA_VISIBLE_DEVICES``, else 0..N-1."""
    listed = os.environ.get(ENV_NODE_GPUS, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if listed is None or listed.strip() == "":
        return [str(k) for k in range(slots)]
    gpus = [g.strip() for g in listed.split(",") if g.strip()]
    if len(gpus) < slots:
        raise PlacementError(f"sweep_gpus={slots}, but CUDA_VISIBLE_DEVICES={listed!r} names only {len(gpus)} GPU(s); "
                             f"set sweep_gpus={len(gpus)} or list more GPUs")
    return gpus[:slots]


def claim_gpu(slots: int, lock_dir: str | Path, wait: float = 3600.0) -> str:
    """Take a free GPU slot for this process (or keep the one it has), set ``CUDA_VISIBLE_DEVICES``; returns the GPU.

    Waits up to ``wait`` seconds when all ``slots`` are held (more worker processes than GPUs).
    """
    if "slot" in _held:
        return os.environ["CUDA_VISIBLE_DEVICES"]
    if slots < 1:
        raise PlacementError(f"sweep_gpus={slots}: must be at least 1")
    gpus = node_gpus(slots)
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        log.warning("CUDA was initialised in this process before it took a GPU slot: CUDA_VISIBLE_DEVICES comes "
                    "too late and this job may share a GPU")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    logged = False
    while True:
        for k, gpu in enumerate(gpus):
            lock = FileLock(str(lock_dir / f"{k}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _held["slot"] = lock
            os.environ[ENV_NODE_GPUS] = ",".join(gpus)
            os.environ[ENV_SLOT] = str(k)
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            log.info("GPU slot %d of %d: CUDA_VISIBLE_DEVICES=%s (process %d)", k, slots, gpu, os.getpid())
            return gpu
        if time.monotonic() > deadline:
            raise PlacementError(f"all {slots} GPU slots in {lock_dir} stayed held for {wait:.0f} s: more worker "
                                 "processes than sweep_gpus (hydra.launcher.n_jobs must not exceed sweep_gpus)")
        if not logged:
            log.info("all %d GPU slots are held; waiting for one", slots)
            logged = True
        time.sleep(1.0)


def placement_tags() -> dict[str, str]:
    """Where this run runs, as MLflow tags (``job.*``): host, process, visible GPUs, GPU slot, SLURM job and restarts."""
    env = os.environ
    tags = {"job.host": socket.gethostname(), "job.pid": str(os.getpid()),
            "job.cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES", "")}
    if ENV_SLOT in env:
        tags["job.gpu_slot"] = env[ENV_SLOT]
    if "SLURM_JOB_ID" in env:
        array = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        tags["job.slurm_id"] = f"{array[0]}_{array[1]}" if all(array) else env["SLURM_JOB_ID"]
        tags["job.slurm_restarts"] = env.get("SLURM_RESTART_COUNT", "0")
    return tags
