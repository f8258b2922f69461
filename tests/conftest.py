"""Shared fixtures: a real PostgreSQL server for the multi-worker tests.

The server comes from the Debian ``postgresql`` package (``initdb`` and ``pg_ctl`` under
``/usr/lib/postgresql/*/bin``); setup.sh installs it. It runs on 127.0.0.1 at a free port,
from a temporary folder, as the ``postgres`` user when the tests run as root (PostgreSQL
refuses to run as root), and is stopped when the session ends. The test role has a
password, so the tests can prove it never leaks and that a wrong one is refused.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

ROLE, DATABASE = "nas", "nas"


def postgres_bin_dir() -> Optional[Path]:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")
                  if all(os.access(Path(p) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres"))]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server(*, max_connections: int = 100) -> Iterator[str]:
    """Start a throw-away PostgreSQL server; yields ``postgresql://nas:PASSWORD@127.0.0.1:PORT/nas``.

    Durability is off (``fsync=off``): the data is thrown away afterwards, and the tests
    and benchmarks measure the coordination, not the disk."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin; "
                                "install the Debian 'postgresql' package (setup.sh does)")
    import psycopg2  # a dependency of the project (psycopg2-binary)

    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="nas-postgres-"))
    run_as: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    admin_password, password = secrets.token_hex(12), secrets.token_hex(12)
    (root / "pwfile").write_text(admin_password + "\n")
    if as_root:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pwfile", "postgres", "postgres")
    data, port = root / "data", _free_port()

    def tool(name: str, *args: str) -> None:
        done = subprocess.run([*run_as, str(bin_dir / name), *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr.strip()}")

    try:
        tool("initdb", "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={root / 'pwfile'}", "--encoding=UTF8", "--no-sync")
        tool("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
             "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} "
                   f"-c max_connections={max_connections} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off", "start")
        admin = psycopg2.connect(host="127.0.0.1", port=port, user="postgres",
                                 password=admin_password, dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD %s", (password,))
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        admin.close()
        yield f"postgresql://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                tool("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def pytest_configure(config) -> None:
    """In a parallel run (pytest-xdist, ``-n`` in pyproject.toml), give each test worker
    its own share of the cores. Torch sizes its thread pool, and ``nas`` its workers, by
    the cores a process may use; without this, two test workers on two cores each run
    two threads, and the four threads slow each other down several times over."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(
        "PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores, index, count = sorted(os.sched_getaffinity(0)), int(worker[2:]), int(count)
    _machine_cores.update(cores)
    if len(cores) >= count:
        os.sched_setaffinity(0, cores[index::count])


_machine_cores: set[int] = set()  # every core, before a parallel run's worker was pinned


@pytest.fixture
def whole_machine() -> Iterator[None]:
    """For a test of what ``nas`` does with all of a machine's cores (``--jobs``): lifts
    the pinning of a parallel run while it runs."""
    pinned = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if pinned is not None and _machine_cores:
        os.sched_setaffinity(0, _machine_cores)
    try:
        yield
    finally:
        if pinned is not None and _machine_cores:
            os.sched_setaffinity(0, pinned)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database on a real PostgreSQL server, with a password-protected role.

    Tests that use it share the server; each should use its own study name."""
    if postgres_bin_dir() is None:
        print("\nPostgreSQL tests skipped: no binaries under /usr/lib/postgresql/*/bin "
              "(apt-get install postgresql, or run ./setup.sh)")
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql/*/bin; "
                    "apt-get install postgresql (setup.sh does)")
    started = time.monotonic()
    with postgres_server() as url:
        print(f"\nPostgreSQL ready in {time.monotonic() - started:.1f} s")
        yield url
