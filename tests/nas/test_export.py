"""``nas export`` and ``nas.export``: ONNX, TorchScript, torch.export programs and timm strings.

Networks are put in a realistic state first: batch-norm statistics measured on real
Fashion-MNIST images (an untrained network's eval-mode logits are ~1e-13, which would make
any tolerance meaningless), then compared on other real images in eval mode.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from nas.checkpoint import save_checkpoint
from nas.cli import main
from nas.data import load_dataset, preprocess
from nas.export import (ONNX_OPSET, example_input, export_onnx, export_program,
                        export_torchscript, run_onnx, run_program, run_torchscript)
from scaling import scale
from space import Genome, SearchSpace, build, cost, presets
from space.timm_format import TimmArch

REPO = Path(__file__).resolve().parents[2]
# The bar: 1e-4. It is absolute for logits up to 1 and relative beyond, because
# float32 itself differs by more on larger logits: the same TorchScript file on 2 CPU
# threads instead of 1 differed by 9.6e-4 on logits of 125 (docs/export.md).
TOLERANCE = 1e-4
PRESET_RESOLUTION, RANDOM_RESOLUTION = 64, 32
CLASSES, CHANNELS = 10, 1  # Fashion-MNIST


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Several test suites share two cores; torch's two intra-op threads then wait on each
    # other (a B0 forward went from 0.03 s to 2 s). One thread keeps the file fast.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist")


def real_batch(dataset, resolution: int, start: int, count: int) -> torch.Tensor:
    return preprocess(dataset.test.images[start:start + count], resolution, dataset.normalization)


def calibrated_model(genome: Genome, dataset, resolution: int, seed: int = 0) -> torch.nn.Module:
    """The untrained network, in eval mode, with batch-norm statistics recalibrated on 32
    real images (batch-norm layers alone in training mode, cumulative averages), so that its
    logits have the spread of a trained network's (a few units)."""
    torch.manual_seed(seed)
    model = build(genome, num_classes=CLASSES, in_channels=CHANNELS).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.train()
    with torch.no_grad():
        model(real_batch(dataset, resolution, 0, 32))
    return model.eval()


def assert_close(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    difference = float((got - expected).abs().max())
    allowed = TOLERANCE * max(1.0, float(expected.abs().max()))
    assert got.shape == expected.shape and difference <= allowed, (
        f"{what}: max |difference| {difference:.2e} > {allowed:.2e}")


def cases() -> list[tuple[str, Genome, int]]:
    space = SearchSpace.default()
    return ([(name, presets.get(name), PRESET_RESOLUTION) for name in presets.names()]
            + [(f"random-{seed}", space.random_genome(random.Random(seed)), RANDOM_RESOLUTION)
               for seed in range(20)])


@pytest.mark.parametrize("name, genome, resolution", cases(), ids=[case[0] for case in cases()])
def test_onnx_and_torchscript_outputs_equal_torch(name, genome, resolution, fashion):
    model = calibrated_model(genome, fashion, resolution)
    inputs = real_batch(fashion, resolution, 100, 5)  # batch 5: not the traced batch of 2
    with torch.no_grad():
        expected = model(inputs)
    assert 0.1 < float(expected.abs().max()) < 1e4  # a realistic scale, not ~0
    example = example_input(2, CHANNELS, resolution)

    onnx_bytes = export_onnx(model, example)
    proto = onnx.load_from_string(onnx_bytes)
    assert proto.opset_import[0].version == ONNX_OPSET
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert_close(run_onnx(onnx_bytes, inputs), expected, f"{name} onnxruntime")
    assert_close(run_torchscript(export_torchscript(model, example), inputs), expected,
                 f"{name} TorchScript")


def test_exported_program_equals_torch(fashion):
    model = calibrated_model(presets.get("efficientnet-b0"), fashion, PRESET_RESOLUTION)
    data = export_program(model, example_input(2, CHANNELS, PRESET_RESOLUTION))
    for count in (1, 7):  # dynamic batch, down to 1
        inputs = real_batch(fashion, PRESET_RESOLUTION, 200, count)
        with torch.no_grad():
            expected = model(inputs)
        assert_close(run_program(data, inputs), expected, f"exported program, batch {count}")


# Runs in `python3 -I` from an empty folder, with `space`, `nas` and `scaling` made
# unimportable even though this checkout is installed (editable) in site-packages.
CLEAN_LOADER = textwrap.dedent("""
    import importlib.abc, json, sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("space", "nas", "scaling"):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, Blocked())
    import numpy, onnxruntime, torch
    for package in ("space", "nas", "scaling"):
        try:
            __import__(package)
            raise SystemExit(f"{package} was importable")
        except ImportError:
            pass
    inputs = numpy.load("inputs.npy")
    session = onnxruntime.InferenceSession("net.onnx", providers=["CPUExecutionProvider"])
    extra = {"nas.json": ""}
    script = torch.jit.load("net.ts", _extra_files=extra)
    program = torch.export.load("net.pt2").module()
    with torch.no_grad():
        outputs = {"onnx": session.run(["logits"], {"input": inputs})[0],
                   "torchscript": script(torch.from_numpy(inputs)).numpy(),
                   "exported-program": program(torch.from_numpy(inputs)).numpy()}
    loaded = [name for name in sys.modules if name.split(".")[0] in ("space", "nas", "scaling")]
    print(json.dumps({"outputs": {name: out.tolist() for name, out in outputs.items()},
                      "genome": json.loads(extra["nas.json"])["nas.genome"], "loaded": loaded}))
""")


# -- the command ----------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["export", *argv])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_timm_format_round_trips(tmp_path, capsys):
    genome = presets.get("mnasnet-a1")
    code, out, _ = run_cli(capsys, "--genome", "mnasnet-a1", "--format", "timm",
                           "--out", str(tmp_path / "a1.timm.json"))
    assert code == 0 and "['ir_r3_k5_s2_e3_c40_se0.25']" in out
    data = json.loads((tmp_path / "a1.timm.json").read_text())
    assert data["act_layer"] == "relu"
    assert TimmArch.from_dict(data, ignore=("format", "python")).to_genome() == genome
    assert "model = EfficientNet(" in data["python"]


def test_cli_timm_base_and_multipliers(tmp_path, capsys):
    b3 = scale(presets.get("efficientnet-b0"), phi=3, method="official")
    (tmp_path / "b3.json").write_text(b3.to_json())
    code, out, _ = run_cli(capsys, "--genome", str(tmp_path / "b3.json"), "--format", "timm",
                           "--base", "efficientnet-b0", "--channel-multiplier", "1.2",
                           "--depth-multiplier", "1.4", "--out", str(tmp_path / "b3.timm.json"))
    assert code == 0 and "channel multiplier 1.2, depth multiplier 1.4, depth_trunc 'ceil'" in out
    data = json.loads((tmp_path / "b3.timm.json").read_text())
    assert data["arch_def"][1] == ["ir_r2_k3_s2_e6_c24_se0.25"]
    assert TimmArch.from_dict(data, ignore=("format", "python")).to_genome() == b3


def make_checkpoint(path: Path, genome: Genome, dataset) -> torch.nn.Module:
    model = calibrated_model(genome, dataset, RANDOM_RESOLUTION)
    save_checkpoint(path, genome=genome, model=model, num_classes=CLASSES, in_channels=CHANNELS,
                    resolution=RANDOM_RESOLUTION, dataset="fashion-mnist", epoch=1,
                    metrics={"test_accuracy": 0.1},
                    normalization=dataset.normalization.to_dict())
    return model


def test_cli_exports_a_checkpoint_in_every_format_that_loads_without_this_package(
        tmp_path, capsys, fashion):
    genome = presets.get("mnasnet-a1")
    model = make_checkpoint(tmp_path / "model.pt", genome, fashion)
    folder = tmp_path / "clean"
    for fmt, name in (("onnx", "net.onnx"), ("torchscript", "net.ts"),
                      ("exported-program", "net.pt2")):
        code, out, _ = run_cli(capsys, "--checkpoint", str(tmp_path / "model.pt"), "--format", fmt,
                               "--out", str(folder / name))
        assert code == 0
        # the checkpoint's class count, channels, training resolution and normalisation
        assert "input float32 (batch, 1, 32, 32) -> logits (batch, 10); batch is dynamic" in out
        assert "normalised with mean [0.286" in out
        assert "reloaded and run on a batch of 3" in out
    proto = onnx.load(str(folder / "net.onnx"))
    properties = {prop.key: prop.value for prop in proto.metadata_props}
    assert Genome.from_json(properties["nas.genome"]) == genome
    assert json.loads(properties["nas.normalization"]) == fashion.normalization.to_dict()
    assert proto.opset_import[0].version == ONNX_OPSET

    inputs = real_batch(fashion, RANDOM_RESOLUTION, 300, 4)
    with torch.no_grad():
        expected = model(inputs)
    np.save(folder / "inputs.npy", inputs.numpy())
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_LOADER], cwd=folder,
                          env={**os.environ, "OMP_NUM_THREADS": "1"},  # see one_thread
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert set(report["outputs"]) == {"onnx", "torchscript", "exported-program"}
    for fmt, output in report["outputs"].items():
        assert_close(torch.tensor(output), expected, f"{fmt} loaded without the package")
    assert Genome.from_json(report["genome"]) == genome


def test_hubconf_builds_presets_files_and_checkpoints(tmp_path, fashion):
    model = torch.hub.load(str(REPO), "genome_model", "efficientnet-b0", source="local")
    assert sum(p.numel() for p in model.parameters()) == cost(presets.get("efficientnet-b0")).params
    genome = presets.get("mnasnet-a1")
    (tmp_path / "a1.json").write_text(genome.to_json())
    trained = make_checkpoint(tmp_path / "model.pt", genome, fashion)
    loaded = torch.hub.load(str(REPO), "genome_model", str(tmp_path / "a1.json"),
                            checkpoint=str(tmp_path / "model.pt"), source="local")
    assert not loaded.training
    inputs = real_batch(fashion, RANDOM_RESOLUTION, 500, 3)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), trained(inputs))
    with pytest.raises(Exception, match="trained for another architecture"):
        torch.hub.load(str(REPO), "genome_model", "efficientnet-b0",
                       checkpoint=str(tmp_path / "model.pt"), source="local")
    with pytest.raises(Exception, match="num_classes=1000 does not fit"):
        torch.hub.load(str(REPO), "genome_model", str(tmp_path / "a1.json"), num_classes=1000,
                       checkpoint=str(tmp_path / "model.pt"), source="local")


@pytest.fixture(scope="module")
def mismatched_checkpoint(tmp_path_factory, fashion) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "a1.pt"
    make_checkpoint(path, presets.get("mnasnet-a1"), fashion)
    return path


def bad_inputs(folder: Path, checkpoint: Path) -> dict[str, tuple[list[str], str]]:
    odd = presets.get("efficientnet-b0").to_dict()
    odd["stages"][2]["out_channels"] = 44
    (folder / "odd.json").write_text(json.dumps(odd))
    (folder / "broken.pt").write_bytes(b"not a checkpoint")
    return {
        "unknown format": (["--genome", "efficientnet-b0", "--format", "tflite"],
                           "invalid choice: 'tflite'"),
        "checkpoint of another genome": (["--genome", "efficientnet-b0", "--checkpoint",
                                          str(checkpoint), "--format", "onnx"],
                                         "was trained for another architecture than --genome"),
        "genome timm cannot express": (["--genome", str(folder / "odd.json"), "--format", "timm"],
                                       "stage 3 out_channels: timm builds 48, the genome has 44"),
        "unreadable checkpoint": (["--checkpoint", str(folder / "broken.pt"), "--format",
                                   "torchscript"], f"checkpoint '{folder / 'broken.pt'}'"),
        "classes that do not fit": (["--checkpoint", str(checkpoint), "--num-classes", "1000",
                                     "--format", "onnx"], "--num-classes 1000 does not fit"),
        "unsupported opset": (["--genome", "mnasnet-a1", "--format", "onnx", "--opset", "9"],
                              "--opset 9 is not supported"),
        "multiplier without base": (["--genome", "mnasnet-a1", "--format", "timm",
                                     "--depth-multiplier", "1.2"], "needs --base"),
        "no genome": (["--format", "onnx"], "give --genome G, --checkpoint CKPT or both"),
    }


@pytest.mark.parametrize("case", ["unknown format", "checkpoint of another genome",
                                  "genome timm cannot express", "unreadable checkpoint",
                                  "classes that do not fit", "unsupported opset",
                                  "multiplier without base", "no genome"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys,
                                                           mismatched_checkpoint):
    argv, message = bad_inputs(tmp_path, mismatched_checkpoint)[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = {path.name for path in tmp_path.rglob("*")}
    code, _, err = run_cli(capsys, *argv, "--out", str(out_dir / "net.bin"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith("nas export: error: ")
    assert {path.name for path in tmp_path.rglob("*")} == before  # nothing written
