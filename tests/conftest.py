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
