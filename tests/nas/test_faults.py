"""Faults of the machine and hostile targets: device nodes as outputs, torn journals, a
full disk, signals while a family is written, passwords in driver errors, readers that
must not write, empty folders of failed commands.

Disk-full cases run twice where they can: on a small tmpfs (needs root's mount, as in
CI), and with ENOSPC injected into the write path, which always runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas import outputs, redact
from nas.cli import main
from nas.run import locate_study, open_study
from nas.outputs import OutputError, check_target, command_outputs, make_folders, publish
from nas.storage import StorageError, open_storage
from space import cost, presets

REPO = Path(__file__).resolve().parents[2]
# Journal studies here are written with ask/tell, not optimize, which Optuna warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp")]


# -- 1: only regular files are replaced --------------------------------------------------------


def test_device_fifo_folder_and_links_to_them_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "to-null").symlink_to("/dev/null")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    for name, kind in (("fifo", "FIFO"), ("to-null", "character device"),
                       ("dangling", "does not exist"), ("folder", "folder"), ("sock", "socket")):
        with pytest.raises(OutputError, match=kind):
            publish({tmp_path / "fine.txt": b"x", tmp_path / name: b"y"})
    server.close()
    # Checked before anything is written: not even the valid target of the call was made.
    assert not (tmp_path / "fine.txt").exists() and _temporaries(tmp_path) == []
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(OutputError, match="character device"):
        check_target("/dev/null")  # only looked at: the system's node is never a target
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_link_to_a_regular_file_writes_that_file(tmp_path):
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    publish({tmp_path / "link.json": b"new"})
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real.json").read_text() == "new"


def test_cli_refuses_a_device_target_with_one_line(tmp_path, capsys):
    (tmp_path / "null.svg").symlink_to("/dev/null")
    code = main(["show", "--genome", "efficientnet-b0", "--diagram", str(tmp_path / "null.svg")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "character device" in lines[0]
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# -- 2: torn journal tails ---------------------------------------------------------------------


def _journal_study(path: Path, n_trials: int = 3) -> None:
    genome = presets.get("efficientnet-b0")
    study = optuna.create_study(study_name="torn", storage=open_storage(f"journal:{path}"))
    for number in range(n_trials):
        trial = study.ask()
        trial.set_user_attr("genome", genome.to_dict())
        trial.set_user_attr("flops", cost(genome).flops)
        study.tell(trial, 0.5 + number / 10)


def _finished(path: Path) -> list[float]:
    study = optuna.load_study(study_name="torn",
                              storage=open_storage(f"journal:{path}", read_only=True))
    return [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))]


def test_a_torn_journal_is_read_then_repaired_before_anything_is_appended(tmp_path, caplog):
    journal = tmp_path / "study.journal"
    _journal_study(journal)
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 6, "worker_id": "dead", "trial_id": 0, "user_')
    torn = journal.read_bytes()
    assert _finished(journal) == [0.5, 0.6, 0.7]  # readers skip the torn line, change nothing
    assert journal.read_bytes() == torn
    study = optuna.load_study(study_name="torn", storage=open_storage(f"journal:{journal}"))
    assert journal.read_bytes() == whole  # cut back when the writer opened it
    backup, = tmp_path.glob("study.journal.torn-*")
    assert whole + backup.read_bytes() == torn
    assert "torn record" in caplog.text
    study.tell(study.ask(), 0.9)  # the resumed search goes on
    assert _finished(journal) == [0.5, 0.6, 0.7, 0.9]


def test_nas_search_resumes_a_torn_journal(tmp_path, capsys, caplog):
    journal = tmp_path / "study.journal"
    _journal_study(journal)
    with journal.open("ab") as stream:  # the search that wrote it died mid-record
        stream.write(b'{"op_code": 4, "worker_id": "gone", "study_id": 0, "user_attr": {"ge')
    code = main(["search", "--target-flops", "400M", "--evaluator", "naswot", "--proxy-subset",
                 "64", "--prescreen", "none", "--n-trials", "4", "--study", "torn", "--quiet",
                 "--references", "none",
                 "--storage", f"journal:{journal}", "--runs", str(tmp_path / "runs")])
    assert code == 0, capsys.readouterr().err
    assert "torn record" in caplog.text
    finished = _finished(journal)
    assert finished[:3] == [0.5, 0.6, 0.7] and len(finished) == 4  # kept, and one more


def test_a_live_writer_never_appends_after_another_writers_torn_line(tmp_path):
    journal = tmp_path / "study.journal"
    _journal_study(journal, n_trials=1)
    study = optuna.load_study(study_name="torn", storage=open_storage(f"journal:{journal}"))
    with journal.open("ab") as stream:  # another worker dies mid-write
        stream.write(b'{"op_code": 5, "worker_id"')
    study.tell(study.ask(), 0.8)
    assert _finished(journal) == [0.5, 0.8]
    assert len(list(tmp_path.glob("study.journal.torn-*"))) == 1


def test_a_file_without_a_whole_record_is_not_repaired(tmp_path):
    journal = tmp_path / "notes.journal"
    journal.write_bytes(b"my notes, no newline")
    with pytest.raises(StorageError, match="no whole journal record"):
        open_storage(f"journal:{journal}")
    assert journal.read_bytes() == b"my notes, no newline"
    assert list(tmp_path.glob("*.torn-*")) == []


def test_report_reads_a_torn_journal(tmp_path):
    from nas.report import collect

    journal = tmp_path / "study.journal"
    _journal_study(journal)
    with journal.open("ab") as stream:
        stream.write(b'{"op_code": 4, "worker')
    torn = journal.read_bytes()
    report = collect(locate_study(storage=f"journal:{journal}"))
    assert report.counts and journal.read_bytes() == torn


# -- 4: passwords, whatever they hold -----------------------------------------------------------

ODD_PASSWORDS = ["it's a s3cret", 'quo"te d', "p@ss w0rd@x", "per%40cent%20ed", "tab\tand;semi"]


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_an_odd_password_never_reaches_a_message(password, capsys):
    from urllib.parse import unquote

    url = f"postgresql://nas:{password}@127.0.0.1:1/nas"  # nothing listens on port 1
    code = main(["report", "--storage", url, "--study", "x", "--out", "/nonexistent/r.html"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nas:***@" in err
    pieces = {password, unquote(password), *password.split("@")[1:]}
    assert not any(piece in err for piece in pieces), err


def test_masked_streams_cover_logging_and_tracebacks(capsys):
    redact.register_url("postgresql://u:d0n't l00k@db/x")
    log = logging.getLogger("nas.test_faults")
    handler = logging.StreamHandler(sys.stderr)
    log.addHandler(handler)
    try:
        with redact.masked_streams():
            log.error("driver said: connection for password d0n't l00k refused")
            print("url postgresql://u:d0n't l00k@db/x")
            redact._masked_excepthook(ValueError, ValueError("d0n't l00k"), None)
    finally:
        log.removeHandler(handler)
    out, err = capsys.readouterr()
    assert "d0n't l00k" not in out + err and err.count("***") == 2 and "u:***@db" in out


# -- 5: readers leave foreign and empty files as they were ------------------------------------


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.execute("INSERT INTO notes VALUES ('mine')")
    connection.close()


@pytest.mark.parametrize("command", ["report", "dashboard"])
@pytest.mark.parametrize("kind", ["foreign", "empty"])
def test_readers_leave_a_foreign_or_empty_sqlite_file_byte_for_byte(tmp_path, capsys, command,
                                                                   kind):
    database = tmp_path / "x.db"
    if kind == "foreign":
        _foreign_sqlite(database)
    else:
        database.touch()
    before = database.read_bytes()
    argv = [command, "--storage", f"sqlite:///{database}"]
    code = main(argv + (["--out", str(tmp_path / "r.html")] if command == "report" else []))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("empty" if kind == "empty" else "no Optuna study") in err
    assert database.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]  # no -wal, -shm, journal


def test_reading_a_study_keeps_its_journal_mode(tmp_path):
    database = tmp_path / "study.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{database}").tell(
        optuna.create_study(study_name="s", storage=f"sqlite:///{database}",
                            load_if_exists=True).ask(), 1.0)
    before = database.read_bytes()
    study = open_study(locate_study(storage=f"sqlite:///{database}"))
    assert len(study.trials) == 1
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    connection.close()
    assert database.read_bytes() == before


# -- 6: a full disk: one line, and all of the new output or none of it --------------------------


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, or a skip where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip() or 'not root'}); the "
                    "injected-ENOSPC tests cover the same paths")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_scale_on_a_full_disk_keeps_the_old_family_whole(small_disk, capsys):
    out = small_disk / "family"
    assert main(["scale", "--genome", "efficientnet-b0", "--phi", "0", "--out", str(out)]) == 0
    old = _digest(out)
    _fill(small_disk, 200_000)
    capsys.readouterr()
    code = main(["scale", "--genome", "efficientnet-b0", "--phi", "0..1", "--method", "official",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "No space left" in err
    assert _digest(out) == old and _temporaries(small_disk) == []


def test_show_diagram_and_a_new_folder_on_a_full_disk(small_disk, capsys):
    _fill(small_disk, 0)
    code = main(["show", "--genome", "efficientnet-b0", "--diagram",
                 str(small_disk / "new" / "b0.svg")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left" in err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_search_on_a_full_sqlite_disk_is_one_line_and_the_study_survives(small_disk, capsys):
    url = f"sqlite:///{small_disk / 'runs' / 'full' / 'study.db'}"
    (small_disk / "runs" / "full").mkdir(parents=True)
    study = optuna.create_study(study_name="full", storage=open_storage(url))
    study.tell(study.ask(), 1.0)  # a trial recorded before the disk filled
    _fill(small_disk, 0)
    code = main(["search", "--target-flops", "400M", "--evaluator", "naswot", "--proxy-subset",
                 "64", "--n-trials", "30", "--study", "full", "--quiet", "--references", "none",
                 "--runs",
                 str(small_disk / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "disk" in err and "full" in err and "Traceback" not in err
    (small_disk / "filler").unlink()
    trials = optuna.load_study(study_name="full", storage=open_storage(url)).trials
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == 1.0


@pytest.fixture
def full_after(monkeypatch):
    """``full_after(n)``: the (n+1)-th fsync of a new output fails with ENOSPC, as a disk
    that fills while the files of one publication are written."""

    def arm(allowed: int) -> None:
        calls = []
        real = os.fsync

        def fsync(fd: int) -> None:
            calls.append(fd)
            if len(calls) > allowed:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)

        monkeypatch.setattr(outputs.os, "fsync", fsync)

    return arm


def test_injected_enospc_leaves_every_old_file(tmp_path, full_after):
    old = {tmp_path / f"b{i}.json": f"old {i}".encode() for i in range(5)}
    publish(old)
    full_after(3)
    with pytest.raises(OutputError, match="b3.json.*No space left"):
        publish({path: b"new" for path in old})
    assert {path: path.read_bytes() for path in old} == old and _temporaries(tmp_path) == []


def test_injected_enospc_in_train_keeps_the_epoch_pair(tmp_path, full_after):
    import torch

    from nas.checkpoint import save_checkpoint

    genome = presets.get("efficientnet-b0")
    checkpoint, metrics = tmp_path / "checkpoint.pt", tmp_path / "metrics.json"
    fields = dict(genome=genome, model=torch.nn.Linear(2, 2), num_classes=10, in_channels=1,
                  resolution=32, dataset="fashion-mnist", metrics={},
                  normalization={"mean": [0.5], "std": [0.5]})
    save_checkpoint(checkpoint, epoch=1, alongside={metrics: b'{"epoch": 1}'}, **fields)
    pair = checkpoint.read_bytes(), metrics.read_bytes()
    full_after(1)  # the checkpoint is written, its metrics are not
    with pytest.raises(OutputError):
        save_checkpoint(checkpoint, epoch=2, alongside={metrics: b'{"epoch": 2}'}, **fields)
    assert (checkpoint.read_bytes(), metrics.read_bytes()) == pair


def test_injected_enospc_in_report_writes_no_page_and_no_figures(tmp_path, full_after, capsys):
    from nas.report import Report, write_report

    report = Report(study_name="s", storage="x", settings={}, counts={"complete": 0}, figures=(),
                    notes=(), best=None, best_genome=None, best_svg="<svg/>", resolution=224)
    full_after(1)  # the page is written, the figure is not
    with pytest.raises(OutputError):
        write_report(report, tmp_path / "r.html")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["r-figures"]  # removed by the CLI


@pytest.mark.parametrize("text, found", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/study.journal"), "disk is full"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota"),
    (sqlite3.OperationalError("database or disk is full"), "SQLite study is full"),
    (OSError(errno.ENOENT, "No such file"), None),
])
def test_machine_faults_become_one_line_anywhere_in_the_chain(text, found):
    try:
        try:
            raise text
        except Exception as inner:
            raise RuntimeError("a library's own words") from inner
    except RuntimeError as outer:
        fault = outputs.environment_error(outer)
    assert (fault is None) if found is None else (found in str(fault) and "\n" not in str(fault))


# -- 12: a signal while a family is written ----------------------------------------------------

_TERM_DURING_PUBLISH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from nas import outputs
    folder = Path(sys.argv[1])
    real = outputs._write_temporary
    def write(target, data):
        if target.name == "b3.json":
            os.kill(os.getpid(), signal.SIGTERM)  # default action: end the process
        return real(target, data)
    outputs._write_temporary = write
    outputs.publish({folder / f"b{i}.json": b"new" for i in range(8)})
    print("not reached: the held SIGTERM ends the process once the family is published")
""")


def test_sigterm_while_a_family_is_written_replaces_it_whole(tmp_path):
    outputs.publish({tmp_path / f"b{i}.json": b"old" for i in range(8)})
    done = subprocess.run([sys.executable, "-c", _TERM_DURING_PUBLISH, str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ,
                                                               "PYTHONPATH": str(REPO)})
    assert done.returncode == -signal.SIGTERM and "not reached" not in done.stdout
    assert {p.read_bytes() for p in tmp_path.glob("b*.json")} == {b"new"}
    assert _temporaries(tmp_path) == []


def test_a_signal_that_raises_comes_after_the_files(tmp_path, monkeypatch):
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    real = outputs._write_temporary

    def write(target, data):
        if target.name == "b1.json":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(target, data)

    monkeypatch.setattr(outputs, "_write_temporary", write)
    try:
        with pytest.raises(KeyboardInterrupt):
            publish({tmp_path / f"b{i}.json": b"new" for i in range(3)})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(list(tmp_path.glob("b*.json"))) == 3 and _temporaries(tmp_path) == []


# -- 14: one line, and no empty folders left by a failed command ------------------------------


def test_failed_command_removes_only_the_empty_folders_it_made(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError):
        with command_outputs():
            make_folders(tmp_path / "kept" / "a" / "b")
            make_folders(tmp_path / "full" / "c")
            (tmp_path / "full" / "result.txt").write_text("written")
            raise ValueError("the command failed")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "full", "full/result.txt", "kept"]


def test_warnings_before_an_error_are_dropped_and_kept_on_success(capsys):
    log = logging.getLogger("nas.commands.test")
    handler = logging.StreamHandler(sys.stderr)
    log.addHandler(handler)
    try:
        with pytest.raises(OutputError):
            with command_outputs():
                log.warning("a warning about work that then failed")
                raise OutputError("the one line")
        assert capsys.readouterr().err == ""
        with command_outputs():
            log.warning("a warning before the progress shows")
            print("progress 0%", file=sys.stderr)
            log.warning("a warning while it shows")
        assert capsys.readouterr().err.splitlines() == [
            "a warning before the progress shows", "progress 0%", "a warning while it shows"]
    finally:
        log.removeHandler(handler)


def test_dashboard_on_a_busy_port_with_a_public_host_is_one_line(tmp_path, capsys):
    journal = tmp_path / "study.journal"
    _journal_study(journal, n_trials=1)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        code = main(["dashboard", "--storage", f"journal:{journal}", "--host", "0.0.0.0",
                     "--port", str(busy.getsockname()[1])])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "cannot listen" in lines[0]
