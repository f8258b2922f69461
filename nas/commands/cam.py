"""``nas cam``: class activation maps of trained models, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cam import MAX_IMAGES, SPLITS, cam_grid
from ..common import UsageError, atomic_write_bytes, check_writable_dir, parse_seed
from ..outputs import check_target

EXAMPLES = """\
examples:
  nas cam --checkpoint runs/b0/model.pt --out cams.png
  nas cam --checkpoint b0.pt --checkpoint b1.pt --checkpoint b2.pt --images 8 --out family-cams.png
  nas cam --checkpoint width.pt --checkpoint depth.pt --checkpoint resolution.pt \\
          --checkpoint compound.pt --out scaling-cams.png      (EfficientNet Figure 7)

Each row is one held-out image (the test set by default: `nas train` scores its epochs on
it and never trains on it); each column after the first is one checkpoint's class
activation map (Zhou et al. 2016) for its predicted class, over the image at the model's
own resolution. Titles give the predicted class and its probability (green: right).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cam", help="draw class activation maps of trained checkpoints side by side",
        description="Draw class activation maps (classifier weights of the predicted class "
                    "times the last feature map, upsampled) of one or more checkpoints from "
                    "`nas train` on the same validation images, in one PNG grid.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="CKPT",
                        help="a checkpoint from `nas train`; repeat for several columns")
    parser.add_argument("--images", type=int, default=6,
                        help=f"how many images (rows), 1 to {MAX_IMAGES} (default 6)")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="test: the test set, which no training run sees (default); val: "
                             "images held out of the training set with --val-size and --seed, "
                             "as `nas train --val-size` and the search do")
    parser.add_argument("--val-size", type=int, default=5000,
                        help="with --split val: images held out (default 5000, as the search)")
    parser.add_argument("--seed", type=parse_seed, default=0, help="seed of the validation split and "
                        "of the image choice")
    parser.add_argument("--data", metavar="DIR", help="dataset folder (default: the dataset's "
                        "standard location)")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png" or out.is_dir():
        raise UsageError(f"--out {args.out!r} must be a .png file name")
    check_writable_dir(out.parent, "output folder")
    check_target(out)  # a device or a FIFO is refused before the maps are computed
    picture = cam_grid(args.checkpoint, images=args.images, split=args.split,
                       data_dir=args.data, val_size=args.val_size, seed=args.seed)
    atomic_write_bytes(out, picture)
    print(f"class activation maps of {len(args.checkpoint)} checkpoint(s) on {args.images} "
          f"{args.split} image(s): {out}")
    return 0
