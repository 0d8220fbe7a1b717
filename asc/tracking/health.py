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

import os
import time
import urllib.error
import urllib.request

#: The store used when neither ``MLFLOW_TRACKING_URI`` nor the config names one.
DEFAULT_URI = "sqlite:///mlflow.db"


class TrackingError(RuntimeError):
    """The store cannot be used as asked: no such store, run or artifact, or no server answers. The message names
    the store."""


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


def check_server(uri: str, tries: int = 3, timeout: float = 2.0, pause: float = 0.5) -> None:
    """Raise :class:`TrackingError` if ``uri`` is a tracking server and nothing answers there after ``tries`` tries
    (at most ``tries * timeout + (tries - 1) * pause`` seconds); other stores pass at once."""
    if not is_server(uri):
        return
    for attempt in range(tries):
        why = unreachable(uri, timeout)
        if why is None:
            return
        if attempt < tries - 1:
            time.sleep(pause)
    raise TrackingError(
        f"no MLflow tracking server answers at {uri} ({why}). Start it (`asc server`, `make server`) or point "
        "MLFLOW_TRACKING_URI (or logger.tracking_uri) at one that runs; unset it to use the local store "
        f"{DEFAULT_URI}"
    )
