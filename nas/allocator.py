"""Run the command under tcmalloc where the system has it.

glibc's malloc serves every allocation above its mmap threshold (at most 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap``, so each large activation tensor costs page
faults on every step. On the 2-core virtual machines this project is measured on, that
kernel time exceeded the compute: training EfficientNet-B0 at 96 px ran at 37 images/s with
glibc and 71 with tcmalloc, evaluation 2.6x faster (``benchmarks/bench_allocator.py``). The
allocator must be chosen before the process starts, so the command re-executes itself once
with ``LD_PRELOAD``; the process keeps its PID and arguments. ``NAS_MALLOC=system`` turns
this off. Torch-free and run before anything heavy is imported.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Optional

# Debian/Ubuntu package libtcmalloc-minimal4 (setup.sh installs it where apt exists).
TCMALLOC_PATTERNS = ("/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4",
                     "/usr/lib64/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")
# tcmalloc writes a line to stderr for every allocation above 1 GiB by default; a CLI whose
# errors are one line must not gain others.
QUIET_LARGE_ALLOCS = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 50)}


def tcmalloc_path() -> Optional[str]:
    for pattern in TCMALLOC_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def reexec_with_tcmalloc() -> None:
    """Replace this process with the same command under tcmalloc; return if that is not
    possible or not wanted (already preloaded, ``NAS_MALLOC=system``, no library)."""
    if os.environ.get("NAS_MALLOC", "tcmalloc") == "system" or not sys.platform.startswith("linux"):
        return
    preload = os.environ.get("LD_PRELOAD", "")
    if "tcmalloc" in preload:
        return
    library = tcmalloc_path()
    if library is None or not sys.executable:
        return
    env = {**os.environ, **QUIET_LARGE_ALLOCS, "LD_PRELOAD": f"{library} {preload}".strip()}
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:
        return  # run on as we are: the allocator is a speed-up, not a requirement
