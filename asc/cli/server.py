"""``asc server``: the team's MLflow tracking server (see :mod:`asc.tracking.server`), in the foreground until Ctrl-C.

    asc server                                        # sqlite:///mlflow.db, artifacts in mlartifacts/, 127.0.0.1:5000
    asc server --db postgresql://asc:PW@dbhost/mlflow --host 0.0.0.0 --allowed-hosts 'head,head:*'
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from asc.tracking.server import ServerError, ServerSettings, running
from asc.tracking.store import DEFAULT_URI, TrackingStore, absolute_uri


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _stop_on_sigterm(signum, frame) -> None:  # noqa: ANN001 - a signal handler
    raise KeyboardInterrupt  # unwinds through `running`, which stops the server's process group


def main(argv: list[str] | None = None) -> None:
    defaults = ServerSettings()
    p = argparse.ArgumentParser(
        prog="asc server",
        description="Run an MLflow tracking server for a team or a cluster: runs in a database (PostgreSQL, or "
                    "SQLite by default), artifacts uploaded and downloaded through the server. Clients set "
                    "MLFLOW_TRACKING_URI=http://HOST:PORT. Stays in the foreground until Ctrl-C.",
    )
    p.add_argument("--db", default=DEFAULT_URI,
                   help=f"backend store URL, e.g. postgresql://user:pw@dbhost:5432/mlflow (default: {DEFAULT_URI})")
    p.add_argument("--artifacts", default=defaults.artifacts,
                   help="where the server keeps artifacts: a folder on this machine or an object-store URI "
                        f"(default: {defaults.artifacts}/)")
    p.add_argument("--host", default=defaults.host,
                   help=f"interface to listen on (default: {defaults.host}, this machine only; 0.0.0.0 for a cluster)")
    p.add_argument("--port", type=int, default=defaults.port, help=f"port (default: {defaults.port})")
    p.add_argument("--workers", type=int, default=defaults.workers, help=f"server processes (default: {defaults.workers})")
    p.add_argument("--allowed-hosts", help="Host headers to accept besides localhost and private IPs, e.g. 'head,head:*' "
                                           "when clients use the server's name")
    p.add_argument("--log", type=Path, help="write the server's output to this file instead of the console")
    a = p.parse_args(argv)
    settings = ServerSettings(a.db, a.artifacts, a.host, a.port, a.workers, a.allowed_hosts)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with running(settings, a.log) as server:
            local = settings.host in ("127.0.0.1", "localhost", "::1")
            where = settings.url if local else f"http://{socket.gethostname()}:{settings.port}"
            print(f"MLflow server ready in {server.started_in:.1f} s on {settings.host}:{settings.port} "
                  f"(runs in {_hide_password(absolute_uri(settings.backend))}, artifacts in {settings.artifacts_destination})\n"
                  f"clients: export MLFLOW_TRACKING_URI={where}", flush=True)
            store = TrackingStore(settings.backend, explicit=True)  # the database itself, not through the server
            links = [f"  {name}: {store.ui_url(exp_id, base=where)}" for exp_id, name in store.experiments()
                     if name != "Default"]
            if links:  # MLflow's UI opens experiments on a GenAI overview unless the link asks for training runs
                print("training runs, per experiment:\n" + "\n".join(links), flush=True)
            server.proc.wait()
            raise ServerError(f"mlflow server stopped with status {server.proc.returncode}")
    except KeyboardInterrupt:
        print("asc server: stopped", file=sys.stderr)
    except ServerError as err:
        print(f"asc server: {err}", file=sys.stderr)
        raise SystemExit(1) from None
