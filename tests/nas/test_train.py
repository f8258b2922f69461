"""The trainer, checkpoints and `nas train` on small slices of the real Fashion-MNIST."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest
import torch

from nas import full_train
from nas.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from nas.cli import main
from nas.data import Normalization, load_dataset, preprocess, split_train_val, take_subset
from nas.train import TrainConfig, TrainingDiverged, fit, learning_rate, state_digest
from space import Genome, NasError, Stage, build, presets

# A two-stage genome small enough to train in a second or two on 2 cores.
TINY = Genome(name="tiny", stem_channels=8, head_channels=32, dropout=0.0,
              drop_connect_rate=0.0, resolution=32, activation="relu",
              stages=(Stage(kernel_size=3, expand_ratio=1, se_ratio=0.0, num_layers=1,
                            out_channels=8, stride=1),
                      Stage(kernel_size=3, expand_ratio=3, se_ratio=0.25, num_layers=2,
                            out_channels=16, stride=2)))


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these models are tiny, and on a shared 2-core machine a second
    OpenMP thread that spins while the other core is busy makes training 20-40x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def slices():
    data = load_dataset("fashion-mnist")
    train, val = split_train_val(data, 1000, seed=0)
    return data, take_subset(train, 3072, seed=0), val


@pytest.fixture
def tiny_json(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(TINY.to_json())
    return path


def test_onecycle_and_cosine_schedules():
    config = TrainConfig(lr=0.01, schedule="onecycle")
    assert learning_rate(0, 100, config, 10) == pytest.approx(0.01 / 25)
    assert learning_rate(25, 100, config, 10) == pytest.approx(0.01)
    assert learning_rate(100, 100, config, 10) == pytest.approx(0.01 / 2500)
    rates = [learning_rate(step, 100, config, 10) for step in range(100)]
    assert rates.index(max(rates)) == 25
    cosine = TrainConfig(lr=0.1, schedule="cosine", warmup_epochs=1)
    assert learning_rate(0, 100, cosine, 10) == pytest.approx(0.01)
    assert learning_rate(9, 100, cosine, 10) == pytest.approx(0.1)
    assert learning_rate(55, 100, cosine, 10) == pytest.approx(0.05)
    # Linear scaling of SGD's rate with the batch, square root for AdamW.
    assert TrainConfig(optimizer="sgd", batch_size=512).peak_lr == pytest.approx(0.2)
    assert TrainConfig(batch_size=1024).peak_lr == pytest.approx(2 * TrainConfig().peak_lr)


def test_fit_learns_reports_each_epoch_and_is_reproducible(slices):
    data, train, val = slices
    seen = []
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build(TINY, num_classes=10, in_channels=1)
        result = fit(model, train=train, val=val, normalization=data.normalization,
                     config=TrainConfig(epochs=2, batch_size=64, lr=0.01, resolution=16),
                     on_epoch=lambda epoch, accuracy: seen.append((epoch, accuracy)))
        runs.append((result, state_digest(model)))
    (first, digest), (second, digest_again) = runs
    assert [epoch for epoch, _ in seen] == [1, 2, 1, 2]
    assert first.val_accuracy > 0.6  # 10 classes: chance is 0.1
    assert first.history[1]["train_loss"] < first.history[0]["train_loss"]
    assert [h["val_accuracy"] for h in first.history] == [h["val_accuracy"] for h in second.history]
    assert digest == digest_again
    assert first.images_per_second > 0


class _Stop(Exception):
    pass


def test_an_exception_from_on_epoch_propagates_unchanged(slices):
    data, train, val = slices

    def stop(epoch: int, accuracy: float) -> None:
        raise _Stop(f"pruned at {epoch}")

    model = build(TINY, num_classes=10, in_channels=1)
    with pytest.raises(_Stop, match="pruned at 1"):
        fit(model, train=train, val=val, normalization=data.normalization,
            config=TrainConfig(epochs=3, batch_size=256, resolution=16), on_epoch=stop)


def test_nan_loss_is_reported_with_its_epoch_and_step(slices):
    data, train, val = slices
    # A zero standard deviation turns every pixel into inf or NaN: the loss is NaN at once.
    broken = Normalization(mean=(0.5,), std=(0.0,))
    model = build(TINY, num_classes=10, in_channels=1)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 1"):
        fit(model, train=train, val=val, normalization=broken,
            config=TrainConfig(epochs=1, batch_size=64, resolution=16))


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip_rebuilds_the_same_network(tmp_path, slices):
    data = slices[0]
    torch.manual_seed(1)
    model = build(TINY, num_classes=10, in_channels=1).eval()
    path = save_checkpoint(tmp_path / "c.pt", genome=TINY, model=model, num_classes=10,
                           in_channels=1, resolution=16, dataset="fashion-mnist", epoch=3,
                           metrics={"val_accuracy": 0.5, "history": [{"epoch": 1}]},
                           normalization=data.normalization.to_dict())
    genome, rebuilt, meta = model_from_checkpoint(path)
    assert genome == TINY and not rebuilt.training
    assert meta["resolution"] == 16 and meta["num_classes"] == 10 and meta["in_channels"] == 1
    assert meta["normalization"]["mean"] == [pytest.approx(0.286041)]
    assert meta["metrics"]["history"] == [{"epoch": 1}]
    inputs = preprocess(data.test.images[:8], 16, Normalization.from_dict(meta["normalization"]))
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), model(inputs))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer left no temporary file


class _Exploit:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("content, message", [
    (b"not a torch file", "not a readable torch file"),
    ("pickle", "not safe to load"),
    ("other", "not a nas checkpoint"),
])
def test_bad_checkpoints_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if content == "pickle":
        buffer = io.BytesIO()
        torch.save({"format": "nas-checkpoint", "x": _Exploit()}, buffer, pickle_module=pickle)
        content = buffer.getvalue()
    elif content == "other":
        buffer = io.BytesIO()
        torch.save({"state_dict": {}}, buffer)
        content = buffer.getvalue()
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as raised:
        load_checkpoint(path)
    assert "\n" not in str(raised.value) and isinstance(raised.value, NasError)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_whose_weights_do_not_fit_its_genome(tmp_path):
    model = build(TINY, num_classes=10, in_channels=1)
    path = save_checkpoint(tmp_path / "c.pt", genome=presets.get("mnasnet-a1"), model=model,
                           num_classes=10, in_channels=1, resolution=32, dataset="fashion-mnist",
                           epoch=1, metrics={}, normalization={"mean": [0.3], "std": [0.3]})
    with pytest.raises(CheckpointError, match="weights do not fit its genome"):
        model_from_checkpoint(path)


# -- nas train ----------------------------------------------------------------------------


def _train(tiny_json: Path, out: Path, *extra: str) -> int:
    return main(["train", "--genome", str(tiny_json), "--out", str(out), "--subset", "3072",
                 "--val-size", "500", "--resolution", "16", "--batch-size", "64", "--lr",
                 "0.01", "--threads", "1", "--quiet", *extra])


def test_cli_trains_writes_metrics_and_resumes_to_the_same_result(tmp_path, tiny_json, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(tiny_json, straight, "--epochs", "2") == 0
    output = capsys.readouterr().out
    assert "the stem convolution is built for 1 instead of 3" in output
    assert "epoch 2/2" in output and "done: test accuracy" in output
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["in_channels"] == 1
    assert metrics["resolution"] == 16 and metrics["world_size"] == 1
    assert 0.5 < metrics["test_accuracy"] <= 1 and metrics["history"][1]["val_accuracy"] > 0.5

    # Interrupt the same run (Ctrl-C) right after epoch 1 is on disk, then resume it.
    real_save = full_train.save_checkpoint

    def save_then_interrupt(*args, **kwargs):  # the checkpoint and its metrics.json
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(full_train, "save_checkpoint", save_then_interrupt)
        assert _train(tiny_json, split, "--epochs", "2") == 130
    assert json.loads((split / "metrics.json").read_text())["epochs_completed"] == 1
    assert _train(tiny_json, split, "--epochs", "2", "--resume") == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    resumed = json.loads((split / "metrics.json").read_text())
    # Same data order, augmentation and optimizer state: the same numbers as one run.
    assert [h["val_accuracy"] for h in resumed["history"]] == \
           [h["val_accuracy"] for h in metrics["history"]]
    assert resumed["test_accuracy"] == metrics["test_accuracy"]
    _, model_a, _ = model_from_checkpoint(straight / "checkpoint.pt")
    _, model_b, meta = model_from_checkpoint(split / "checkpoint.pt")
    assert meta["epoch"] == 2 and state_digest(model_a) == state_digest(model_b)


def test_cli_refuses_to_overwrite_or_to_resume_differently(tmp_path, tiny_json, capsys):
    out = tmp_path / "run"
    assert _train(tiny_json, out, "--epochs", "1") == 0
    capsys.readouterr()
    assert _train(tiny_json, out, "--epochs", "1") == 2
    assert "pass --resume" in capsys.readouterr().err
    assert _train(tiny_json, out, "--epochs", "2", "--resume", "--batch-size", "32") == 2
    assert "differs from the checkpoint's 64" in capsys.readouterr().err
    assert main(["train", "--genome", "efficientnet-b0", "--out", str(out), "--resume"]) == 2
    assert "different genome" in capsys.readouterr().err
    assert main(["train", "--genome", str(tiny_json), "--out", str(tmp_path / "new"),
                 "--resume"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--val-size", "60000"], "validation size 60000 is out of range"),
    (["--epochs", "0"], "--epochs 0 must be at least 1"),
    (["--resolution", "4"], "--resolution 4 must be 8 to 1024"),
    (["--data", "/nonexistent"], "apt-get install -y dataset-fashion-mnist"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, tiny_json, capsys, flags, message):
    code = main(["train", "--genome", str(tiny_json), "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "checkpoint.pt").exists()
