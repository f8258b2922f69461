"""Bad input, one row per mistake, for every command: exit code 2, one line, nothing changed.

Each row runs ``nas ...`` as a real process in its own folder, which holds hostile files
(huge numbers, JSON nested 100,000 deep, wrong types, binary garbage) and a read-only
folder. The folder tree and every file's hash are compared before and after. Rows run two
at a time (the machine has two cores); each test checks its own row.

A row's process is forked from a server that imported every module of ``nas`` once
(importing torch and the rest costs 2-3 s of the 3-5 s a row takes), so it has its own
exit code, streams and working folder as ``python3 -m nas`` would, without the interpreter
start-up. Rows that need a folder root cannot write to come from a server started under
setpriv.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import zipfile
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote
from pathlib import Path

import pytest

from nas.cli import COMMANDS
from nas.redact import password_of

from _hostile_files import hostile_files

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPACE = (REPO / "space" / "default_space.toml").read_text()
AS_ROOT = os.geteuid() == 0
# Root writes into a mode-555 folder regardless; without the override capabilities it
# cannot, so read-only rows run under setpriv when the tests run as root.
DROP_ROOT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _genome() -> dict:
    from space import presets

    return presets.get("efficientnet-b0").to_dict()


def _with(path: tuple, value) -> str:
    data = _genome()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(data)


class _Hostile:
    """A pickle that runs ``touch PATH`` when loaded by an unsafe loader."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


TINY_SPACE = """version = 1
stem_channels = 8
head_channels = 16
resolution = 32
[choices]
kernel_size = [3]
expand_ratio = [1, 4]
se_ratio = [0]
layers_delta = [0]
width_multiplier = [1.0]
[[stages]]
out_channels = 8
num_layers = 1
stride = 2
"""


def latency_tables(folder: Path) -> None:
    """A table of this machine for TINY_SPACE (made-up entries of 1 ms: no row measures),
    the same table from another CPU, and a truncated one."""
    from nas.latency import LatencyTable, TimingSettings, space_units
    from space import SearchSpace

    (folder / "tiny_space.toml").write_text(TINY_SPACE)
    space = SearchSpace.from_file(folder / "tiny_space.toml")
    table = LatencyTable(folder / "tiny_table.json", TimingSettings())
    for unit in space_units(space, 32, 10, 1):
        table.entries[unit.key] = {"seconds": 1e-3, "spread": 0.0}
    table.save()
    text = (folder / "tiny_table.json").read_text()
    (folder / "truncated_table.json").write_text(text[: len(text) // 2])
    table.fingerprint = {**table.fingerprint, "cpu": "Another CPU"}
    table.path = folder / "foreign_table.json"
    table.save()


def make_files(folder: Path) -> None:
    """The hostile inputs every row may point at."""
    files = {
        "good.json": json.dumps(_genome()),
        "huge.json": _with(("stages", 0, "num_layers"), 10**30),
        "huge_resolution.json": _with(("resolution",), 1e308),
        "types.json": _with(("stem_channels",), "32"),
        "stages_object.json": _with(("stages",), {"0": 1}),
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "deep_object.json": '{"a":' * 100_000 + "1" + "}" * 100_000,
        "empty.json": "",
        "array.json": "[1, 2, 3]",
        "broken.toml": "[stages\nkernel_size = ",
        "deep.toml": "a = " + "[" * 100_000 + "]" * 100_000 + "\n",
        "huge.toml": DEFAULT_SPACE.replace("layers_delta = [-1, 0, 1]",
                                           "layers_delta = [1000000000000]"),
        "types.toml": DEFAULT_SPACE.replace("kernel_size = [3, 5]", 'kernel_size = "big"'),
        "notes.txt": "a file where a folder should be\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "garbage.json").write_bytes(bytes(range(256)) * 8)
    import torch

    with zipfile.ZipFile(folder / "not_torch.pt", "w") as archive:
        archive.writestr("a.txt", "a zip archive, but not a torch file")
    # Unpickling this would run a command that leaves a file behind (the snapshot sees it).
    torch.save({"payload": _Hostile(str(folder / "PWNED"))}, folder / "hostile.pt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, folder / "foreign.pt")
    import optuna

    journal = optuna.storages.journal.JournalFileBackend(str(folder / "study.journal"))
    optuna.create_study(study_name="s", storage=optuna.storages.JournalStorage(journal))
    latency_tables(folder)
    hostile_files(folder)
    # Targets that are not regular files: replacing them would destroy a device or a pipe.
    os.mkfifo(folder / "fifo.svg")
    os.mkfifo(folder / "fifo.onnx")
    (folder / "null.svg").symlink_to("/dev/null")
    (folder / "family").mkdir()
    os.mkfifo(folder / "family" / "b0.json")
    # SQLite files that readers must leave byte for byte: another program's, and an empty one.
    with contextlib.closing(sqlite3.connect(folder / "foreign.db")) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.commit()
    (folder / "empty.db").touch()
    read_only = folder / "ro"
    read_only.mkdir()
    (read_only / "keep.txt").write_text("must survive\n")
    read_only.chmod(0o555)


# A wrong password with the characters a pattern would stop at (quote, space, percent).
ODD_PASSWORD = "n0t th'e \"pa%ss"

# (command, row id, arguments, a word the one line must contain). "{d}" is the row's
# folder, "{wrong_pg}" a PostgreSQL URL with a wrong password, "{odd_pg}" one with
# ODD_PASSWORD, "{ro}" the read-only folder.
ROWS = [
    # issue 24, memory: refused with the estimate before anything is built or made
    ("train", "memory-estimate", ["train", "--genome", "efficientnet-b0", "--resolution",
                                  "1024", "--out", "{d}/new/run"], "needs about"),
    ("export", "memory-estimate", ["export", "--genome", "{d}/wide_4096.json", "--format",
                                   "onnx", "--out", "{d}/x.onnx"], "needs about"),
    ("cam", "memory-estimate", ["cam", "--checkpoint", "{d}/ckpt_wide_4096.pt", "--out",
                                "{d}/c.png"], "needs about"),
    ("search", "jobs-past-the-machine", ["search", "--target-flops", "400M", "--jobs",
                                         "100000", "--runs", "{d}/runs"], "--jobs"),
    # checkpoint fields against their schema (a path is never read as the genome)
    ("export", "checkpoint-genome-is-a-path", ["export", "--checkpoint",
                                               "{d}/ckpt_genome_path.pt", "--format", "onnx",
                                               "--out", "{d}/x.onnx"], "'genome'"),
    ("export", "checkpoint-genome-is-a-number", ["export", "--checkpoint",
                                                 "{d}/ckpt_genome_number.pt", "--format",
                                                 "timm", "--out", "{d}/x.json"], "'genome'"),
    ("export", "checkpoint-weights-not-tensors", ["export", "--checkpoint",
                                                  "{d}/ckpt_state_dict.pt", "--format", "onnx",
                                                  "--out", "{d}/x.onnx"], "state_dict"),
    ("cam", "checkpoint-resolution-is-text", ["cam", "--checkpoint",
                                              "{d}/ckpt_resolution_string.pt", "--out",
                                              "{d}/c.png"], "resolution"),
    ("cam", "checkpoint-normalization", ["cam", "--checkpoint", "{d}/ckpt_normalization.pt",
                                         "--out", "{d}/c.png"], "normalization"),
    ("train", "resume-settings-lack-a-key", ["train", "--genome", "{d}/tiny.json", "--resume",
                                             "--epochs", "3", "--out", "{d}/resume"],
     "metrics.settings.lr"),
    # every value of a space's choices, not only the smallest and largest
    ("show", "space-even-kernel-between", ["show", "--space", "{d}/kernel_4.toml"],
     "kernel_size includes 4"),
    ("show", "space-even-kernel-in-middle", ["show", "--space", "{d}/kernel_6.toml"],
     "kernel_size includes 6"),
    ("search", "space-even-kernel", ["search", "--target-flops", "400M", "--evaluator",
                                     "naswot", "--space", "{d}/kernel_4.toml", "--runs",
                                     "{d}/runs"], "kernel_size"),
    ("show", "space-layers-past-limit", ["show", "--space", "{d}/layers_past_limit.toml"],
     "num_layers"),
    # resource bombs: devices are never read as files
    ("show", "genome-is-dev-zero", ["show", "--genome", "/dev/zero"], "regular file"),
    ("scale", "genome-is-dev-zero", ["scale", "--genome", "/dev/zero", "--phi", "1", "--out",
                                     "{d}/fam"], "regular file"),
    ("train", "genome-is-dev-zero", ["train", "--genome", "/dev/zero", "--out", "{d}/out"],
     "regular file"),
    ("search", "space-is-dev-zero", ["search", "--target-flops", "400M", "--space",
                                     "/dev/zero", "--runs", "{d}/runs"], "regular file"),
    ("scale", "coefficients-are-dev-zero", ["scale", "--genome", "efficientnet-b0", "--phi",
                                            "1", "--coefficients", "/dev/zero", "--out",
                                            "{d}/fam"], "regular file"),
    # numbers of thousands of digits, and seeds out of range
    ("show", "genome-integer-of-5000-digits", ["show", "--genome", "{d}/digits.json"],
     "5,000 digits"),
    ("export", "genome-float-of-5000-digits", ["export", "--genome", "{d}/digits_float.json",
                                               "--format", "timm", "--out", "{d}/x.json"],
     "dropout"),
    ("scale", "genome-integer-of-5000-digits", ["scale", "--genome", "{d}/digits.json",
                                                "--phi", "1", "--out", "{d}/fam"], "num_layers"),
    ("show", "space-integer-of-5000-digits", ["show", "--space", "{d}/digits.toml"], "digits"),
    ("show", "space-integer-of-400-digits", ["show", "--space", "{d}/digits_400.toml"],
     "stem_channels"),
    ("search", "json-space-integer-of-5000-digits", ["search", "--target-flops", "400M",
                                                     "--space", "{d}/digits_space.json",
                                                     "--runs", "{d}/runs"], "num_layers"),
    ("scale", "phi-of-5000-digits", ["scale", "--genome", "efficientnet-b0", "--phi", "9" * 5000,
                                     "--out", "{d}/fam"], "--phi"),
    ("scale", "coefficient-of-5000-digits", ["scale", "--genome", "efficientnet-b0", "--phi",
                                             "1", "--coefficients",
                                             "{d}/coefficients_digits.json", "--out", "{d}/fam"],
     "phi"),
    ("search", "negative-seed", ["search", "--target-flops", "400M", "--evaluator", "naswot",
                                 "--seed", "-1", "--runs", "{d}/runs"], "--seed"),
    ("search", "seed-past-32-bits", ["search", "--target-flops", "400M", "--evaluator",
                                     "naswot", "--seed", "4294967296", "--runs", "{d}/runs"],
     "--seed"),
    ("train", "seed-of-5000-digits", ["train", "--genome", "efficientnet-b0", "--seed",
                                      "9" * 5000, "--out", "{d}/out"], "--seed"),
    ("cam", "negative-seed", ["cam", "--checkpoint", "{d}/hostile.pt", "--seed", "-3", "--out",
                              "{d}/c.png"], "--seed"),
    # show
    ("show", "unknown-flag", ["show", "--genome", "efficientnet-b0", "--bogus"], "--bogus"),
    ("show", "missing-genome", ["show", "--genome", "{d}/missing.json"], "does not exist"),
    ("show", "huge-number", ["show", "--genome", "{d}/huge.json"], "num_layers"),
    ("show", "huge-float", ["show", "--genome", "{d}/huge_resolution.json"], "resolution"),
    ("show", "wrong-type", ["show", "--genome", "{d}/types.json"], "stem_channels"),
    ("show", "stages-object", ["show", "--genome", "{d}/stages_object.json"], "stages"),
    ("show", "deep-json", ["show", "--genome", "{d}/deep.json"], "nested"),
    ("show", "deep-json-object", ["show", "--genome", "{d}/deep_object.json"], "nested"),
    ("show", "binary-genome", ["show", "--genome", "{d}/garbage.json"], "garbage.json"),
    ("show", "empty-genome", ["show", "--genome", "{d}/empty.json"], "JSON"),
    ("show", "folder-as-genome", ["show", "--genome", "{d}"], "genome"),
    ("show", "broken-space", ["show", "--space", "{d}/broken.toml"], "TOML"),
    ("show", "deep-space", ["show", "--space", "{d}/deep.toml"], "nested"),
    ("show", "huge-space", ["show", "--space", "{d}/huge.toml"], "layers_delta"),
    ("show", "wrong-type-space", ["show", "--space", "{d}/types.toml"], "kernel_size"),
    ("show", "negative-resolution", ["show", "--genome", "efficientnet-b0", "--resolution",
                                     "-3"], "--resolution"),
    # scale
    ("scale", "unknown-flag", ["scale", "--genome", "efficientnet-b0", "--phi", "1",
                               "--bogus"], "--bogus"),
    ("scale", "missing-genome", ["scale", "--genome", "{d}/missing.json", "--phi", "1",
                                 "--out", "{d}/out"], "does not exist"),
    ("scale", "huge-number", ["scale", "--genome", "{d}/huge.json", "--phi", "1", "--out",
                              "{d}/out"], "num_layers"),
    ("scale", "wrong-type", ["scale", "--genome", "{d}/types.json", "--phi", "1", "--out",
                             "{d}/out"], "stem_channels"),
    ("scale", "deep-json", ["scale", "--genome", "{d}/deep.json", "--phi", "1", "--out",
                            "{d}/out"], "nested"),
    ("scale", "huge-phi", ["scale", "--genome", "efficientnet-b0", "--phi",
                           "99999999999999999999", "--out", "{d}/out"], "phi"),
    ("scale", "deep-coefficients", ["scale", "--genome", "efficientnet-b0", "--phi", "1",
                                    "--coefficients", "{d}/deep.json", "--out", "{d}/out"],
     "coefficient"),
    ("scale", "wrong-coefficients", ["scale", "--genome", "efficientnet-b0", "--phi", "1",
                                     "--coefficients", "{d}/array.json", "--out", "{d}/out"],
     "coefficient"),
    ("scale", "read-only-out", ["scale", "--genome", "{d}/good.json", "--phi", "1", "--out",
                                "{ro}"], "ro"),
    ("scale", "out-under-a-file", ["scale", "--genome", "{d}/good.json", "--phi", "1",
                                   "--out", "{d}/notes.txt/family"], "notes.txt"),
    # dashboard
    ("dashboard", "unknown-flag", ["dashboard", "{d}", "--bogus"], "--bogus"),
    ("dashboard", "missing-run-folder", ["dashboard", "{d}/runs/nothing"], "does not exist"),
    ("dashboard", "folder-without-study", ["dashboard", "{d}"], "no study"),
    ("dashboard", "bad-port", ["dashboard", "{d}", "--port", "99999"], "--port"),
    ("dashboard", "missing-journal", ["dashboard", "--storage", "journal:{d}/none.journal"],
     "none.journal"),
    ("dashboard", "garbage-sqlite", ["dashboard", "--storage", "sqlite:///{d}/garbage.json"],
     "not a database"),
    ("dashboard", "wrong-password", ["dashboard", "--storage", "{wrong_pg}", "--study", "x"],
     "password authentication"),
    ("dashboard", "garbage-journal", ["dashboard", "--storage", "journal:{d}/garbage.json"],
     "not an Optuna journal"),
    # train
    ("train", "unknown-flag", ["train", "--genome", "efficientnet-b0", "--bogus"], "--bogus"),
    ("train", "device-that-is-none", ["train", "--genome", "efficientnet-b0", "--device", "tpu",
                                      "--out", "{d}/out"], "is not a device"),
    ("train", "missing-genome", ["train", "--genome", "{d}/missing.json", "--out", "{d}/out"],
     "does not exist"),
    ("train", "huge-number", ["train", "--genome", "{d}/huge.json", "--out", "{d}/out"],
     "num_layers"),
    ("train", "missing-data", ["train", "--genome", "efficientnet-b0", "--data",
                               "{d}/no-data", "--out", "{d}/out"], "no-data"),
    # export
    ("export", "unknown-flag", ["export", "--genome", "efficientnet-b0", "--format", "onnx",
                                "--out", "{d}/x.onnx", "--bogus"], "--bogus"),
    ("export", "unknown-format", ["export", "--genome", "efficientnet-b0", "--format",
                                  "tflite", "--out", "{d}/x"], "tflite"),
    ("export", "binary-checkpoint", ["export", "--checkpoint", "{d}/garbage.json", "--format",
                                     "onnx", "--out", "{d}/x.onnx"], "garbage.json"),
    ("export", "wrong-type", ["export", "--genome", "{d}/types.json", "--format", "onnx",
                              "--out", "{d}/x.onnx"], "stem_channels"),
    # cam
    ("cam", "unknown-flag", ["cam", "--checkpoint", "{d}/garbage.json", "--out", "{d}/c.png",
                             "--bogus"], "--bogus"),
    ("cam", "missing-checkpoint", ["cam", "--checkpoint", "{d}/none.pt", "--out", "{d}/c.png"],
     "none.pt"),
    ("cam", "binary-checkpoint", ["cam", "--checkpoint", "{d}/garbage.json", "--out",
                                  "{d}/c.png"], "garbage.json"),
    # supernet (every row is refused before any data is read or weights are trained)
    ("supernet", "unknown-flag", ["supernet", "train", "--bogus"], "--bogus"),
    ("supernet", "no-subcommand", ["supernet"], "choose a subcommand"),
    ("supernet", "device-that-is-none", ["supernet", "train", "--device", "tpu", "--out",
                                         "{d}/s.pt"], "is not a device"),
    ("supernet", "zero-epochs", ["supernet", "train", "--epochs", "0", "--out", "{d}/s.pt"],
     "epochs >= 1"),
    ("supernet", "subset-under-a-batch", ["supernet", "train", "--subset", "5", "--out",
                                          "{d}/s.pt"], "subset 5"),
    ("supernet", "missing-space", ["supernet", "train", "--space", "{d}/none.toml", "--out",
                                   "{d}/s.pt"], "none.toml"),
    # report
    ("report", "unknown-flag", ["report", "{d}", "--bogus"], "--bogus"),
    ("report", "missing-run-folder", ["report", "{d}/runs/nothing"], "does not exist"),
    ("report", "out-not-html", ["report", "--storage", "journal:{d}/study.journal", "--out",
                                "{d}/report.txt"], ".html"),
    ("report", "read-only-out", ["report", "--storage", "journal:{d}/study.journal", "--out",
                                 "{ro}/report.html"], "ro"),
    ("report", "out-under-a-file", ["report", "--storage", "journal:{d}/study.journal",
                                    "--out", "{d}/notes.txt/report.html"], "notes.txt"),
    ("report", "garbage-journal", ["report", "--storage", "journal:{d}/garbage.json", "--out",
                                   "{d}/report.html"], "not an Optuna journal"),
    ("report", "wrong-password", ["report", "--storage", "{wrong_pg}", "--study", "x", "--out",
                                  "{d}/report.html"], "password authentication"),
    # train
    ("train", "deep-json", ["train", "--genome", "{d}/deep_object.json", "--out", "{d}/out"],
     "nested"),
    ("train", "negative-epochs", ["train", "--genome", "efficientnet-b0", "--epochs", "-1",
                                  "--out", "{d}/out"], "--epochs"),
    ("train", "tiny-subset", ["train", "--genome", "efficientnet-b0", "--subset", "0",
                              "--out", "{d}/out"], "--subset"),
    ("train", "resume-without-checkpoint", ["train", "--genome", "efficientnet-b0",
                                            "--epochs", "1", "--resume", "--out", "{d}/out"],
     "--resume"),
    ("train", "read-only-out", ["train", "--genome", "efficientnet-b0", "--epochs", "1",
                                "--out", "{ro}/run"], "ro"),
    ("train", "out-under-a-file", ["train", "--genome", "efficientnet-b0", "--epochs", "1",
                                   "--out", "{d}/notes.txt/run"], "notes.txt"),
    # export
    ("export", "deep-json", ["export", "--genome", "{d}/deep.json", "--format", "timm",
                             "--out", "{d}/x.txt"], "nested"),
    ("export", "huge-opset", ["export", "--genome", "efficientnet-b0", "--format", "onnx",
                              "--out", "{d}/x.onnx", "--opset", "999999"], "--opset"),
    ("export", "missing-checkpoint", ["export", "--checkpoint", "{d}/missing.pt", "--format",
                                      "onnx", "--out", "{d}/x.onnx"], "does not exist"),
    ("export", "zip-not-torch", ["export", "--checkpoint", "{d}/not_torch.pt", "--format",
                                 "onnx", "--out", "{d}/x.onnx"], "torch file"),
    ("export", "hostile-pickle", ["export", "--checkpoint", "{d}/hostile.pt", "--format",
                                  "onnx", "--out", "{d}/x.onnx"], "not safe"),
    ("export", "foreign-checkpoint", ["export", "--checkpoint", "{d}/foreign.pt", "--format",
                                      "onnx", "--out", "{d}/x.onnx"], "not a nas checkpoint"),
    ("export", "read-only-out", ["export", "--genome", "efficientnet-b0", "--format", "onnx",
                                 "--out", "{ro}/x.onnx"], "ro"),
    # cam
    ("cam", "hostile-pickle", ["cam", "--checkpoint", "{d}/hostile.pt", "--out", "{d}/c.png"],
     "not safe"),
    ("cam", "foreign-checkpoint", ["cam", "--checkpoint", "{d}/foreign.pt", "--out",
                                   "{d}/c.png"], "not a nas checkpoint"),
    ("cam", "read-only-out", ["cam", "--checkpoint", "{d}/foreign.pt", "--out",
                              "{ro}/c.png"], "ro"),
    # search
    ("search", "unknown-flag", ["search", "--target-flops", "400M", "--bogus"], "--bogus"),
    ("search", "bad-unit", ["search", "--target-flops", "400X", "--runs", "{d}/runs"], "400X"),
    ("search", "negative-target", ["search", "--target-flops", "-5", "--runs", "{d}/runs"],
     "'-5' must be positive"),
    # argparse alone would take these for options ("expected one argument")
    ("search", "negative-target-with-unit", ["search", "--target-flops", "-5M", "--runs",
                                             "{d}/runs"], "'-5M' must be positive"),
    ("search", "negative-target-exponent", ["search", "--target-flops", "-1e3", "--runs",
                                            "{d}/runs"], "'-1e3' must be positive"),
    ("search", "huge-target", ["search", "--target-flops", "1e300", "--runs", "{d}/runs"],
     "'1e300' is too large"),
    ("search", "infinite-target", ["search", "--target-flops", "1e400", "--runs", "{d}/runs"],
     "'1e400' is too large"),
    ("search", "missing-space", ["search", "--target-flops", "400M", "--space",
                                 "{d}/missing.toml", "--runs", "{d}/runs"], "does not exist"),
    ("search", "deep-space", ["search", "--target-flops", "400M", "--space", "{d}/deep.toml",
                              "--runs", "{d}/runs"], "nested"),
    ("search", "huge-space", ["search", "--target-flops", "400M", "--space", "{d}/huge.toml",
                              "--runs", "{d}/runs"], "layers_delta"),
    ("search", "wrong-type-space", ["search", "--target-flops", "400M", "--space",
                                    "{d}/types.toml", "--runs", "{d}/runs"], "kernel_size"),
    ("search", "unknown-evaluator", ["search", "--target-flops", "400M", "--evaluator", "nope",
                                     "--runs", "{d}/runs"], "nope"),
    ("search", "tiny-val-size", ["search", "--target-flops", "400M", "--proxy-val-size", "5",
                                 "--runs", "{d}/runs"], "--proxy-val-size"),
    ("search", "val-size-past-the-data", ["search", "--target-flops", "400M",
                                          "--proxy-val-size", "60000", "--runs", "{d}/runs"],
     "60000 images"),
    ("search", "missing-data", ["search", "--target-flops", "400M", "--evaluator", "naswot",
                                "--data", "{d}/no-data", "--runs", "{d}/runs"], "no-data"),
    ("search", "read-only-runs", ["search", "--target-flops", "400M", "--evaluator", "naswot",
                                  "--proxy-subset", "64", "--runs", "{ro}"], "ro"),
    ("search", "runs-under-a-file", ["search", "--target-flops", "400M", "--evaluator",
                                     "naswot", "--proxy-subset", "64", "--runs",
                                     "{d}/notes.txt/runs"], "notes.txt"),
    ("search", "journal-in-missing-folder", ["search", "--target-flops", "400M", "--evaluator",
                                             "naswot", "--proxy-subset", "64", "--storage",
                                             "journal:{d}/nowhere/study.journal", "--runs",
                                             "{d}/runs"], "nowhere"),
    ("search", "garbage-journal", ["search", "--target-flops", "400M", "--evaluator", "naswot",
                                   "--proxy-subset", "64", "--storage",
                                   "journal:{d}/garbage.json", "--runs", "{d}/runs"],
     "not an Optuna journal"),
    ("search", "not-a-storage-url", ["search", "--target-flops", "400M", "--evaluator",
                                     "naswot", "--proxy-subset", "64", "--storage",
                                     "study.db", "--runs", "{d}/runs"], "storage"),
    ("search", "unknown-sampler", ["search", "--target-flops", "400M", "--sampler", "bogus",
                                   "--runs", "{d}/runs"], "bogus"),
    ("search", "tiny-population", ["search", "--target-flops", "400M", "--sampler",
                                   "evolution", "--population-size", "1", "--runs",
                                   "{d}/runs"], "--population-size"),
    ("search", "tournament-past-population", ["search", "--target-flops", "400M", "--sampler",
                                              "evolution", "--population-size", "4",
                                              "--tournament-size", "5", "--runs", "{d}/runs"],
     "--tournament-size"),
    ("search", "evolution-multi-objective", ["search", "--target-flops", "400M", "--sampler",
                                             "evolution", "--objective", "multi", "--runs",
                                             "{d}/runs"], "--objective multi"),
    ("search", "wrong-password", ["search", "--target-flops", "400M", "--evaluator", "naswot",
                                  "--proxy-subset", "64", "--storage", "{wrong_pg}", "--study",
                                  "shared", "--runs", "{d}/runs"], "password authentication"),
    ("search", "no-target", ["search", "--runs", "{d}/runs"], "--target-latency"),
    ("search", "latency-unit", ["search", "--target-latency", "12 parsecs", "--runs",
                                "{d}/runs"], "unknown unit"),
    ("search", "foreign-latency-table", ["search", "--target-latency", "3ms", "--latency-table",
                                         "{d}/foreign_table.json", "--space",
                                         "{d}/tiny_space.toml", "--evaluator", "naswot",
                                         "--runs", "{d}/runs"], "another machine"),
    ("search", "latency-below-fastest", ["search", "--target-latency", "1us",
                                         "--latency-table", "{d}/tiny_table.json", "--space",
                                         "{d}/tiny_space.toml", "--evaluator", "naswot",
                                         "--runs", "{d}/runs"], "fastest genome"),
    ("search", "missing-latency-table", ["search", "--target-latency", "3ms", "--latency-table",
                                         "{d}/no_table.json", "--evaluator", "naswot",
                                         "--runs", "{d}/runs"], "nas latency build"),
    # latency
    ("latency", "unknown-flag", ["latency", "build", "--bogus"], "--bogus"),
    ("latency", "truncated-table", ["latency", "check", "--table",
                                    "{d}/truncated_table.json"], "truncated"),
    ("latency", "no-cuda", ["latency", "build", "--backend", "cuda", "--table",
                            "{d}/cuda.json"], "CUDA"),
    ("latency", "table-not-json", ["latency", "build", "--space", "{d}/tiny_space.toml",
                                   "--table", "{d}/garbage.json"], "garbage.json"),
    ("scale", "latency-unit", ["scale", "--genome", "efficientnet-b0", "--target-latency",
                               "10ms,5xs", "--out", "{d}/fam"], "unknown unit"),
    # outputs that are not regular files: a FIFO, a link to /dev/null, a family member FIFO
    ("show", "diagram-is-a-fifo", ["show", "--genome", "efficientnet-b0", "--diagram",
                                   "{d}/fifo.svg"], "FIFO"),
    ("show", "diagram-links-to-a-device", ["show", "--genome", "efficientnet-b0", "--diagram",
                                           "{d}/null.svg"], "character device"),
    ("export", "out-links-to-a-device", ["export", "--genome", "efficientnet-b0", "--format",
                                         "timm", "--out", "{d}/null.svg"], "character device"),
    ("export", "onnx-out-is-a-fifo", ["export", "--genome", "efficientnet-b0", "--format",
                                      "onnx", "--out", "{d}/fifo.onnx"], "FIFO"),
    # scaling logs a warning on these coefficients first: the error must stay one line
    ("scale", "warning-then-member-is-a-fifo", ["scale", "--genome", "efficientnet-b0", "--phi",
                                                "0..1", "--alpha", "1.5", "--beta", "1.5",
                                                "--gamma", "1.5", "--out", "{d}/family"],
     "FIFO"),
    # readers leave another program's SQLite file, and an empty one, byte for byte
    ("report", "foreign-sqlite", ["report", "--storage", "sqlite:///{d}/foreign.db", "--out",
                                  "{d}/report.html"], "no Optuna study"),
    ("report", "empty-sqlite", ["report", "--storage", "sqlite:///{d}/empty.db", "--out",
                                "{d}/report.html"], "empty"),
    ("dashboard", "foreign-sqlite", ["dashboard", "--storage", "sqlite:///{d}/foreign.db"],
     "no Optuna study"),
    ("dashboard", "empty-sqlite", ["dashboard", "--storage", "sqlite:///{d}/empty.db"], "empty"),
    # passwords with a quote, a space, a percent sign or an unencoded @ never show
    ("report", "odd-wrong-password", ["report", "--storage", "{odd_pg}", "--study", "x", "--out",
                                      "{d}/report.html"], "password authentication"),
    ("dashboard", "odd-wrong-password", ["dashboard", "--storage", "{odd_pg}", "--study", "x"],
     "password authentication"),
    ("report", "unencoded-at-in-password", ["report", "--storage",
                                            "postgresql://nas:p@ss w0rd@127.0.0.1:1/nas",
                                            "--study", "x", "--out", "{d}/report.html"], "%40"),
    ("dashboard", "refused-port-odd-password", ["dashboard", "--storage",
                                                "postgresql://nas:it's s3cret@127.0.0.1:1/nas",
                                                "--study", "x"], "connection refused"),
    # a failed command leaves no folder it made
    ("cam", "missing-checkpoint-new-folder", ["cam", "--checkpoint", "{d}/none.pt", "--out",
                                              "{d}/new/maps/c.png"], "none.pt"),
    ("train", "bad-batch-new-folder", ["train", "--genome", "efficientnet-b0", "--batch-size",
                                       "1", "--out", "{d}/new/run"], "--batch-size"),
]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its kind, mode and content hash."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            digest = (hashlib.sha256(path.read_bytes()).hexdigest()
                      if path.is_file() and not path.is_symlink() else None)
            state[str(path.relative_to(folder))] = (info.st_mode, info.st_size, digest)
    return state


ROW_ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

# Reads one JSON request per line (argv, folder, stdout and stderr files), forks a child
# that runs the command line there as nas/__main__.py does (less its tcmalloc re-exec, which
# changes only the allocator), answers its exit code.
_FORK_SERVER = textwrap.dedent("""
    import importlib, json, os, pkgutil, sys, traceback
    import nas
    from nas.cli import main
    for module in pkgutil.iter_modules(nas.__path__):  # the commands import theirs lazily
        if module.name != "__main__":
            importlib.import_module(f"nas.{module.name}")
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.chdir(request["folder"])
                for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
                sys.argv = ["nas", *request["argv"]]
                code = main(request["argv"])
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
""")


class ForkServer:
    def __init__(self, prefix: list[str]) -> None:
        """``prefix``: what the server (and so every row it forks) runs under."""
        self.process = subprocess.Popen([*prefix, sys.executable, "-c", _FORK_SERVER],
                                        env=ROW_ENV, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def run(self, argv: list[str], folder: Path, streams: Path) -> tuple[int, str, str]:
        out, err = streams / "stdout", streams / "stderr"
        request = {"argv": argv, "folder": str(folder), "stdout": str(out), "stderr": str(err)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        code = int(self.process.stdout.readline())
        return code, out.read_text(), err.read_text()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def run_row(row: tuple, folder: Path, streams: Path, urls: dict[str, str],
            servers: dict[bool, queue.Queue]) -> dict:
    """``servers[True]`` run their rows without root's power to write anywhere; ``urls``
    maps the PostgreSQL placeholders to URLs."""
    command, _, args, _ = row
    make_files(folder)
    argv = [a.replace("{d}", str(folder)).replace("{ro}", str(folder / "ro"))
            .replace("{wrong_pg}", urls["{wrong_pg}"]).replace("{odd_pg}", urls["{odd_pg}"])
            for a in args]
    before = snapshot(folder)
    pool = servers[AS_ROOT and "{ro}" in " ".join(args)]
    server = pool.get()
    try:
        code, stdout, stderr = server.run(argv, folder, streams)
    finally:
        pool.put(server)
    return {"argv": argv, "code": code, "stderr": stderr, "stdout": stdout,
            "changed": _diff(before, snapshot(folder))}


def _diff(before: dict, after: dict) -> list[str]:
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


@pytest.fixture(scope="session")
def row_results(request, tmp_path_factory) -> dict:
    """Run every selected row once, two at a time."""
    selected = {item.callspec.params["row"][:2] for item in request.session.items
                if hasattr(item, "callspec") and "row" in item.callspec.params}
    rows = [row for row in ROWS if row[:2] in selected]
    urls = {"{wrong_pg}": "postgresql://nas:wrong@127.0.0.1:1/nas",
            "{odd_pg}": "postgresql://nas:wrong@127.0.0.1:1/nas"}
    if any(key in " ".join(row[2]) for row in rows for key in urls):
        url = request.getfixturevalue("postgres_url")
        from sqlalchemy.engine import make_url

        for key, password in (("{wrong_pg}", "not-the-password"), ("{odd_pg}", ODD_PASSWORD)):
            urls[key] = make_url(url).set(password=password).render_as_string(
                hide_password=False)
    if AS_ROOT and shutil.which("setpriv") is None:
        rows = [row for row in rows if "{ro}" not in " ".join(row[2])]
    base = tmp_path_factory.mktemp("bad-input")
    folders, streams = {}, {}
    for row in rows:
        name = f"{row[0]}-{row[1]}"
        folders[row[:2]], streams[row[:2]] = base / name, base / f"{name}.streams"
        folders[row[:2]].mkdir()
        streams[row[:2]].mkdir()  # outside the folder, whose every change is a failure
    servers = {False: queue.Queue(), True: queue.Queue()}
    for _ in range(2):
        servers[False].put(ForkServer([]))
    if AS_ROOT and any("{ro}" in " ".join(row[2]) for row in rows):
        servers[True].put(ForkServer(DROP_ROOT_OVERRIDE))
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {row[:2]: pool.submit(run_row, row, folders[row[:2]], streams[row[:2]],
                                            urls, servers) for row in rows}
            results = {key: future.result() for key, future in futures.items()}
    finally:
        for pool_of_servers in servers.values():
            while not pool_of_servers.empty():
                pool_of_servers.get().close()
    for folder in folders.values():
        (folder / "ro").chmod(0o755)  # so that pytest can clean up
    return results


def check_row(row: tuple, row_results: dict) -> None:
    if row[:2] not in row_results:
        pytest.skip("running as root without setpriv: no way to make a folder read-only")
    result = row_results[row[:2]]
    command, _, _, word = row
    where = f"nas {' '.join(result['argv'])[:300]}\nstderr: {result['stderr'][-1500:]}"
    assert result["code"] == 2, where
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1, where
    assert "Traceback" not in result["stderr"], where
    # argparse reports unknown flags from the top-level parser ("nas: error: ...").
    assert lines[0].startswith((f"nas {command}: error: ", "nas: error: ")), where
    assert word.lower() in lines[0].lower(), where
    assert result["changed"] == [], f"files changed: {result['changed']}\n{where}"
    said = result["stderr"] + result["stdout"]
    if "{wrong_pg}" in " ".join(row[2]):
        assert "not-the-password" not in said
    # No password given on the command line shows, whatever characters it holds.
    for word in result["argv"]:
        password = password_of(word)
        if password:
            pieces = (password, unquote(password), *password.split("@")[1:])
            assert not [piece for piece in pieces if piece in said], where


# One worker of a parallel run holds every row: ``row_results`` runs them all at once.
@pytest.mark.xdist_group("bad-input")
@pytest.mark.parametrize("row", [pytest.param(row, id=f"{row[0]}-{row[1]}")
                                 for row in ROWS if row[0] in COMMANDS])
def test_bad_input(row, row_results):
    check_row(row, row_results)


def test_every_command_has_rows():
    """A new command joins the table: at least a wrong flag and one bad file or value."""
    covered = {row[0] for row in ROWS}
    assert set(COMMANDS) <= covered, f"no bad-input rows for {sorted(set(COMMANDS) - covered)}"
    for command in COMMANDS:
        kinds = [row[1] for row in ROWS if row[0] == command]
        assert "unknown-flag" in kinds and len(kinds) >= 3, command
