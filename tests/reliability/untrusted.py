"""Untrusted files and addresses: a checkpoint carrying a pickle payload, archive members and metadata names that
leave their folder, and the address the project's server listens on.

- **Checkpoint.** A Lightning-shaped checkpoint whose pickle, when unpickled without ``weights_only``, would create a
  file (a stand-in for running any code). ``asc predict -m`` and ``asc export -m`` must refuse it with an error
  naming it, and the file must not exist afterwards.
- **Archive.** ``asc download`` from a fake Zenodo on 127.0.0.1 whose archive has a member named ``../x``,
  ``/abs/x`` or ``<dataset>/../../x``: refused with the member's name, nothing written outside the destination.
- **Metadata.** A TAU ``meta.csv`` and a folder dataset's ``labels.csv`` naming ``../outside.wav`` or an absolute path
  (a file that exists there): ``asc verify`` and ``asc extract`` refuse it with the name, and nothing is read from it.
- **Listening.** ``asc server`` with its defaults: every socket its process tree listens on is bound to 127.0.0.1.

Survived: refused with a clear message, no traceback, nothing created outside. Lost: a file written outside, or a
payload that ran.
"""

from __future__ import annotations

import random
import shutil
import socket
import time
from pathlib import Path

from reliability import data
from reliability.harness import Budget, Launched, Outcome, asc, environment, run, share_time

LIMIT = 300


class _Payload:
    """Unpickled, it opens (creates) ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _checkpoint_cases(work: Path, env: dict) -> list[Outcome]:
    import torch

    src = work / "clip.wav"
    data.recordings(work / "rec", 1)
    shutil.copy(work / "rec" / "clip000.wav", src)
    outcomes = []
    for command in ("predict", "export"):
        marker = work / f"payload-ran-{command}"
        evil = work / f"evil-{command}.ckpt"
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"x": _Payload(str(marker))}}, evil)
        assert not marker.exists()
        args = ["predict", "-m", str(evil), str(src)] if command == "predict" else \
            ["export", "-m", str(evil), "--out", str(work / "x.onnx"), "--no-latency"]
        t0 = time.monotonic()
        fin = run(asc(*args), work, env, LIMIT)
        ran = marker.exists()
        ok = fin.returncode != 0 and str(evil) in fin.output and not ran and not fin.tracebacks
        outcomes += share_time([Outcome("untrusted", "pickle checkpoint", f"asc {command} -m evil.ckpt", survived=ok,
                                        lost=int(ran), tracebacks=fin.tracebacks, hangs=int(fin.timed_out),
                                        note=fin.output.strip().splitlines()[-1][:300] if fin.output.strip() else "")], t0)
    return outcomes


def _archive_cases(work: Path, env: dict) -> list[Outcome]:
    from asc.data.download import DEV_DIRNAME
    from reliability.kills import _download_cmd
    from zenodo import Zenodo, zip_bytes

    outside = work / "outside"
    outcomes = []
    for i, bad in enumerate(["../escaped.txt", str(outside / "abs.txt"), f"{DEV_DIRNAME}/../../escaped2.txt",
                             f"{DEV_DIRNAME}/audio/../../../escaped3.txt"]):
        archives = {f"{DEV_DIRNAME}.meta.zip": zip_bytes({f"{DEV_DIRNAME}/meta.csv": b"filename\tscene_label\n",
                                                          bad: b"payload"})}
        dest = data.fresh(work / f"dl{i}") / "dest"
        zenodo = Zenodo(archives)
        t0 = time.monotonic()
        try:
            fin = run(_download_cmd(zenodo.record_url, dest), work, env, LIMIT)
        finally:
            zenodo.close()
        written = [p for p in (work / f"dl{i}").parent.rglob("escaped*")] + list(outside.glob("*"))
        ok = fin.returncode != 0 and bad in fin.output and not written and not fin.tracebacks
        outcomes += share_time([Outcome("untrusted", "archive member", f"member {bad!r}", survived=ok, lost=len(written),
                                        tracebacks=fin.tracebacks, hangs=int(fin.timed_out),
                                        note=fin.output.strip().splitlines()[-1][:300] if fin.output.strip() else "")], t0)
    return outcomes


def _metadata_cases(work: Path, env: dict) -> list[Outcome]:
    from reliability.kills import _extract_cmd

    secret = work / "secret" / "outside.wav"
    data.recordings(work / "secret-src", 1)
    secret.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "secret-src" / "clip000.wav", secret)
    outcomes = []
    for name in ("../secret/outside.wav", str(secret)):
        for command in ("verify", "extract"):
            root = data.recordings(data.fresh(work / f"meta-{command}-{len(outcomes)}") / "set", 2)
            (root / "labels.csv").write_text(f"filename,label\nclip000.wav,a\n{name},b\n")
            cache = root.parent / "cache"
            cmd = asc("verify", str(root), "--kind", "folder", "--no-progress") if command == "verify" else \
                _extract_cmd(root, cache)
            t0 = time.monotonic()
            fin = run(cmd, work, env, LIMIT)
            read = [p for p in cache.rglob("*outside*")] if cache.exists() else []
            ok = fin.returncode != 0 and name in fin.output and "outside" in fin.output and not read and not fin.tracebacks
            outcomes += share_time([Outcome("untrusted", "metadata name", f"asc {command}: {name!r}", survived=ok,
                                            lost=len(read), tracebacks=fin.tracebacks, hangs=int(fin.timed_out),
                                            note=fin.output.strip().splitlines()[-1][:300] if fin.output.strip() else "")], t0)
    return outcomes


def listening(pids: set[int]) -> list[tuple[str, int]]:
    """``(address, port)`` of every TCP socket in LISTEN state held by ``pids`` (read from /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = fd.readlink().as_posix()
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            hexaddr, hexport = f[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if family == socket.AF_INET:
                addr = socket.inet_ntop(family, raw[::-1])
            else:
                addr = socket.inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            out.append((addr, int(hexport, 16)))
    return out


def _tree(root_pids: set[int]) -> set[int]:
    """``root_pids``, their sessions' processes and their descendants."""
    found = set(root_pids)
    sessions = set()
    for pid in root_pids:
        try:
            sessions.add(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]))
        except (OSError, IndexError, ValueError):
            pass
    changed = True
    while changed:
        changed = False
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) in found:
                continue
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[1]) in found or int(f[3]) in sessions:
                found.add(int(d.name))
                changed = True
    return found


def _listen_case(work: Path, env: dict) -> list[Outcome]:
    from reliability.server import free_port

    port = free_port()
    folder = data.fresh(work / "server")
    t0 = time.monotonic()
    job = Launched(asc("server", "--db", f"sqlite:///{folder / 'server.db'}", "--artifacts", str(folder / "art"),
                       "--port", str(port), "--workers", "1"), folder, env)
    ready = job.wait_for("ready", 180)
    addrs = listening(_tree({job.proc.pid})) if ready is not None else []
    # the mlflow server runs in a session of its own: find it by its port, then its tree
    if ready is not None:
        owners = {int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                  and any(a for a in listening({int(d.name)}) if a[1] == port)}
        addrs = sorted(set(addrs) | set(listening(_tree(owners))))
    job.proc.terminate()
    fin = job.finish(60)
    ok = ready is not None and bool(addrs) and all(a == "127.0.0.1" for a, _ in addrs)
    return share_time([Outcome("untrusted", "server address", f"asc server (defaults) listens on {addrs}", survived=ok,
                               tracebacks=0 if ok else fin.tracebacks, hangs=int(ready is None),
                               note="" if ok else fin.tail(500))], t0)


def run_all(work: Path, count: int, rng: random.Random, budget: Budget) -> list[Outcome]:
    """Every untrusted-file case (``count`` is not used: the cases are a fixed list)."""
    env = environment()
    work.mkdir(parents=True, exist_ok=True)
    out = _checkpoint_cases(work, env)
    out += _archive_cases(work, env)
    out += _metadata_cases(work, env)
    out += _listen_case(work, env)
    return out
