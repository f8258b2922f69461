"""Ctrl-C and SIGTERM: a stop request that long work honours, a second signal that stops at
once, and handlers that do not depend on the disposition a process inherited (a background
job of a non-interactive shell starts with SIGINT ignored)."""

from __future__ import annotations

import csv
import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from nas.cli import main
from nas.signals import (OutOfTime, StopRequested, check_stop, deadline, handle_signals,
                         stop_requested)

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NAS_MALLOC": "system"}
# One small stage: training steps take milliseconds, so a stop request is honoured at once.
TINY_SPACE = textwrap.dedent("""
    stem_channels = 8
    head_channels = 16
    resolution = 32
    [choices]
    kernel_size = [3, 5]
    expand_ratio = [1, 3]
    se_ratio = [0]
    layers_delta = [0]
    width_multiplier = [1.0]
    [[stages]]
    out_channels = 8
    num_layers = 1
    stride = 2
""")


def _ignore_sigint() -> None:
    """What a background job of a non-interactive shell starts with."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def write_tiny_fashion_mnist(folder: Path, train: int = 600, test: int = 100) -> Path:
    """The first images of the real IDX files, as a Fashion-MNIST folder of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        for kind, header, item in (("images-idx3-ubyte", 16, 784), ("labels-idx1-ubyte", 8, 1)):
            with gzip.open(FASHION / f"{prefix}-{kind}.gz", "rb") as stream:
                raw = bytearray(stream.read(header + count * item))
            raw[4:8] = count.to_bytes(4, "big")
            with gzip.open(folder / f"{prefix}-{kind}.gz", "wb", compresslevel=1) as out:
                out.write(bytes(raw))
    return folder


def _running_evaluations(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
        try:
            return connection.execute(
                "SELECT count(*) FROM trials t JOIN trial_user_attributes a ON "
                "a.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND a.key = 'evaluator'"
            ).fetchone()[0]
        except sqlite3.OperationalError:  # the tables are being created
            return 0


def _search_argv(tmp_path: Path) -> list[str]:
    data = write_tiny_fashion_mnist(tmp_path / "data")
    (tmp_path / "tiny.toml").write_text(TINY_SPACE)
    # 1,000 epochs: the trial is still training whenever the signal comes.
    return ["search", "--target-flops", "1M", "--cost-window", "0", "--prescreen", "none",
            "--proxy-subset", "256", "--proxy-val-size", "50", "--proxy-epochs", "1000",
            "--proxy-resolution", "16", "--n-trials", "3", "--space", str(tmp_path / "tiny.toml"),
            "--data", str(data), "--runs", str(tmp_path / "runs"), "--study", "s", "--quiet",
            "--references", "none"]


def _wait_for_training(database: Path, alive=lambda: True) -> None:
    deadline = time.monotonic() + 60
    while not _running_evaluations(database):
        assert alive(), "the search ended before any trial trained"
        assert time.monotonic() < deadline, "no trial started training"
        time.sleep(0.05)
    time.sleep(0.3)  # into the training steps


def test_sigint_stops_a_search_started_with_sigint_ignored_and_writes_outputs(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "nas", *_search_argv(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV, preexec_fn=_ignore_sigint)
    try:
        _wait_for_training(tmp_path / "runs" / "s" / "study.db",
                           alive=lambda: process.poll() is None)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "stopping at the next safe point" in err
    rows = list(csv.DictReader((tmp_path / "runs" / "s" / "trials.csv").open()))
    # Pruned as interrupted: it holds no share of the budget, and a rerun goes on.
    assert [(row["state"], row["note"]) for row in rows] == [
        ("PRUNED", "interrupted by SIGINT during its evaluation; not counted")]
    assert "0 complete" in out  # the summary was printed


@pytest.mark.parametrize("count", [1, 2])
def test_sigterm_stops_a_search_cleanly_and_a_second_one_at_once(tmp_path, capfd, count):
    argv = _search_argv(tmp_path)

    def send() -> None:
        _wait_for_training(tmp_path / "runs" / "s" / "study.db")
        for _ in range(count):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert main(argv) == 128 + signal.SIGTERM
    sender.join()
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "SIGTERM: stopping at the next safe point" in err
    if count == 1:  # the trial is failed cleanly and the outputs are written
        rows = list(csv.DictReader((tmp_path / "runs" / "s" / "trials.csv").open()))
        assert [(row["state"], row["note"]) for row in rows] == [
            ("PRUNED", "interrupted by SIGTERM during its evaluation; not counted")]
        assert "no trial completed yet" in out


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # Python runs handlers between bytecodes of the main thread


def test_first_signal_requests_a_stop_and_the_second_raises_at_once():
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with handle_signals(graceful=True):
            assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
            _deliver(signal.SIGINT)
            assert stop_requested() == "SIGINT"
            with pytest.raises(StopRequested):
                _deliver(signal.SIGTERM)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # restored
        with pytest.raises(StopRequested), handle_signals(graceful=False):
            assert stop_requested() is None  # a new outermost block starts afresh
            _deliver(signal.SIGTERM)  # outside long work: at once
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_third_signal_ends_the_process_when_the_second_was_swallowed():
    script = textwrap.dedent("""
        import os, signal, time
        from nas.signals import handle_signals
        with handle_signals(graceful=True):
            os.kill(os.getpid(), signal.SIGTERM)
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except BaseException:
                pass  # swallowed, as a library's callback would
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        print("still running")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=ENV, timeout=30)
    assert done.returncode == 128 + signal.SIGTERM and "still running" not in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "SIGTERM: stopped"


def test_a_deadline_stops_work_at_its_checks_and_only_inside_its_block():
    passed, later = time.monotonic() - 1, time.monotonic() + 3600
    with handle_signals(graceful=True):  # a fresh state: no stop request left over
        check_stop()
        with deadline(passed):
            with pytest.raises(OutOfTime):
                check_stop()
            with deadline(later), pytest.raises(OutOfTime):
                check_stop()  # an enclosing earlier deadline still holds
            with deadline(None), pytest.raises(OutOfTime):
                check_stop()
        with deadline(later):
            check_stop()
        check_stop()
    assert not issubclass(OutOfTime, KeyboardInterrupt)  # not a stop by the user
