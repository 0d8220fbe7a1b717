"""Whether the tracking store can be reached: asked in seconds, before a command loads torch or MLflow.

MLflow's client retries a request that finds no server (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7, with
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` 2 and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` 120 s per request): a run pointed at a
closed port waited 263 s and then died with MLflow's traceback. :func:`check_server` asks the server's ``/health``
page a few times within about 7 seconds and raises :class:`TrackingError` naming the address and what to do. It is
called before anything talks to a server (:attr:`asc.tracking.store.TrackingStore.client`) and by ``asc train`` and
``asc tune`` before their heavy imports. Those retries still apply once a run has started: a server restarted
within them is not noticed (about 4 minutes by default; set the variables lower to stop sooner).

Only the standard library is imported here.
"""

from __future__ import annotations

import difflib
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from asc.errors import UserMistake

#: The store used when neither ``MLFLOW_TRACKING_URI`` nor the config names one.
DEFAULT_URI = "sqlite:///mlflow.db"


class TrackingError(RuntimeError):
    """The store cannot be used as asked: no such store, run or artifact, or no server answers. The message names
    the store."""


class NoStore(TrackingError, UserMistake):
    """The tracking store the user named cannot be used: an unknown kind of URI, or no server answers there."""


#: The URI schemes MLflow's tracking client takes (a SQLAlchemy dialect may add a driver: ``postgresql+psycopg2``).
SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc")


def resolve_uri(uri: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` wins; else ``uri`` (the config's), else :data:`DEFAULT_URI`.

    ``mlflow.set_tracking_uri`` (which Lightning calls) exports that variable for the rest of the process:
    code that uses several stores in one process (tests) clears it between them.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or uri or DEFAULT_URI


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def unreachable(uri: str, timeout: float = 2.0) -> str | None:
    """Why nothing answers at the tracking server ``uri`` (None if something does, whatever its HTTP status)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:  # an answer: a proxy, a login, an older server without /health
        return None
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err)) or type(err).__name__


def stopped_answering(uri: str, run_id: str, why: str, err: BaseException, kept: str = "", then: str = "") -> TrackingError:
    """The error of a run whose tracking server at ``uri`` stopped answering (``why``; the failed call raised
    ``err``): what is ``kept`` locally and to rerun once the server is back (the run resumes, ``then`` ...)."""
    return TrackingError(
        f"the MLflow tracking server at {uri} stopped answering during run {run_id} ({why}; {type(err).__name__}). "
        f"Nothing is lost{': ' + kept if kept else ''}. When the server answers again, rerun the same command: the run "
        f"resumes from its last checkpoint{then}"
    )


def _named(uri: str) -> str:
    """Where ``uri`` was set, as the user would write it."""
    return f"MLFLOW_TRACKING_URI={uri}" if os.environ.get("MLFLOW_TRACKING_URI") == uri else f"logger.tracking_uri={uri}"


def check_uri(uri: str) -> None:
    """Raise :class:`NoStore` if ``uri`` is of a kind MLflow has no store for (``sqlit:///x.db``): said at once,
    where MLflow would say it in a traceback after the run had started. A plain path (a folder) passes."""
    scheme = urlsplit(uri).scheme.lower()
    if not scheme or len(scheme) == 1:  # a path; a Windows drive letter
        return
    if scheme.split("+", 1)[0] in SCHEMES:
        return
    close = difflib.get_close_matches(scheme, SCHEMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise NoStore(f"{_named(uri)}: MLflow has no store of the kind {scheme!r}{hint}; give sqlite:///FILE.db (the "
                  f"default {DEFAULT_URI}), a folder, http(s)://HOST:PORT of a tracking server, or a database URL "
                  "(postgresql://, mysql://)")


def check_server(uri: str, tries: int = 3, timeout: float = 2.0, pause: float = 0.5) -> None:
    """Raise :class:`NoStore` if ``uri`` is not a kind of store MLflow knows (:func:`check_uri`), or is a tracking
    server and nothing answers there after ``tries`` tries (at most ``tries * timeout + (tries - 1) * pause``
    seconds); other stores pass at once."""
    check_uri(uri)
    if not is_server(uri):
        return
    for attempt in range(tries):
        why = unreachable(uri, timeout)
        if why is None:
            return
        if attempt < tries - 1:
            time.sleep(pause)
    raise NoStore(
        f"no MLflow tracking server answers at {uri} ({why}). Start it (`asc server`, `make server`) or point "
        "MLFLOW_TRACKING_URI (or logger.tracking_uri) at one that runs; unset it to use the local store "
        f"{DEFAULT_URI}"
    )
