"""`nas` re-executes itself under tcmalloc once, keeping its PID and arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.allocator import tcmalloc_path

REPO = Path(__file__).resolve().parents[2]
# Prints its PID before and after the re-exec, then whether tcmalloc is mapped in.
PROBE = ("import os, sys; print(os.getpid(), flush=True); "
         "from nas.allocator import reexec_with_tcmalloc; reexec_with_tcmalloc(); "
         "print(os.getpid(), any('tcmalloc' in line for line in open('/proc/self/maps')), "
         "sys.argv[1:])")


def probe(**env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "NAS_MALLOC")}
    done = subprocess.run([sys.executable, "-c", PROBE, "one", "two"], capture_output=True,
                          text=True, check=True, env={**environment, **env,
                                                      "PYTHONPATH": str(REPO)})
    assert done.stderr == ""
    return done.stdout.splitlines()


@pytest.mark.skipif(tcmalloc_path() is None, reason="libtcmalloc-minimal4 is not installed")
def test_reexec_loads_tcmalloc_once_with_the_same_pid_and_arguments():
    first, second, third = probe()  # the probe's first line comes from both processes
    pid = first
    assert second == pid and third == f"{pid} True ['one', 'two']"


def test_nas_malloc_system_keeps_glibc():
    pid, result = probe(NAS_MALLOC="system")
    assert result == f"{pid} False ['one', 'two']"
