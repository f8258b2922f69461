"""Taking a network out of the tool: ONNX, TorchScript, ``torch.export`` programs and timm
architecture strings.

Every binary export is checked before it is returned: the file is loaded back the way a
deployment would load it (onnxruntime; ``torch.jit.load``; ``torch.export.load``) and run
on a batch of a *different* size from the one it was traced with, and its output must
equal the torch model's in eval mode within :data:`TOLERANCE` of the largest output. So a
file that :func:`export_network` hands out has already run, with a dynamic batch.

Choices:

- **ONNX opset 17** through torch's TorchScript-based exporter (``dynamo=False``). Opset
  17 is the last before ``ReduceMean`` took its axes as an input (opset 18), and is read
  by onnxruntime 1.13 and later, TensorRT 8.6 and OpenVINO 2023; every operator these
  networks use (Conv, Gemm, Sigmoid, Mul, Add, ReduceMean) exists since opset 13, so
  ``opset`` may go down to 13 for older runtimes. This exporter needs nothing beyond torch
  and onnx and took 0.4 s for EfficientNet-B0 at 64 px; torch's newer ``torch.export``
  based one needs the extra ``onnxscript`` package, starts at opset 18 (its
  down-conversion to 17 fails on ``ReduceMean``) and took 4.9 s (docs/export.md).
  Batch-norm is folded into the convolutions (eval mode); the batch axis is dynamic.
- **TorchScript** by ``torch.jit.trace`` in eval mode (the forward has no data-dependent
  control flow, so tracing is exact). PyTorch has deprecated TorchScript in favour of
  ``torch.export``; it stays for LibTorch/C++ and older mobile runtimes.
- **torch.export** (``.pt2``) with a dynamic batch dimension (1 and up).

None of the files needs this package to load: they hold only torch/ONNX operators. Each
carries the genome and its input contract as metadata (ONNX ``metadata_props``; an extra
file ``nas.json`` in the TorchScript and ``.pt2`` archives).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np
import torch
from torch import nn

from space import Genome, NasError
from space.schema import exactly, first_mismatch
from space.timm_format import to_timm

__all__ = ["ExportError", "FORMATS", "BINARY_FORMATS", "ONNX_OPSET", "ONNX_OPSETS",
           "TOLERANCE", "INPUT_NAME", "OUTPUT_NAME", "Exported", "architecture_difference",
           "example_input", "export_metadata", "export_onnx", "export_torchscript",
           "export_program", "run_onnx", "run_torchscript", "run_program", "export_network",
           "export_timm", "LARGEST_BATCH"]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
# 13: the oldest opset with every operator these networks use in today's form; 20: the
# newest torch's TorchScript-based exporter writes.
ONNX_OPSETS = range(13, 21)
# Largest allowed max |exported - torch| on a check batch, relative to max |torch output|:
# relative, because an untrained network's logits in eval mode can be as small as 1e-13.
TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_TRACE_BATCH, _CHECK_BATCH = 2, 3
# The most images an export runs through the network at once (its memory estimate).
LARGEST_BATCH = max(_TRACE_BATCH, _CHECK_BATCH)

# The formats were asked for by name, so torch's notices that they are deprecated
# (TorchScript, the TorchScript-based ONNX exporter) would only be noise here.
_DEPRECATION_NOTICES = (r".*torch\.jit\..* is deprecated.*",
                        r".*legacy TorchScript-based ONNX.*", r".*feature will be removed.*")


class ExportError(NasError):
    """An export that cannot be made, or whose file does not reproduce the model."""


@dataclass(frozen=True)
class Exported:
    """One exported file, not yet written. ``max_abs_diff`` is the largest difference
    between the reloaded file's output and the torch model's on ``check_batch`` inputs,
    ``max_abs_output`` the largest torch output there."""

    format: str
    data: bytes
    max_abs_diff: float
    max_abs_output: float
    check_batch: int


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence only torch's deprecation notices for these exporters."""
    with warnings.catch_warnings():
        for pattern in _DEPRECATION_NOTICES:
            warnings.filterwarnings("ignore", message=pattern, category=DeprecationWarning)
        yield


def architecture_difference(genome: Genome, other: Genome) -> Optional[str]:
    """The first architectural field in which ``other`` differs from ``genome``
    ('stage 3 out_channels 48 vs 40'), or None. Training settings (dropout,
    drop-connect), resolution and name do not change the weights and are not compared
    (the same comparison as :meth:`space.SearchSpace.why_not_contained`)."""
    mismatch = first_mismatch(other, exactly(genome))
    if mismatch is None:
        return None
    return f"{mismatch.label} {mismatch.value!r} vs {mismatch.allowed[0]!r}"


def example_input(batch: int, in_channels: int, resolution: int, seed: int = 0) -> torch.Tensor:
    """A normalised-image-like float32 batch ``(batch, C, R, R)`` drawn from N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, in_channels, resolution, resolution, generator=generator)


def export_metadata(genome: Genome, *, num_classes: int, in_channels: int, resolution: int,
                    normalization: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
    """String key/values stored in each file: the genome and the input contract."""
    metadata = {
        "nas.genome": genome.to_json(indent=None),
        "nas.num_classes": str(num_classes),
        "nas.in_channels": str(in_channels),
        "nas.resolution": str(resolution),
        "nas.input": f"float32 ({INPUT_NAME}: batch x {in_channels} x {resolution} x "
                     f"{resolution}); output {OUTPUT_NAME}: batch x {num_classes}",
    }
    if normalization:
        metadata["nas.normalization"] = json.dumps(dict(normalization))
    return metadata


def export_onnx(model: nn.Module, example: torch.Tensor, *, opset: int = ONNX_OPSET,
                metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """The ONNX bytes of ``model`` (put in eval mode), with a dynamic batch axis, checked by
    ``onnx.checker`` (full check, with shape inference)."""
    import onnx  # here, not at the top: every `nas` command imports this module


    if opset not in ONNX_OPSETS:
        raise ExportError(f"ONNX opset {opset} is not supported; choose "
                          f"{ONNX_OPSETS.start} to {ONNX_OPSETS.stop - 1} (default {ONNX_OPSET})")
    model.eval()
    buffer = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "nas-scale"
    if metadata:
        onnx.helper.set_model_props(proto, dict(metadata))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        first = str(error).splitlines()[0]
        raise ExportError(f"the ONNX model fails onnx.checker: {first}") from None
    return proto.SerializeToString()


def export_torchscript(model: nn.Module, example: torch.Tensor, *,
                       metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """A traced TorchScript archive of ``model`` in eval mode (``torch.jit.load`` reads it)."""
    model.eval()
    buffer = io.BytesIO()
    with _quiet(), torch.no_grad():
        # check_trace re-runs the model to compare; export_network checks the reloaded
        # archive on another batch size instead, which proves more.
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={"nas.json": json.dumps(dict(metadata or {}))})
    return buffer.getvalue()


def export_program(model: nn.Module, example: torch.Tensor, *,
                   metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """A ``torch.export`` program (``.pt2``) of ``model`` in eval mode, batch dimension
    dynamic from 1 up (``torch.export.load(path).module()`` runs it)."""
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    buffer = io.BytesIO()
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, buffer, extra_files={"nas.json": json.dumps(dict(metadata or {}))})
    return buffer.getvalue()


def run_onnx(data: bytes, inputs: torch.Tensor) -> torch.Tensor:
    """Run ONNX bytes with onnxruntime on the CPU."""
    import onnxruntime  # here, not at the top: every `nas` command imports this module

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the graph-optimiser notes are not for users
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    (output,) = session.run([OUTPUT_NAME], {INPUT_NAME: inputs.numpy().astype(np.float32)})
    return torch.from_numpy(output)


def run_torchscript(data: bytes, inputs: torch.Tensor) -> torch.Tensor:
    with _quiet(), torch.no_grad():
        return torch.jit.load(io.BytesIO(data), map_location="cpu")(inputs)


def run_program(data: bytes, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(io.BytesIO(data)).module()(inputs)


_Runner = Callable[[bytes, torch.Tensor], torch.Tensor]
_EXPORTERS: dict[str, tuple[Callable[..., bytes], _Runner]] = {
    "onnx": (export_onnx, run_onnx),
    "torchscript": (export_torchscript, run_torchscript),
    "exported-program": (export_program, run_program),
}
# A binary format is its exporter and runner above; the command's choices follow from them.
BINARY_FORMATS = tuple(_EXPORTERS)
FORMATS = BINARY_FORMATS + ("timm",)


def export_network(model: nn.Module, fmt: str, *, in_channels: int, resolution: int,
                   metadata: Optional[Mapping[str, str]] = None, opset: int = ONNX_OPSET,
                   check_inputs: Optional[torch.Tensor] = None,
                   tolerance: float = TOLERANCE) -> Exported:
    """Export ``model`` (switched to eval mode) as ``fmt`` and prove the file: load it back,
    run it on ``check_inputs`` (default: 3 random images, a batch size other than the
    traced one) and compare with torch. Raises :class:`ExportError` when they differ by
    more than ``tolerance x max |torch output|``."""
    if fmt not in _EXPORTERS:
        raise ExportError(f"unknown binary format {fmt!r}; choose one of "
                          f"{', '.join(BINARY_FORMATS)}")
    exporter, runner = _EXPORTERS[fmt]
    model.eval()
    example = example_input(_TRACE_BATCH, in_channels, resolution, seed=0)
    options = {"opset": opset} if fmt == "onnx" else {}
    logger.info("exporting %s at %d px, %d input channel(s)", fmt, resolution, in_channels)
    data = exporter(model, example, metadata=metadata, **options)
    inputs = (example_input(_CHECK_BATCH, in_channels, resolution, seed=1)
              if check_inputs is None else check_inputs)
    with torch.no_grad():
        expected = model(inputs)
    got = runner(data, inputs)
    if got.shape != expected.shape:
        raise ExportError(f"the {fmt} file returns shape {tuple(got.shape)} for a batch of "
                          f"{inputs.shape[0]}; torch returns {tuple(expected.shape)}")
    difference = float((got - expected).abs().max())
    scale = float(expected.abs().max())
    if not difference <= tolerance * scale:
        raise ExportError(f"the {fmt} file's output differs from torch by {difference:.3g} "
                          f"where the outputs reach {scale:.3g} (allowed: {tolerance:g} of "
                          "that); nothing was written")
    return Exported(format=fmt, data=data, max_abs_diff=difference, max_abs_output=scale,
                    check_batch=inputs.shape[0])


def export_timm(genome: Genome, *, base: Optional[Genome] = None, channel_multiplier: float = 1.0,
                depth_multiplier: float = 1.0, num_classes: int = 1000,
                in_channels: int = 3) -> str:
    """JSON text of ``genome`` as timm strings (:func:`space.timm_format.to_timm`) with the
    Python that builds it in timm under ``"python"`` (one line per list item).
    ``TimmArch.from_dict(data, ignore=("format", "python"))`` reads it back."""
    arch = to_timm(genome, base=base, channel_multiplier=channel_multiplier,
                   depth_multiplier=depth_multiplier)
    body = {"format": "timm-efficientnet", **arch.to_dict(),
            "python": arch.python_code(num_classes=num_classes, in_chans=in_channels).splitlines()}
    return json.dumps(body, indent=2) + "\n"
