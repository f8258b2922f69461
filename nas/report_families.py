"""The scaled families of a run folder, as ``nas report`` shows them: the ``family.json``
files ``nas scale`` wrote there, and the accuracy of the members ``nas train`` trained
(their ``metrics.json``), drawn against phi as in Figure 1 of the EfficientNet paper."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from .figures import Figure, Panel, Series

__all__ = ["member_accuracy", "find_families", "family_figures"]

log = logging.getLogger(__name__)


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    # ValueError: bad JSON, bad UTF-8, or an integer of more than 4,300 digits
    except (OSError, ValueError, RecursionError) as error:
        log.warning("ignoring %s: %s", path, error)
        return None


def member_accuracy(metrics: Any) -> Optional[float]:
    """A trained member's accuracy from its ``metrics.json`` (written by ``nas train``
    and benchmarks/reproduce.py, the only two keys either has ever written): the test
    accuracy if there is one, else the validation accuracy; in [0, 1]."""
    if not isinstance(metrics, dict):
        return None
    for key in ("test_accuracy", "val_accuracy"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
    return None


def _member_metrics(folder: Path, member: dict) -> Optional[float]:
    names = [str(member.get("name", "")), Path(str(member.get("file", ""))).stem,
             f"b{member.get('phi')}"]
    for name in dict.fromkeys(n for n in names if n and "/" not in n and n not in (".", "..")):
        path = folder / name / "metrics.json"
        if path.is_file():
            return member_accuracy(_read_json(path))
    return None


def find_families(run_dir: Optional[Path]) -> list[tuple[str, Path, dict]]:
    """``family.json`` files in the run folder and its direct subfolders, as (label, folder,
    content); a file that is not a family (no ``members`` list) is skipped with a warning."""
    if run_dir is None:
        return []
    paths = [run_dir / "family.json"] + sorted(run_dir.glob("*/family.json"))
    families = []
    for path in paths:
        if not path.is_file():
            continue
        data = _read_json(path)
        members = data.get("members") if isinstance(data, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            log.warning("ignoring %s: it has no list of members", path)
            continue
        usable = [m for m in members if all(isinstance(m.get(k), (int, float)) for k in
                                            ("phi", "flops", "params", "activations"))]
        if not usable:
            continue
        label = path.parent.name if path.parent != run_dir else "family"
        method = data.get("method")
        if isinstance(method, str) and method != label:
            label = f"{label} ({method})"
        families.append((label,
                         path.parent, {**data, "members": sorted(usable, key=lambda m: m["phi"])}))
    return families


_FAMILY_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def family_figures(families: Sequence[tuple[str, Path, dict]]) -> list[Figure]:
    if not families:
        return []
    colours = {label: _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)]
               for i, (label, _, _) in enumerate(families)}
    panels = []
    for title, key in (("multiply-adds", "flops"), ("parameters", "params"),
                       ("activations", "activations")):
        panels.append(Panel(title=title, x_label="phi", y_label=title, y_log=True, series=tuple(
            Series(x=tuple(m["phi"] for m in data["members"]),
                   y=tuple(m[key] for m in data["members"]), name=label, kind="lines",
                   colour=colours[label], text=tuple(str(m.get("name", "")) for m in data["members"]))
            for label, _, data in families)))
    trained = []
    for label, folder, data in families:
        points = [(m["phi"], m["params"], accuracy, str(m.get("name", ""))) for m in data["members"]
                  if (accuracy := _member_metrics(folder, m)) is not None]
        if points:
            trained.append((label, points))
    note = ("" if trained else " No member has a metrics.json yet: train them with "
            "`nas train --genome <member>.json --out <family folder>/<member name>` to add "
            "accuracy.")
    figures = [Figure(key="family", title="Scaled families: cost against phi", panels=tuple(panels),
                      caption="Cost of each member against the scaling exponent phi (log scale). "
                              "Compound scaling aims at 2^phi times the base multiply-adds; "
                              "fast scaling (Dollar et al. 2021) keeps activations lower for "
                              "the same multiply-adds." + note)]
    if trained:
        figures.append(Figure(key="family-accuracy", title="Scaled families: accuracy", panels=(
            Panel(title="accuracy against phi", x_label="phi", y_label="accuracy", series=tuple(
                Series(x=tuple(p[0] for p in points), y=tuple(p[2] for p in points), name=label,
                       kind="lines", colour=colours[label], text=tuple(p[3] for p in points))
                for label, points in trained)),
            Panel(title="accuracy against parameters", x_label="parameters", y_label="accuracy",
                  x_log=True, series=tuple(
                      Series(x=tuple(p[1] for p in points), y=tuple(p[2] for p in points),
                             name=label, kind="lines", colour=colours[label],
                             text=tuple(p[3] for p in points))
                      for label, points in trained))),
            caption="Trained members (their metrics.json: test accuracy, else validation "
                    "accuracy). The right panel is drawn like Figure 1 of the EfficientNet "
                    "paper: accuracy against model size."))
    return figures
