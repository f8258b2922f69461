"""The supernet artifact: built once however many processes ask, reused, refused in one
line when it belongs to another space or dataset or cannot be read (and then never
overwritten, except by `nas supernet train`), and resumed after its training is killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nas.cli import main
from nas.data import load_dataset
from nas.evaluators import make_evaluator
from nas.supernet import SupernetError, SupernetSettings
from nas.supernet.artifact import CorruptArtifact, build_lock, default_path, load_artifact, \
    supernet_key
from nas.supernet.training import teacher

from _supernet_space import TINY_SETTINGS, TINY_SPACE, tiny_space

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NAS_MALLOC": "system"}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One torch thread (see tests/nas/test_train.py), also for the command, which would
    otherwise take every core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr("nas.train.configure_threads", lambda *args: 1)
    yield
    torch.set_num_threads(threads)


def _space_file(folder: Path, **changes) -> Path:
    path = folder / "space.json"
    path.write_text(json.dumps({**TINY_SPACE, **changes}))
    return path


def _train_args(space: Path, out: Path, *extra: str) -> list[str]:
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in TINY_SETTINGS.items()]
    return ["supernet", "train", "--space", str(space), "--out", str(out), "--quiet",
            *flags, *extra]


def test_train_reuses_refuses_and_rebuilds_through_the_command(tmp_path, capsys):
    space, out = _space_file(tmp_path), tmp_path / "s.pt"
    assert main(_train_args(space, out)) == 0
    printed = capsys.readouterr().out
    assert f"supernet {out}: trained; 8 steps" in printed  # 512 images / 64
    assert "largest sub-network: validation accuracy" in printed
    assert main(_train_args(space, out)) == 0
    assert "up to date" in capsys.readouterr().out

    # Another space: one line, exit code 2, the artifact untouched.
    before = out.read_bytes()
    (tmp_path / "other").mkdir()
    other = _space_file(tmp_path / "other", head_channels=48)
    assert main(_train_args(other, out)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "was trained over another space (head_channels 32 where this space has 48)" in error
    assert out.read_bytes() == before

    # Truncated: a search refuses it in one line and overwrites nothing ...
    out.write_bytes(before[: len(before) // 2])
    settings = SupernetSettings(**TINY_SETTINGS)
    with pytest.raises(SupernetError, match="corrupt or truncated") as refused:
        make_evaluator("supernet", space=tiny_space(), supernet=out, supernet_settings=settings)
    assert "\n" not in str(refused.value) and "nas supernet train --out" in str(refused.value)
    assert out.read_bytes() == before[: len(before) // 2]
    # ... and `nas supernet train` rebuilds it.
    assert main(_train_args(space, out)) == 0
    assert "trained; 8 steps" in capsys.readouterr().out
    assert make_evaluator("supernet", space=tiny_space(), supernet=out,
                          supernet_settings=settings).evaluate(teacher(tiny_space())) > 0.2


def test_a_file_that_is_not_a_supernet_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, out)
    before = out.read_bytes()
    assert main(_train_args(_space_file(tmp_path), out)) == 2
    assert "is not a supernet" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_an_artifact_of_another_dataset_space_or_split_is_refused_in_one_line(tmp_path):
    settings = SupernetSettings(**TINY_SETTINGS)
    evaluator = make_evaluator("supernet", space=tiny_space(), runs_dir=tmp_path,
                               supernet_settings=settings)
    key = json.loads(json.dumps(evaluator.key))
    key["dataset"].update(name="cifar10", train_images=50000)
    with pytest.raises(SupernetError) as refused:
        load_artifact(evaluator.path, tiny_space(), key)
    assert str(refused.value).endswith("(same --space, --dataset and settings)")
    assert "was trained on fashion-mnist (60000 training images), not on cifar10 (50000)" \
        in str(refused.value) and "\n" not in str(refused.value)
    other_stage = json.loads(json.dumps(evaluator.key))
    other_stage["space"]["stages"][2]["kernel_size"] = [3]
    with pytest.raises(SupernetError, match=r"was trained over another space \(stage 3 "
                       r"kernel_size \[3, 5\] where this space has \[3\]\)"):
        load_artifact(evaluator.path, tiny_space(), other_stage)
    other_split = json.loads(json.dumps(evaluator.key))
    other_split["settings"]["seed"] = 1
    with pytest.raises(SupernetError, match="trained with seed 0, this evaluation uses 1"):
        load_artifact(evaluator.path, tiny_space(), other_split)
    # Readable, of this space, but its weights do not fit (a tensor missing): corrupt.
    payload = torch.load(evaluator.path, weights_only=True)
    payload["state_dict"].pop("net.classifier.bias")
    torch.save(payload, evaluator.path)
    with pytest.raises(CorruptArtifact, match=r"weights do not fit its space \(Missing key"):
        load_artifact(evaluator.path, tiny_space(), evaluator.key)


_WORKER = """
import json, sys
from space import SearchSpace
from nas.evaluators import make_evaluator
from nas.supernet import SupernetSettings
space = SearchSpace.from_dict(json.loads(sys.argv[1]))
print("ready", flush=True)
evaluator = make_evaluator("supernet", space=space, runs_dir=sys.argv[3],
                           supernet_settings=SupernetSettings(**json.loads(sys.argv[2])))
print(json.dumps({"built": evaluator.built, "path": str(evaluator.path)}), flush=True)
"""


def test_two_processes_asking_at_once_build_the_supernet_once(tmp_path):
    settings = SupernetSettings(**TINY_SETTINGS)
    path = default_path(tmp_path, supernet_key(tiny_space(), load_dataset("fashion-mnist"),
                                               settings))
    command = [sys.executable, "-c", _WORKER, json.dumps(TINY_SPACE),
               json.dumps(TINY_SETTINGS), str(tmp_path)]
    with build_lock(path):  # both find it missing and queue behind this lock
        workers = [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, text=True)
                   for _ in range(2)]
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        time.sleep(3)  # their dataset loads, then both wait on the lock
        assert not path.exists()
    results = [json.loads(worker.communicate(timeout=120)[0].strip().splitlines()[-1])
               for worker in workers]
    assert sorted(result["built"] for result in results) == [False, True]
    assert {result["path"] for result in results} == {str(path)}
    assert not Path(f"{path}.partial").exists()


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path, capsys):
    space, out = _space_file(tmp_path), tmp_path / "s.pt"
    args = _train_args(space, out, "--epochs=4", "--checkpoint-seconds=0")
    process = subprocess.Popen([sys.executable, "-m", "nas", *args], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = Path(f"{out}.partial")
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert partial.exists() and not out.exists()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained (resumed at step " in printed and "32 steps" in printed
    assert not partial.exists()


def test_impossible_settings_are_one_line_usage_errors(tmp_path, capsys):
    space, out = _space_file(tmp_path), tmp_path / "s.pt"
    assert main(_train_args(space, out, "--epochs=0")) == 2
    assert capsys.readouterr().err == ("nas supernet: error: supernet settings: epochs >= 1, "
                                       "batch_size >= 2 and resolution >= 8 are required\n")
    assert main(_train_args(space, out, "--subset=10")) == 2
    assert "subset 10 must hold at least one batch (64 images)" in capsys.readouterr().err
    assert main(_train_args(space, tmp_path / "s.bin")) == 2
    assert "must be a .pt file name" in capsys.readouterr().err
    assert not out.exists()
