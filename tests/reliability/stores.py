"""Reading back what the commands left: MLflow runs with their metric histories, checkpoints, Optuna trials."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Metrics compared between a faulted run and an uninterrupted one.
COMPARED = ("val/acc", "val/loss", "train/loss", "test/acc", "best_val/acc")


@dataclass
class RunRecord:
    run_id: str
    name: str
    status: str
    tags: dict[str, str]
    metrics: dict[str, float]
    history: dict[str, dict[int, list[tuple[int, float]]]] = field(default_factory=dict)  # key -> step -> [(ms, v)]
    artifacts: set[str] = field(default_factory=set)
    artifact_root: str = ""

    @property
    def config_hash(self) -> str:
        return self.tags.get("config_hash", "")

    def values(self, key: str) -> dict[int, float]:
        """``{step: value}`` of a metric; a step logged twice with different values keeps a list (see ``twice``)."""
        return {step: entries[-1][1] for step, entries in self.history.get(key, {}).items()}

    def logged_after(self, key: str, ms: int) -> list[int]:
        """Steps of ``key`` logged after ``ms`` (milliseconds since the epoch)."""
        return sorted(step for step, entries in self.history.get(key, {}).items() if any(t > ms for t, _ in entries))


def client(db: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{db}")


def runs(db: Path, experiment: str = "asc-demo", artifacts: bool = True) -> list[RunRecord]:
    """Every run of ``experiment`` in the SQLite store ``db`` (none if the store or experiment does not exist)."""
    if not db.is_file():
        return []
    c = client(db)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    out = []
    for r in c.search_runs([exp.experiment_id], max_results=5000):
        rec = RunRecord(r.info.run_id, r.info.run_name, r.info.status, dict(r.data.tags), dict(r.data.metrics),
                        artifact_root=r.info.artifact_uri)
        for key in (*COMPARED, "epoch"):
            hist: dict[int, list[tuple[int, float]]] = {}
            for m in c.get_metric_history(r.info.run_id, key):
                hist.setdefault(m.step, []).append((m.timestamp, m.value))
            rec.history[key] = hist
        if artifacts:
            rec.artifacts = _artifact_paths(c, r.info.run_id)
        out.append(rec)
    return out


def _artifact_paths(c, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for f in c.list_artifacts(run_id, path):
        out |= _artifact_paths(c, run_id, f.path) if f.is_dir else {f.path}
    return out


def local_artifact(rec: RunRecord, path: str) -> Path:
    """The file of a run's artifact in a local (``file://``) artifact store."""
    root = rec.artifact_root.removeprefix("file://")
    return Path(root) / path


def same_metrics(a: RunRecord, b: RunRecord, tol: float = 1e-6) -> list[str]:
    """How the metrics of two runs differ (empty if they agree): final values and every epoch's values."""
    out = []
    for key in COMPARED:
        va, vb = a.values(key), b.values(key)
        if sorted(va) != sorted(vb):
            out.append(f"{key}: steps {sorted(va)} != {sorted(vb)}")
            continue
        for step in va:
            if abs(va[step] - vb[step]) > tol:
                out.append(f"{key}@{step}: {va[step]} != {vb[step]}")
        for step, entries in a.history.get(key, {}).items():  # a step logged twice must repeat its value
            if max(v for _, v in entries) - min(v for _, v in entries) > tol:
                out.append(f"{key}@{step} logged twice with different values {entries}")
    return out


def checkpoint_problems(folder: Path) -> list[str]:
    """Checkpoints under ``folder`` (valid names, ``*.ckpt``) that do not load: half-written files."""
    import torch

    bad = []
    for p in sorted(folder.rglob("*.ckpt")):
        if p.name.startswith("."):
            continue
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure is a damaged file
            bad.append(f"{p}: {type(err).__name__}")
    return bad


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint holds (-1 if it does not exist or does not load)."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001
        return -1


def same_weights(a: Path, b: Path) -> bool:
    import torch

    sa = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def trials(db: Path, study: str) -> list[Any]:
    """The Optuna trials of ``study`` in the SQLite storage ``db``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
