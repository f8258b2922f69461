"""Files for the bad-input rows of issue 24's classes: a checkpoint per broken field, space
files with an impossible value between good ones, integers of thousands of digits, a
network whose memory estimate no machine meets."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

DEFAULT_SPACE = (Path(__file__).resolve().parents[2] / "space" / "default_space.toml").read_text()
HUGE = "7" * 5000  # digits: past Python's 4,300-digit conversion limit
# One small stage: a checkpoint of it is a few kilobytes.
TINY = {"version": 1, "name": "tiny", "stem_channels": 8, "head_channels": 16,
        "stages": [{"kernel_size": 3, "expand_ratio": 1, "se_ratio": 0, "num_layers": 1,
                    "out_channels": 8, "stride": 2}],
        "dropout": 0.2, "drop_connect_rate": 0.2, "resolution": 224,
        "resolution_multiplier": 1, "activation": "silu"}
# What `nas train` records and `--resume` reads.
SETTINGS = {"epochs": 2, "batch_size": 64, "optimizer": "adamw", "lr": None,
            "weight_decay": None, "schedule": "onecycle", "label_smoothing": 0.1,
            "augment": True, "resolution": 32, "seed": 0}


def _b0() -> dict:
    from space import presets

    return presets.get("efficientnet-b0").to_dict()


def _checkpoints(folder: Path) -> None:
    import torch

    from nas.checkpoint import save_checkpoint
    from space import Genome, build

    genome = Genome.from_dict(TINY)
    good = folder / "tiny.pt"
    save_checkpoint(good, genome=genome, model=build(genome, num_classes=10, in_channels=1),
                    num_classes=10, in_channels=1, resolution=32, dataset="fashion-mnist",
                    epoch=1, metrics={"settings": SETTINGS, "history": [], "wall_seconds": 1.0},
                    normalization={"mean": [0.286], "std": [0.353]})
    payload = torch.load(good, weights_only=True)
    # 16,384 head channels at 4,096 px: 17 G activations per image, 1.3 MB of weights.
    wide = Genome.from_dict({**TINY, "head_channels": 16384})
    save_checkpoint(folder / "ckpt_wide_4096.pt", genome=wide, num_classes=10, in_channels=1,
                    model=build(wide, num_classes=10, in_channels=1), resolution=4096,
                    dataset="fashion-mnist", epoch=1, metrics={},
                    normalization={"mean": [0.286], "std": [0.353]})
    broken = {
        "genome_path": {"genome": "/dev/zero"},
        "genome_number": {"genome": 5},
        "resolution_string": {"resolution": "32"},
        "normalization": {"normalization": {"mean": [0.2], "std": "wide"}},
        "state_dict": {"state_dict": [1, 2, 3]},
    }
    for name, change in broken.items():
        torch.save({**payload, **change}, folder / f"ckpt_{name}.pt")
    resume = folder / "resume"
    resume.mkdir()
    settings = {key: value for key, value in SETTINGS.items() if key != "lr"}
    torch.save({**payload, "metrics": {"settings": settings, "history": [],
                                       "wall_seconds": 1.0}}, resume / "checkpoint.pt")
    good.unlink()


def hostile_files(folder: Path) -> None:
    """Writes the files into ``folder``; made once per process, then copied (every row's
    folder gets them, and building networks for each would cost seconds in all)."""
    with _LOCK:  # the rows' folders are filled from two threads
        if not _MADE:
            with tempfile.TemporaryDirectory(prefix="hostile-files-") as made_in:
                _make(Path(made_in))
                _MADE.update({path.relative_to(made_in): path.read_bytes()
                              for path in sorted(Path(made_in).rglob("*")) if path.is_file()})
    for name, data in _MADE.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


_MADE: dict[Path, bytes] = {}
_LOCK = threading.Lock()


def _make(folder: Path) -> None:
    (folder / "tiny.json").write_text(json.dumps(TINY))
    wide = _b0()
    wide.update(resolution=4096, head_channels=16384)
    for stage in wide["stages"]:
        stage["out_channels"] = 16384
    (folder / "wide_4096.json").write_text(json.dumps(wide))
    (folder / "digits.json").write_text(json.dumps(_b0()).replace(
        '"num_layers": 1', f'"num_layers": {HUGE}', 1))
    (folder / "digits_float.json").write_text(json.dumps(_b0()).replace(
        '"dropout": 0.2', f'"dropout": {HUGE}', 1))
    (folder / "digits.toml").write_text(DEFAULT_SPACE.replace(
        "kernel_size = [3, 5]", f"kernel_size = [3, {HUGE}]"))
    (folder / "digits_400.toml").write_text(DEFAULT_SPACE.replace(
        "stem_channels = 32", f"stem_channels = {HUGE[:400]}"))
    space = {"stages": [{"out_channels": 16, "num_layers": 1, "stride": 1,
                         "kernel_size": [3, 5], "expand_ratio": [1, 6], "se_ratio": [0],
                         "layers_delta": [0], "width_multiplier": [1.0]}]}
    space_digits = json.dumps(space).replace('"num_layers": 1', f'"num_layers": {HUGE}')
    (folder / "digits_space.json").write_text(space_digits)
    (folder / "coefficients_digits.json").write_text(
        f'{{"alpha": {HUGE}, "beta": 1.1, "gamma": 1.15}}')
    for name, old, new in (("kernel_4", "kernel_size = [3, 5]", "kernel_size = [3, 4, 5]"),
                           ("kernel_6", "kernel_size = [3, 5]", "kernel_size = [3, 6, 7]"),
                           ("layers_past_limit", "layers_delta = [-1, 0, 1]",
                            "layers_delta = [-1, 0, 63]")):
        (folder / f"{name}.toml").write_text(DEFAULT_SPACE.replace(old, new))
    _checkpoints(folder)
