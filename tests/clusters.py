"""Real engines for the scale-out tests, each in its own temporary folder, listening on 127.0.0.1 only, stopped after:

- :class:`Postgres`: a throwaway PostgreSQL cluster (``initdb`` / ``pg_ctl``; as the ``postgres`` user when the
  tests run as root, since PostgreSQL refuses root), password-protected, on a free port;
- :func:`asc_server`: the MLflow server as users start it (``asc server --db ...``), awaited on ``/health``;
- :class:`Slurm`: a one-node SLURM cluster (``munged``, ``slurmctld``, ``slurmd``) with its own munge key, config,
  ports and state.

``.ci/run`` installs the Debian packages (postgresql, slurm-wlm, munge); elsewhere a missing binary skips the test
with the package to install (under CI it fails instead, so CI never skips). Every daemon is stopped by the process
id it wrote, never by name.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(reason: str) -> None:
    """Skip (fail under CI, where ``.ci/run`` installs everything) with ``reason``."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs it)")
    pytest.skip(reason)


def find(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in extra_dirs:
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def stop_pid(pid: int, grace: float = 30.0) -> None:
    """SIGTERM to a process this module started (by its id), SIGKILL after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- PostgreSQL ---------------------------------------------------------------------------------------------------
class Postgres:
    """A PostgreSQL cluster in a temporary folder: user ``asc`` with a random password, on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        bindirs = sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))[::-1]
        self.initdb, self.pg_ctl = find("initdb", *bindirs), find("pg_ctl", *bindirs)
        if not (self.initdb and self.pg_ctl):
            missing("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)")
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root and there is no 'postgres' user to run PostgreSQL as (apt-get install postgresql)")
            runuser = find("runuser", "/usr/sbin", "/sbin")
            if runuser is None:
                missing("running as root and runuser (util-linux) is missing")
            self.as_user = [runuser, "-u", "postgres", "--"]
        # not pytest's tmp_path: its parents are private to root, and the server runs as postgres
        self.root = Path(tempfile.mkdtemp(prefix="asc-pg-"))
        if self.as_user:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.log = self.root / "postgres.log"
        self.started_in = float("nan")

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120, cwd=self.root)
        if proc.returncode:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{log}")

    def start(self) -> Postgres:
        t0 = time.perf_counter()
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_user:
            shutil.chown(pwfile, "postgres")
        self._run(self.initdb, "-D", str(self.data), "-U", "asc", "--pwfile", str(pwfile), "-A", "scram-sha-256",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.started_in = time.perf_counter() - t0
        return self

    def url(self, database: str) -> str:
        return f"postgresql://asc:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="asc", password=self.password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres() -> Iterator[Postgres]:
    pg = Postgres()
    try:
        yield pg.start()
    finally:
        pg.stop()


# -- the MLflow server, as users start it -------------------------------------------------------------------------
@contextmanager
def asc_server(root: Path, db: str, workers: int = 1) -> Iterator[dict]:
    """``asc server --db DB`` on a free port with artifacts in ``root/artifacts``; yields its url, folders and start time."""
    from asc.tracking.server import wait_healthy

    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    out = open(root / "asc-server.out", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "asc", "server", "--db", db, "--artifacts", str(root / "artifacts"),
           "--port", str(port), "--workers", str(workers), "--log", str(root / "mlflow-server.log")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout=300, log_file=root / "mlflow-server.log")
        yield {"url": url, "artifacts": root / "artifacts", "started_in": time.perf_counter() - t0, "proc": proc,
               "output": root / "asc-server.out"}
    finally:
        proc.send_signal(signal.SIGTERM)  # asc server stops mlflow server's process group, then exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()


# -- SLURM ----------------------------------------------------------------------------------------------------------
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "scancel")


class Slurm:
    """A one-node SLURM cluster (partition ``debug``) in a temporary folder; ``env`` points commands at it."""

    NODE = "asc-node"

    def __init__(self, root: Path) -> None:
        found = {name: find(name, "/usr/sbin", "/sbin") for name in SLURM_BINARIES}
        lacking = [name for name, path in found.items() if path is None]
        if lacking:
            missing(f"SLURM is not installed ({', '.join(lacking)} missing; apt-get install slurm-wlm munge)")
        self.bin = found
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.pids: list[Path] = []
        self.started_in = float("nan")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.bin.get(args[0], args[0]), *args[1:]], env=self.env, capture_output=True,
                              text=True, timeout=60)
        if check and proc.returncode:
            raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}\n{self.logs()}")
        return proc

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(self.root.glob("*.log")))

    def start(self, timeout: float = 60.0) -> Slurm:
        t0 = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        munge = self.root / "munge"
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        socket_path = munge / "munge.socket"
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        self.run("munged", "--force", f"--socket={socket_path}", f"--key-file={key}",
                 f"--pid-file={munge / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
                 f"--seed-file={munge / 'munged.seed'}")
        self.pids.append(munge / "munged.pid")
        host = socket.gethostname().split(".")[0]
        ctld, slurmd = free_port(), free_port()
        memory = 4000  # MB the node offers; the tests ask for 1 GB per job
        self.conf.write_text(f"""\
# A one-node test cluster: every daemon on 127.0.0.1, its own munge key, no accounting (so no sacct).
ClusterName=asc-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
SlurmUser={self.user}
SlurmdUser={self.user}
StateSaveLocation={self.root / 'state'}
SlurmdSpoolDir={self.root / 'spool'}
SlurmctldPidFile={self.root / 'slurmctld.pid'}
SlurmdPidFile={self.root / 'slurmd.pid'}
SlurmctldLogFile={self.root / 'slurmctld.log'}
SlurmdLogFile={self.root / 'slurmd.log'}
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
NodeName={self.NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={self.NODE} Default=YES MaxTime=INFINITE State=UP
""")
        self.run("slurmctld", "-i")
        self.pids.append(self.root / "slurmctld.pid")
        self.run("slurmd", "-N", self.NODE)
        self.pids.append(self.root / "slurmd.pid")
        deadline = time.monotonic() + timeout
        while self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SLURM node did not become idle within {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.25)
        self.started_in = time.perf_counter() - t0
        return self

    def jobs(self) -> dict[str, str]:
        """``{job id: state}`` of the queue (array tasks as ``<job>_<task>``)."""
        out = self.run("squeue", "-h", "-o", "%i %T", check=False).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        if (self.root / "slurmctld.pid").is_file():  # the controller started: cancel what is left of the jobs
            self.run("scancel", "--user", self.user, check=False)
            deadline = time.monotonic() + 30
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.5)
        for pid_file in reversed(self.pids):  # slurmd, slurmctld, then munged
            if pid_file.is_file():
                stop_pid(int(pid_file.read_text().split()[0]))


@contextmanager
def slurm(root: Path) -> Iterator[Slurm]:
    cluster = Slurm(root)
    try:
        yield cluster.start()
    finally:
        cluster.stop()

