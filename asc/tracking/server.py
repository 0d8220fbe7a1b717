"""The team's tracking server: ``mlflow server`` on a database, with artifacts proxied through it.

    asc server                                                   # SQLite (mlflow.db) + mlartifacts/, 127.0.0.1:5000
    asc server --db postgresql://asc:PW@dbhost/mlflow --host 0.0.0.0 --allowed-hosts 'head,head:*'

Clients anywhere (training jobs on other nodes, ``asc report``, a laptop) set
``MLFLOW_TRACKING_URI=http://HOST:PORT``: runs, params and metrics go into the database, artifacts go *through the
server* into ``artifacts`` (a folder on the server's machine, or an object store URI the server can write). New
experiments get ``mlflow-artifacts:/`` as their artifact root, so no client needs the artifact store's credentials
or a shared file system (:class:`asc.tracking.store.TrackingStore` creates its experiments without a local folder
on a server for the same reason).

The server has started when its ``/health`` endpoint answers ``200`` (:func:`wait_healthy`): on an empty
PostgreSQL database it first creates MLflow's tables, which takes seconds to a minute.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from asc.tracking.store import DEFAULT_URI, absolute_uri

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The server did not start (or stopped): the message carries the end of its log."""


@dataclass(frozen=True)
class ServerSettings:
    """How to run the server. ``backend``: a SQLAlchemy URL (``postgresql://user:pw@host/db``, ``sqlite:///file.db``);
    ``artifacts``: a folder (made absolute) or a URI (``s3://bucket/prefix``...)."""

    backend: str = DEFAULT_URI
    artifacts: str = "mlartifacts"
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    allowed_hosts: str | None = None  # extra Host headers to accept (names other than localhost / private IPs)

    @property
    def url(self) -> str:
        """Where this machine reaches the server (a server on every interface is reached through 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def artifacts_destination(self) -> str:
        return self.artifacts if "://" in self.artifacts else str(Path(self.artifacts).resolve())

    def command(self) -> list[str]:
        """The ``mlflow server`` command line."""
        cmd = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", absolute_uri(self.backend),
               "--serve-artifacts", "--artifacts-destination", self.artifacts_destination,
               "--default-artifact-root", "mlflow-artifacts:/",
               "--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        if self.allowed_hosts:
            cmd += ["--allowed-hosts", self.allowed_hosts]
        return cmd


def healthy(url: str, timeout: float = 5.0) -> bool:
    """Whether the server at ``url`` answers ``GET /health`` with 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 300.0,
                 log_file: Path | None = None) -> float:
    """Poll ``url/health`` until it answers 200; returns the seconds waited.

    Raises :class:`ServerError` (with the end of ``log_file``) if ``proc`` exits first or ``timeout`` passes.
    """
    start = time.monotonic()
    delay = 0.1
    while not healthy(url):
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"mlflow server exited with status {proc.returncode} before {url}/health answered"
                              f"{_tail(log_file)}")
        if time.monotonic() - start > timeout:
            raise ServerError(f"{url}/health did not answer within {timeout:.0f} s{_tail(log_file)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    return time.monotonic() - start


def _tail(log_file: Path | None, chars: int = 3000) -> str:
    if log_file is None or not Path(log_file).is_file():
        return ""
    return f"; the end of its log ({log_file}):\n{Path(log_file).read_text(errors='replace')[-chars:]}"


@dataclass
class Server:
    """A running server: its settings, process and the seconds it took to answer ``/health``."""

    settings: ServerSettings
    proc: subprocess.Popen
    started_in: float

    @property
    def url(self) -> str:
        return self.settings.url


@contextmanager
def running(settings: ServerSettings, log_file: Path | None = None, timeout: float = 300.0) -> Iterator[Server]:
    """Start ``mlflow server``, wait until it is healthy, yield it, and stop it (and its workers) afterwards.

    Its output goes to ``log_file`` (else to this process's). A port already taken is an error, not a second server.
    """
    if healthy(settings.url, timeout=2):
        raise ServerError(f"something already answers on {settings.url}; choose another --port")
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no background job runner (GenAI features)
    out: TextIO | None = open(log_file, "a") if log_file else None  # noqa: SIM115 - closed below
    # its own process group: the server and its uvicorn workers are stopped together
    proc = subprocess.Popen(settings.command(), env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                            start_new_session=True)
    try:
        started_in = wait_healthy(settings.url, proc, timeout, log_file)
        yield Server(settings, proc, started_in)
    finally:
        stop(proc)
        if out is not None:
            out.close()


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
