"""The package as users install it: a wheel built from the checkout, installed into a fresh virtual environment
outside it, runs every command from there (the configs travel inside the wheel)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_OVERRIDES


def uv() -> list[str]:
    """The uv the Makefile uses (``$UV``), else the one on PATH, else ``python3 -m uv``."""
    if os.environ.get("UV"):
        return shlex.split(os.environ["UV"])
    return [shutil.which("uv")] if shutil.which("uv") else ["python3", "-m", "uv"]


def sh(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    """The command's standard output (it must succeed)."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """``(work folder, environment)`` with the wheel installed into ``work/venv`` (dependencies pinned by uv.lock)."""
    work = tmp_path_factory.mktemp("wheel")
    sh([*uv(), "build", "--out-dir", str(work / "dist"), "-q"], cwd=REPO)  # sdist, then the wheel from it
    (wheel,) = (work / "dist").glob("asc_scenes-*.whl")
    sh([*uv(), "export", "--project", str(REPO), "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "-q",
        "-o", str(work / "requirements.txt")], cwd=work)
    sh([*uv(), "venv", "-q", str(work / "venv"), "--python", sys.executable], cwd=work)
    # Not compiled at install (about 60 s for all of torch, SciPy, ...): the commands below write the bytecode of what
    # they import, once, and the later ones read it (PYTHONDONTWRITEBYTECODE is left out of their environment).
    sh([*uv(), "pip", "install", "-q", "--python", str(work / "venv" / "bin" / "python"), "-r",
        str(work / "requirements.txt"), str(wheel)], cwd=work, env={**os.environ, "UV_COMPILE_BYTECODE": "0"})
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    env["PATH"] = f"{work / 'venv' / 'bin'}{os.pathsep}{env['PATH']}"
    return work, env


@pytest.mark.slow
def test_installed_wheel_runs_every_command_outside_the_checkout(installed, tiny_data):
    work, env = installed
    python = str(work / "venv" / "bin" / "python")
    where = sh([python, "-c", "import asc, asc.config as c; print(asc.__file__); print(c.CONFIG_DIR)"], cwd=work, env=env)
    package, conf = where.split()[-2:]
    assert package.startswith(str(work / "venv")) and not package.startswith(str(REPO))  # not the checkout
    assert Path(conf) == Path(package).parent / "conf" and (Path(conf) / "config.yaml").is_file()
    assert not (Path(conf) / "local" / "default.yaml").exists()  # a machine's own paths never ship

    assert "figures" in sh(["asc", "--help"], cwd=work, env=env)
    assert "commands:" in sh([python, "-m", "asc", "--help"], cwd=work, env=env)
    sh(["asc", "synth", "scenes", "--cities", "1", "--locations", "1", "--segments", "1", "--duration", "6",
        "--workers", "1"], cwd=work, env=env)
    clip = next((work / "scenes" / "audio").glob("bus-*.wav"))
    figures = sh(["asc", "figures", str(clip), "--out", "figs", "--window", "3"], cwd=work, env=env)
    assert "image" in figures and len(list((work / "figs").glob("*.png"))) == 5
    extracted = sh(["asc", "extract", "scenes", "--cache", "cache", "--workers", "1", "--features", "mel",
                    "--no-progress"], cwd=work, env=env)
    assert "10 computed" in extracted and len(list((work / "cache").glob("mel-*/*.npy"))) == 10

    trained = sh(["asc", "train", *TINY_OVERRIDES, *tiny_data, "trainer.max_epochs=1", "logger.experiment=wheel"], cwd=work, env=env)
    last = trained.strip().splitlines()[-4:]  # the result is the last thing printed
    assert last[0].startswith("window=2,mask=0.1,seed=0: test accuracy"), trained[-2000:]
    assert last[1].startswith("not the paper's setup: data: synthetic scenes")
    assert (work / "mlflow.db").is_file() and list((work / "outputs" / "checkpoints").glob("*/best.ckpt"))
