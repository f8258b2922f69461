"""Class activation maps of tiny networks trained for a few steps on real Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from nas.cam import class_activation_maps, pick_images
from nas.checkpoint import model_from_checkpoint, save_checkpoint
from nas.cli import main
from nas.data import Normalization, load_dataset, preprocess, split_train_val
from space import Genome, Stage, build, graph

DATA = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="Fashion-MNIST not installed "
                                "(apt-get install dataset-fashion-mnist)")


def tiny(name: str, width: int) -> Genome:
    return Genome(name=name, stem_channels=16, head_channels=4 * width, resolution=32, stages=(
        Stage(kernel_size=3, expand_ratio=1, se_ratio=0.25, num_layers=1, out_channels=16, stride=1),
        Stage(kernel_size=3, expand_ratio=4, se_ratio=0.25, num_layers=1, out_channels=width, stride=2),
        Stage(kernel_size=5, expand_ratio=4, se_ratio=0.25, num_layers=1, out_channels=width, stride=2)))


def train_checkpoint(path: Path, genome: Genome, resolution: int, steps: int) -> Path:
    """A few AdamW steps (batch 48) on images outside the CAM test's validation split."""
    torch.manual_seed(0)
    dataset = load_dataset("fashion-mnist", DATA)
    train, _ = split_train_val(dataset, 5000, 0)
    model = build(genome, num_classes=10, in_channels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        index = torch.arange(step * 48, (step + 1) * 48)
        batch = preprocess(train.images[index], resolution, dataset.normalization)
        loss = torch.nn.functional.cross_entropy(model(batch), train.labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_checkpoint(path, genome=genome, model=model, num_classes=10, in_channels=1,
                           resolution=resolution, dataset="fashion-mnist", epoch=1,
                           metrics={"steps": steps},
                           normalization=dataset.normalization.to_dict())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks gain nothing from a second thread, and on a busy 2-core machine
    OpenMP threads waiting on each other make each step twenty times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {"small": train_checkpoint(folder / "small.pt", tiny("tiny", 24), 28, steps=30),
            "wide": train_checkpoint(folder / "wide.pt", tiny("tiny-wide", 32), 32, steps=20)}


def test_cam_is_the_logit_spread_over_space(checkpoints):
    genome, model, metadata = model_from_checkpoint(checkpoints["small"])
    dataset = load_dataset("fashion-mnist", DATA)
    _, val = split_train_val(dataset, 5000, 0)
    chosen = val.select(torch.arange(256))
    batch = preprocess(chosen.images, metadata["resolution"],
                       Normalization.from_dict(metadata["normalization"]))
    result = class_activation_maps(model, batch)
    # Zhou et al. 2016, Eq. 2: the pooled map plus the bias is the class logit.
    bias = model.classifier.bias[result.classes]
    chosen_logits = result.logits.gather(1, result.classes[:, None])[:, 0]
    torch.testing.assert_close(result.raw.mean((1, 2)) + bias, chosen_logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(result.classes, model(batch).argmax(1))
    side = metadata["resolution"]
    assert result.raw.shape[1:] == graph(genome, side).nodes["head"]["out_shape"][1:] == (4, 4)
    assert result.maps.shape == (256, side, side)
    assert torch.allclose(result.maps.amax((1, 2)), torch.ones(256))
    assert torch.allclose(result.maps.amin((1, 2)), torch.zeros(256))
    # thirty steps already beat chance (10%) on held-out images
    accuracy = (result.classes == chosen.labels).float().mean().item()
    assert accuracy > 0.2, accuracy
    # explaining another class gives another map, and the identity still holds
    other = (result.classes + 1) % 10
    forced = class_activation_maps(model, batch, classes=other)
    torch.testing.assert_close(forced.raw.mean((1, 2)) + model.classifier.bias[other],
                               forced.logits.gather(1, other[:, None])[:, 0], atol=1e-4, rtol=1e-4)


def test_pick_images_covers_classes():
    dataset = load_dataset("fashion-mnist", DATA)
    _, val = split_train_val(dataset, 5000, 0)
    index = pick_images(val, 10, seed=3)
    assert sorted(val.labels[index].tolist()) == list(range(10))
    assert torch.equal(index, pick_images(val, 10, seed=3))
    assert len(set(pick_images(val, 12, seed=3).tolist())) == 12


def test_cam_grid_side_by_side(checkpoints, tmp_path, capsys):
    out = tmp_path / "cams.png"
    assert main(["cam", "--checkpoint", str(checkpoints["small"]), "--checkpoint",
                 str(checkpoints["wide"]), "--images", "4", "--split", "val", "--out",
                 str(out)]) == 0
    assert "2 checkpoint(s) on 4 val image(s)" in capsys.readouterr().out
    picture = imread(out)
    height, width = picture.shape[:2]
    # three columns (input + two models) by four rows, 1.9 x 2.05 inches each at 110 dpi
    assert abs(width - 3 * 1.9 * 110) < 3 and abs(height - (4 * 2.05 + 0.5) * 110) < 3
    assert picture[..., :3].std() > 0.1  # drawn, not blank
    test_grid = tmp_path / "test-cams.png"
    assert main(["cam", "--checkpoint", str(checkpoints["small"]), "--images", "2", "--out",
                 str(test_grid)]) == 0  # the test split by default
    assert "1 checkpoint(s) on 2 test image(s)" in capsys.readouterr().out
    assert imread(test_grid).shape[1] < width  # two columns


def test_cam_bad_input_is_one_line(checkpoints, tmp_path, capsys):
    small = checkpoints["small"]
    # a checkpoint whose weights belong to another genome
    _, model, _ = model_from_checkpoint(small)
    mismatched = save_checkpoint(tmp_path / "mismatched.pt", genome=tiny("other", 48),
                                 model=model, num_classes=10, in_channels=1, resolution=32,
                                 dataset="fashion-mnist", epoch=1, metrics={},
                                 normalization={"mean": [0.286], "std": [0.353]})
    out = tmp_path / "cams.png"
    assert main(["cam", "--checkpoint", str(small), "--checkpoint", str(mismatched),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights do not fit its genome" in err
    # models of different datasets cannot share a grid
    rgb = save_checkpoint(tmp_path / "rgb.pt", genome=tiny("rgb", 32),
                          model=build(tiny("rgb", 32), num_classes=10, in_channels=3),
                          num_classes=10, in_channels=3, resolution=32, dataset="cifar10",
                          epoch=1, metrics={}, normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    assert main(["cam", "--checkpoint", str(small), "--checkpoint", str(rgb),
                 "--out", str(out)]) == 2
    assert "has dataset 'cifar10', the first checkpoint 'fashion-mnist'" in capsys.readouterr().err
    assert main(["cam", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["cam", "--checkpoint", str(small), "--images", "0", "--out", str(out)]) == 2
    assert "--images 0: choose 1 to 32" in capsys.readouterr().err
    assert main(["cam", "--checkpoint", str(small), "--out", str(tmp_path / "cams.jpg")]) == 2
    assert "must be a .png file name" in capsys.readouterr().err
    assert not out.exists()


def test_a_one_by_one_feature_map_stays_flat():
    """Three stride-2 steps take 8 px to a 1x1 map: nothing to localize, so the map is
    drawn flat rather than as stretched rounding noise."""
    torch.manual_seed(0)
    model = build(tiny("tiny", 24), num_classes=10, in_channels=1).eval()
    result = class_activation_maps(model, torch.randn(3, 1, 8, 8))
    assert result.raw.shape == (3, 1, 1)
    assert torch.equal(result.maps, torch.zeros(3, 8, 8))
