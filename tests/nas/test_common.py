"""nas.common's process helper: workers die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A parent with one spawned pool worker that is busy (sleeping) when the parent is killed,
# so nothing but the death signal can end it: an idle worker would exit on its own when
# its task queue closes.
PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from nas.common import die_with_parent

pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"),
                           initializer=die_with_parent if sys.argv[1] == "yes" else None)
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 60)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a container's init may reap an orphan late


def _worker_after_parent_killed(die: bool) -> bool:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "yes" if die else "no"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              # the killed parent's resource tracker reports its leaks
                              stderr=subprocess.DEVNULL)
    worker = int(parent.stdout.readline())
    try:
        time.sleep(0.5)  # the sleep task has reached the worker
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        return _alive(worker)
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_with_its_killed_parent_only_when_asked():
    assert not _worker_after_parent_killed(die=True)
    assert _worker_after_parent_killed(die=False)  # what happened before die_with_parent


@pytest.mark.parametrize("argv, parsed", [
    (["search", "--target-flops", "-5M"], ["search", "--target-flops=-5M"]),
    (["search", "--target", "-1e3", "--n-trials", "3"], ["search", "--target=-1e3", "--n-trials", "3"]),
    (["search", "--target-flops", "-.5G"], ["search", "--target-flops=-.5G"]),
    # argparse already reads these as values, or they are no values at all
    (["scale", "--phi", "-1"], ["scale", "--phi", "-1"]),
    (["search", "--target-flops", "-0.5"], ["search", "--target-flops", "-0.5"]),
    (["search", "--target-flops=400M", "-5M"], ["search", "--target-flops=400M", "-5M"]),
    (["report", "--", "-5M"], ["report", "--", "-5M"]),
    (["search", "-q", "-5M"], ["search", "-q", "-5M"]),
    (["search", "--bogus", "-verbose"], ["search", "--bogus", "-verbose"]),
])
def test_a_value_with_a_dash_is_attached_to_its_option(argv, parsed):
    from nas.cli import attach_dashed_values

    assert attach_dashed_values(argv) == parsed
