"""Timing helpers shared by the benchmarks: interleaved rounds, medians, the machine, a results table.

Only the standard library and torch: the GPU machine runs these without the project's other dependencies.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def sync(device: torch.device | str | None = None) -> None:
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def interleaved(fns: Mapping[str, Callable[[], Any]], rounds: int = 5, warmup: int = 1, device=None) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds (A B A B ...).

    Alternating spreads the load of a shared machine over all contenders, so the ratio of two medians is
    fair even when the absolute times drift.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(title: str, rows: list[tuple[str, str]], note: str = "") -> None:
    """Print ``title`` and aligned ``label: value`` rows."""
    width = max(len(r[0]) for r in rows)
    print(f"\n== {title}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    if note:
        print(f"  ({note})")


def save(results: Mapping[str, Any], path: str | Path | None) -> None:
    """Write ``results`` (plus the machine) as JSON when ``path`` is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"machine": machine(), **results}, indent=2))
