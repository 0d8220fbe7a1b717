"""The MLflow and Optuna SQLite stores: several processes may open a new one at the same moment."""

import subprocess
import sys
import textwrap
import time
from contextlib import nullcontext

import pytest

from asc.tracking.store import schema_lock

OPEN_AT = textwrap.dedent(
    """
    import sys, time
    from asc.runs.tune import make_storage
    from asc.tracking.store import TrackingStore
    mlflow_uri, optuna_url, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    TrackingStore(mlflow_uri, explicit=True).client
    make_storage(optuna_url)
    """
)


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_store_together_all_succeed(tmp_path):
    # Without the lock, two of three processes fail here with "table _alembic_tmp_... already exists".
    mlflow_uri, optuna_url = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    start = time.time() + 10  # after every interpreter has imported mlflow
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, mlflow_uri, optuna_url, str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(o[-2000:] for o in outs)
    from mlflow import MlflowClient

    assert MlflowClient(mlflow_uri).get_experiment_by_name("Default") is not None


def test_schema_lock_only_for_sqlite_files(tmp_path):
    assert isinstance(schema_lock("postgresql://u@127.0.0.1/db"), nullcontext)
    assert isinstance(schema_lock("sqlite://"), nullcontext)  # in memory
    assert isinstance(schema_lock("not a url"), nullcontext)
    assert isinstance(schema_lock(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"), nullcontext)
    assert not (tmp_path / "missing").exists()  # no folder made on the side
    with schema_lock(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        assert (tmp_path / "mlflow.db.lock").exists()


def _schema_and_rows(path):
    """Every table's, index's and trigger's SQL, and each table's rows (without the default experiment's time
    stamps and artifact folder, which name the moment and the place the store was made). The SQL's lines are
    compared as a set: MLflow's own migrations write a table's constraints in an order that changes from one
    process to the next (Python's string hashing), so two stores it makes itself differ in that order alone."""
    import sqlite3

    def lines(sql):
        return sorted(line.strip().rstrip(",").strip() for line in (sql or "").splitlines())

    with sqlite3.connect(path) as db:
        schema = sorted((kind, name, lines(sql)) for kind, name, sql in
                        db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
        tables = [name for kind, name, _ in schema if kind == "table"]
        rows = {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"'))) for t in tables if t != "experiments"}
        rows["experiments"] = list(db.execute("SELECT experiment_id, name, lifecycle_stage FROM experiments"))
    db.close()
    return schema, rows


def test_a_new_sqlite_store_is_a_copy_of_the_schema_template_and_equals_mlflows_own(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from asc.tracking.store import TrackingStore, schema_template

    monkeypatch.setenv("ASC_CACHE_HOME", str(tmp_path / "home"))
    template = schema_template()
    assert template.parent == tmp_path / "home" and not template.exists()
    copied = tmp_path / "asc.db"
    client = TrackingStore(f"sqlite:///{copied}", explicit=True).client
    assert template.is_file() and [p.name for p in template.parent.iterdir()] == [template.name]  # no temporary left
    mlflows = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # MLflow's own migrations
    ours, theirs = _schema_and_rows(copied), _schema_and_rows(tmp_path / "mlflow.db")
    assert ours == theirs and ours[1]["alembic_version"]  # same tables, same schema revision, same rows
    assert _schema_and_rows(template)[1]["experiments"] == []  # the template names no store's artifact folder
    # MLflow adds the default experiment to the copy as to its own store: its folder is where MLflow puts it now
    assert client.get_experiment("0").artifact_location == mlflows.get_experiment("0").artifact_location
    run = client.create_run(client.create_experiment("e"))  # a working store
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_a_store_is_made_by_mlflow_where_no_template_can_be_written(tmp_path, monkeypatch):
    from asc.tracking.store import TrackingStore, create_sqlite_store

    (tmp_path / "home").write_text("a file where the template's folder would be")
    monkeypatch.setenv("ASC_CACHE_HOME", str(tmp_path / "home"))
    assert not create_sqlite_store(tmp_path / "asc.db") and not (tmp_path / "asc.db").exists()
    client = TrackingStore(f"sqlite:///{tmp_path / 'asc.db'}", explicit=True).client
    assert client.get_experiment_by_name("Default") is not None


@pytest.mark.slow
def test_a_run_ends_only_when_everything_is_recorded_not_when_lightning_finalizes(tmp_path):
    """Lightning finalizes its loggers when fit ends, before test: a run killed in between must not look FINISHED
    (a sweep's rerun would skip it without its test results; found by the reliability suite, kill:sweep)."""
    from asc.tracking.store import TrackingStore

    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}", explicit=True)
    logger = store.logger("finalize", "run", {"config_hash": "abc"}, str(tmp_path / "artifacts"))
    logger.log_metrics({"val/acc": 0.5}, step=0)
    logger.finalize("success")  # what Trainer.fit does at its end
    assert store.client.get_run(logger.run_id).info.status == "RUNNING"
    logger.end("success")
    assert store.client.get_run(logger.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("lost", ["IntegrityError", "ProgrammingError", "OperationalError"])
def test_a_worker_that_loses_the_create_table_race_opens_the_storage_on_retry(lost, monkeypatch):
    # PostgreSQL reports the loser of a concurrent CREATE TABLE as DuplicateTable (ProgrammingError) or as a
    # pg_type unique violation (IntegrityError); CI stop 24 failed on the first one before it was retried
    import sqlalchemy

    from asc.runs import tune

    monkeypatch.setattr(tune.time, "sleep", lambda s: None)
    calls = []

    def open_fn():
        calls.append(1)
        if len(calls) == 1:
            raise getattr(sqlalchemy.exc, lost)("CREATE TABLE studies", {}, Exception('relation "studies" already exists'))
        return "storage"

    assert tune._first_open(open_fn) == "storage" and len(calls) == 2


def test_a_storage_that_keeps_failing_is_not_retried_forever(monkeypatch):
    import sqlalchemy

    from asc.runs import tune

    monkeypatch.setattr(tune.time, "sleep", lambda s: None)
    calls = []

    def open_fn():
        calls.append(1)
        raise sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("permission denied"))

    with pytest.raises(sqlalchemy.exc.ProgrammingError):
        tune._first_open(open_fn, tries=3)
    assert len(calls) == 3
