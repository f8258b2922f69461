"""``nas export``: a network as ONNX, TorchScript, a torch.export program or timm strings."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from space import Genome, build

from ..checkpoint import model_from_checkpoint
from ..common import UsageError, atomic_write_bytes, format_count, load_genome
from ..export import (FORMATS, INPUT_NAME, LARGEST_BATCH, ONNX_OPSET, ONNX_OPSETS, OUTPUT_NAME,
                      ExportError, architecture_difference, export_metadata, export_network,
                      export_timm)
from ..memory import check_fits, inference_bytes
from ..outputs import check_target

logger = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  nas export --genome efficientnet-b0 --format onnx --out b0.onnx
  nas export --checkpoint runs/b0/checkpoint.pt --format torchscript --out b0.ts
  nas export --genome runs/<study>/best.json --checkpoint runs/best-train/checkpoint.pt \\
             --format exported-program --out best.pt2
  nas export --genome mnasnet-a1 --format onnx --out a1.onnx --resolution 32 \\
             --num-classes 10 --in-channels 1 --opset 13
  nas export --genome efficientnet-b0 --format timm --out b0.timm.json
  nas export --genome b3.json --format timm --out b3.timm.json \\
             --base efficientnet-b0 --channel-multiplier 1.2 --depth-multiplier 1.4

ONNX, TorchScript and .pt2 files take float32 images (batch, C, R, R), normalised as in
training, and give logits (batch, classes); the batch size is free. Each file is loaded
back and run on 3 images before it is written and must match torch within 1e-4 of the
largest logit. None of them needs this package to load. See docs/export.md.
"""

_MAX_CLASSES = 1_000_000


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a network as ONNX, TorchScript, a torch.export program or timm "
                       "strings",
        description=f"Write a genome's network, with a checkpoint's weights or untrained, as\n"
                    f"ONNX (opset {ONNX_OPSET}), TorchScript or a torch.export program (.pt2), or "
                    "its\narchitecture as timm's EfficientNet strings (JSON with the Python that "
                    "builds it\nin timm).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", metavar="G", help="preset name or genome JSON file "
                        "(may be left out with --checkpoint, which holds its genome)")
    parser.add_argument("--checkpoint", metavar="CKPT", help="trained weights written by "
                        "`nas train`; its genome must match --genome (default: untrained "
                        "weights)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--out", required=True, metavar="FILE", help="file to write")
    parser.add_argument("--resolution", type=int, metavar="PX",
                        help="input size in pixels (default: the checkpoint's training "
                             "resolution, else the genome's deployment one)")
    parser.add_argument("--num-classes", type=int, metavar="N",
                        help="classifier outputs (default: the checkpoint's, else 1000)")
    parser.add_argument("--in-channels", type=int, metavar="C",
                        help="input channels (default: the checkpoint's, else 3)")
    parser.add_argument("--opset", type=int, metavar="N",
                        help=f"ONNX opset, {ONNX_OPSETS.start} to {ONNX_OPSETS.stop - 1} "
                             f"(default {ONNX_OPSET})")
    timm = parser.add_argument_group(
        "timm format", "The strings hold the genome's final widths and repeats (multipliers "
                       "1.0);\nwith --base, the base genome's strings plus multipliers, as timm "
                       "writes B1..B7\n(they must rebuild the genome exactly).")
    timm.add_argument("--base", metavar="G", help="the unscaled genome (preset or JSON file)")
    timm.add_argument("--channel-multiplier", type=float, metavar="W", help="width multiplier")
    timm.add_argument("--depth-multiplier", type=float, metavar="D", help="depth multiplier")
    parser.set_defaults(handler=run)


def _check_flags(args: argparse.Namespace) -> Path:
    if args.genome is None and args.checkpoint is None:
        raise UsageError("give --genome G, --checkpoint CKPT or both")
    if args.format != "onnx" and args.opset is not None:
        raise UsageError("--opset applies to --format onnx only")
    if args.opset is not None and args.opset not in ONNX_OPSETS:
        raise UsageError(f"--opset {args.opset} is not supported; choose {ONNX_OPSETS.start} to "
                         f"{ONNX_OPSETS.stop - 1} (default {ONNX_OPSET})")
    timm_flags = [flag for flag, value in (("--base", args.base),
                                          ("--channel-multiplier", args.channel_multiplier),
                                          ("--depth-multiplier", args.depth_multiplier))
                  if value is not None]
    if args.format != "timm" and timm_flags:
        raise UsageError(f"{timm_flags[0]} applies to --format timm only")
    if args.format == "timm":
        if args.resolution is not None:
            raise UsageError("--resolution does not apply to --format timm (the strings hold no "
                             "input size; the genome's resolution is written as 'resolution')")
        if args.base is None and len(timm_flags) > 0:
            raise UsageError(f"{timm_flags[0]} needs --base (the genome the multipliers scale)")
    if args.resolution is not None and not 8 <= args.resolution <= 4096:
        raise UsageError(f"--resolution {args.resolution} is out of range; expected 8 to 4096 "
                         "pixels")
    for flag, value in (("--num-classes", args.num_classes), ("--in-channels", args.in_channels)):
        if value is not None and not 1 <= value <= _MAX_CLASSES:
            raise UsageError(f"{flag} {value} is out of range; expected 1 to {_MAX_CLASSES:,}")
    for flag, value in (("--channel-multiplier", args.channel_multiplier),
                        ("--depth-multiplier", args.depth_multiplier)):
        if value is not None and not 0 < value <= 64:
            raise UsageError(f"{flag} {value:g} is out of range; expected a number in (0, 64]")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file name")
    check_target(out)  # a device or a FIFO is refused before the export's work, not after
    folder = next((parent for parent in out.absolute().parents if parent.exists()), None)
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise UsageError(f"cannot write --out {str(out)!r}: {str(folder)!r} is not a writable "
                         "folder")
    return out


def _from_checkpoint(args: argparse.Namespace, genome: Optional[Genome]):
    """(genome, model, metadata) of the checkpoint after checking it against the flags."""
    saved, model, metadata = model_from_checkpoint(args.checkpoint)
    if genome is not None:
        difference = architecture_difference(genome, saved)
        if difference:
            raise ExportError(f"checkpoint {args.checkpoint!r} was trained for another "
                              f"architecture than --genome {args.genome!r} ({difference}: "
                              "checkpoint vs genome); pass the genome it was trained with, or "
                              "leave --genome out")
    for flag, key in (("--num-classes", "num_classes"), ("--in-channels", "in_channels")):
        wanted = getattr(args, key)
        if wanted is not None and wanted != metadata[key]:
            raise ExportError(f"{flag} {wanted} does not fit checkpoint {args.checkpoint!r}, "
                              f"which has {metadata[key]}; leave {flag} out")
    return saved, model, metadata


def _write(out: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(out, data)
    except OSError as error:  # the folder checked writable can still fill up or vanish
        raise ExportError(f"cannot write {str(out)!r}: {error.strerror or error}") from None


def run(args: argparse.Namespace) -> int:
    out = _check_flags(args)
    genome = load_genome(args.genome) if args.genome is not None else None
    base = load_genome(args.base) if args.base is not None else None
    model, metadata = None, {}
    if args.checkpoint is not None:
        genome, model, metadata = _from_checkpoint(args, genome)
    num_classes = args.num_classes or metadata.get("num_classes", 1000)
    in_channels = args.in_channels or metadata.get("in_channels", 3)

    if args.format == "timm":
        text = export_timm(genome, base=base,
                           channel_multiplier=args.channel_multiplier or 1.0,
                           depth_multiplier=args.depth_multiplier or 1.0,
                           num_classes=num_classes, in_channels=in_channels)
        _write(out, text.encode("utf-8"))
        body = json.loads(text)
        print(f"wrote {out}: {genome.name or 'genome'} as timm strings "
              f"(channel multiplier {body['channel_multiplier']:g}, depth multiplier "
              f"{body['depth_multiplier']:g}, depth_trunc {body['depth_trunc']!r}, act_layer "
              f"{body['act_layer']!r})")
        for stage in body["arch_def"]:
            print(f"  {stage}")
        print("build it in timm with the Python lines under \"python\" in the file"
              + ("; the weights are not part of this format" if args.checkpoint else ""))
        return 0

    resolution = args.resolution or metadata.get("resolution") or genome.resolution
    check_fits(inference_bytes(genome, resolution=resolution, batch=LARGEST_BATCH,
                               num_classes=num_classes, in_channels=in_channels),
               f"exporting {genome.name or 'the genome'} at {resolution} px",
               advice="lower --resolution")
    if model is None:
        logger.warning("no --checkpoint: the weights are the untrained initialisation "
                       "(its eval-mode logits are close to 0)")
        model = build(genome, num_classes=num_classes, in_channels=in_channels)
    opset = args.opset if args.opset is not None else ONNX_OPSET
    exported = export_network(
        model, args.format, in_channels=in_channels, resolution=resolution, opset=opset,
        metadata=export_metadata(genome, num_classes=num_classes, in_channels=in_channels,
                                 resolution=resolution,
                                 normalization=metadata.get("normalization")))
    _write(out, exported.data)
    detail = f", opset {opset}" if args.format == "onnx" else ""
    print(f"wrote {out} ({args.format}{detail}, {format_count(len(exported.data))}B): "
          f"{genome.name or 'genome'}, {INPUT_NAME} float32 (batch, {in_channels}, {resolution}, "
          f"{resolution}) -> {OUTPUT_NAME} (batch, {num_classes}); batch is dynamic")
    print(f"reloaded and run on a batch of {exported.check_batch}: max |difference| from torch "
          f"{exported.max_abs_diff:.1e} (outputs up to {exported.max_abs_output:.1e})")
    normalization: Optional[dict[str, Any]] = metadata.get("normalization")
    if normalization:
        print(f"inputs are pixels in [0, 1] normalised with mean {normalization['mean']} and "
              f"std {normalization['std']}")
    return 0
