"""Results, tables, verdicts and plots of benchmarks/reproduce.py, from the files of its
run folder (members' metrics.json, speed.json, the copied study), so ``--report-only``
and a partial run give the same tables.

Every table and plot names the protocol the members were trained under (``one-epoch``
or ``converged``, with its numbers), so the two reproductions are never confused.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from nas.common import atomic_write_bytes, atomic_write_json, atomic_write_text, markdown_table

if TYPE_CHECKING:
    from reproduce import Protocol

B0 = "efficientnet-b0"
SEARCHED = "searched"
BASES = (SEARCHED, B0)
PART2_METHODS = ("compound", "width", "depth", "resolution")
# Families in training priority: when time runs short, the compound families (parts 2
# and 4) and the fast/uniform pair (part 3) are the ones finished first at every phi.
FAMILY_ORDER = ("compound", "fast-a0.8", "fast-a0.333", "width", "resolution", "depth")


def title(protocol: Protocol) -> str:
    return f"{protocol.name} protocol"


def describe(protocol: Protocol) -> str:
    """The protocol's numbers in words, for headings and plot captions."""
    test = "all 10,000" if protocol.test_size is None else f"{protocol.test_size:,}"
    return (f"Fashion-MNIST, {protocol.subset:,} training images x {protocol.epochs} "
            f"epoch(s), batch {protocol.batch_size}, "
            f"{'augmented' if protocol.augment else 'no augmentation'}, {protocol.resolution} "
            f"px x resolution multiplier, {test} test images")


def last_third_start(epochs: int) -> int:
    """The epoch a third of the run before its end (10 of 15; at least one back)."""
    return epochs - max(1, round(epochs / 3))


def last_third_gain(accuracies: Sequence[float]) -> Optional[float]:
    """Test accuracy after the last epoch minus after epoch last_third_start: what the
    last third of the training still added. None with fewer than two epochs."""
    if len(accuracies) < 2:
        return None
    return accuracies[-1] - accuracies[last_third_start(len(accuracies)) - 1]


def collect(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((out / "members").glob("seed*/*/*/metrics.json")):
        rows.append(json.loads(path.read_text()))
    return rows


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per member: accuracy mean over seeds, spread (max - min), seeds, costs, runtimes,
    every seed's test accuracy after each epoch and their mean last-third gain."""
    by_member: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("test_accuracy") is not None:
            by_member.setdefault(row["member"], []).append(row)
    result = {}
    for member, runs in by_member.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        accuracies = [r["test_accuracy"] for r in runs]
        curves = [[h["test_accuracy"] for h in r.get("history", [])] for r in runs]
        gains = [last_third_gain(curve) for curve in curves]
        first = runs[0]
        result[member] = {
            "member": member, "base": first["base"], "family": first["family"],
            "phi": first["phi"], "resolution": first["resolution"], "flops": first["flops"],
            "params": first["params"], "activations": first["activations"],
            "deploy_flops": first["deploy_flops"], "seeds": [r["seed"] for r in runs],
            "accuracy": float(np.mean(accuracies)), "accuracies": accuracies,
            "test_images": first.get("test_images", 0),
            "spread": float(max(accuracies) - min(accuracies)),
            "train_images_per_second": float(np.median([r["train_images_per_second"] for r in runs])),
            "latency_b1_ms": float(np.median([r["latency_b1_ms"] for r in runs])),
            "seconds": float(sum(r["seconds"] for r in runs)),
            "seconds_per_seed": [r["seconds"] for r in runs],
            "epoch_accuracies": curves,
            "last_third_gain": None if None in gains else float(np.mean(gains))}
    return result


def family_rows(members: dict[str, dict[str, Any]], base: str, label: str) -> list[dict[str, Any]]:
    """The members of one family, phi 0 (the shared base) first."""
    rows = [m for m in members.values() if m["base"] == base
            and (m["phi"] == 0 or m["family"] == label)]
    return sorted(rows, key=lambda m: m["phi"])


def _percent(row: dict[str, Any]) -> str:
    text = f"{100 * row['accuracy']:.2f}"
    if len(row["seeds"]) > 1:
        text += f" ± {50 * row['spread']:.2f} (n={len(row['seeds'])})"
    return text


def _number(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _millions(value: float) -> str:
    return f"{value / 1e6:.1f}M"


def standard_error(row: dict[str, Any]) -> float:
    """Standard error of a member's mean test accuracy: the binomial sampling error of its
    test images plus, with two or more seeds, the seed-to-seed variance of the mean. A
    point interpolated between members (:func:`interpolate`) carries its own."""
    if "standard_error" in row:
        return row["standard_error"]
    p, n = row["accuracy"], max(row["test_images"], 1)
    variance = p * (1 - p) / n
    if len(row["accuracies"]) > 1:
        variance += float(np.var(row["accuracies"], ddof=1)) / len(row["accuracies"])
    return math.sqrt(variance)


def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
    """+1 if ``a`` is more accurate than ``b`` beyond two standard errors of the
    difference, -1 if less, 0 within noise."""
    gap = a["accuracy"] - b["accuracy"]
    noise = 2 * math.hypot(standard_error(a), standard_error(b))
    return 0 if abs(gap) <= noise else (1 if gap > 0 else -1)


def interpolate(curve: Sequence[dict[str, Any]], flops: float) -> Optional[dict[str, Any]]:
    """A family's accuracy at ``flops`` multiply-adds: linear in log multiply-adds between
    the two measured members that bracket it (None outside them), with the standard error
    their two errors give. How the curve runs between its points is assumed, not
    measured."""
    points = sorted(curve, key=lambda m: m["flops"])
    for low, high in zip(points, points[1:]):
        if low["flops"] <= flops <= high["flops"]:
            span = math.log(high["flops"] / low["flops"])
            t = math.log(flops / low["flops"]) / span if span else 0.0
            return {"accuracy": (1 - t) * low["accuracy"] + t * high["accuracy"],
                    "standard_error": math.hypot((1 - t) * standard_error(low),
                                                 t * standard_error(high)),
                    "between": f"b{low['phi']}..b{high['phi']}"}
    return None


def _verdict(outcomes: Sequence[int]) -> str:
    if not outcomes:
        return "not measured"
    if any(o < 0 for o in outcomes):
        return "not reproduced"
    return "reproduced" if all(o > 0 for o in outcomes) else "within noise"


def _points(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The accuracy gap in points, and the multiply-adds (as trained) it came at: scaling
    rounds layers up per stage, so the same phi can cost different amounts."""
    return (f"{100 * (a['accuracy'] - b['accuracy']):+.2f} at "
            f"{a['flops'] / b['flops']:.2f}x the multiply-adds")


def claims(members: dict[str, dict[str, Any]], speed: Optional[dict[str, Any]],
           bases: dict[str, str]) -> list[dict[str, str]]:
    """A verdict for each paper claim from the members there are: "reproduced" when every
    comparison favours the claim beyond two standard errors, "not reproduced" when any
    goes against it beyond them, "within noise" otherwise. Members are compared at the
    same phi, i.e. the same multiply-add multiplier at the deployed resolution."""
    found, top_phi = [], max((m["phi"] for m in members.values()), default=0)
    for base in BASES:
        outcomes, evidence = [], []
        for phi in range(1, 1 + top_phi):
            compound = members.get(f"{base}/compound-b{phi}")
            for method in PART2_METHODS[1:]:
                single = members.get(f"{base}/{method}-b{phi}")
                if compound and single:
                    outcomes.append(compare(compound, single))
                    evidence.append(f"b{phi} vs {method} {_points(compound, single)}")
        found.append({"part": "2", "claim": f"{bases.get(base, base)}: compound scaling is "
                      "more accurate than width, depth or resolution alone at the same "
                      "multiplier (EfficientNet, Fig. 3 and 8)",
                      "evidence": "; ".join(evidence) or "-", "verdict": _verdict(outcomes)})
        # The same phi costs one dimension alone far less than all three together, so
        # the paper's Figure 3 compares the curves at equal multiply-adds instead.
        curve = family_rows(members, base, "compound")
        outcomes, evidence = [], []
        for method in PART2_METHODS[1:]:
            for single in family_rows(members, base, method):
                point = interpolate(curve, single["flops"]) if single["phi"] else None
                if point:
                    outcomes.append(compare(point, single))
                    evidence.append(f"{method} b{single['phi']} at "
                                    f"{_millions(single['flops'])}: compound ({point['between']}) "
                                    f"{100 * (point['accuracy'] - single['accuracy']):+.2f}")
        found.append({"part": "2 (equal cost)", "claim": f"{bases.get(base, base)}: compound "
                      "scaling is more accurate than width, depth or resolution alone at equal "
                      "multiply-adds (EfficientNet, Fig. 3; the compound curve interpolated "
                      "in log multiply-adds between its members)",
                      "evidence": "; ".join(evidence) or "-", "verdict": _verdict(outcomes)})
    measured = (speed or {}).get("members", {})
    accuracy, activations, runtime, evidence = [], [], [], []
    for phi in range(1, 1 + top_phi):
        fast, uniform = (members.get(f"{B0}/fast-a0.8-b{phi}"),
                         members.get(f"{B0}/fast-a0.333-b{phi}"))
        if not (fast and uniform):
            continue
        # The claim is "as accurate": fast passes unless it is worse beyond noise.
        accuracy.append(1 if compare(fast, uniform) >= 0 else -1)
        activations.append(1 if fast["activations"] < uniform["activations"] else -1)
        text = (f"b{phi}: accuracy {_points(fast, uniform)}, activations "
                f"{fast['activations'] / uniform['activations']:.2f}x")
        if fast["member"] in measured and uniform["member"] in measured:
            quick, slow = measured[fast["member"]], measured[uniform["member"]]
            latency_ratio = quick["latency_b1_ms"] / slow["latency_b1_ms"]
            training_ratio = quick["train_images_per_second"] / slow["train_images_per_second"]
            runtime.append(1 if latency_ratio < 1 and training_ratio > 1 else -1)
            text += (f", latency {latency_ratio:.2f}x, training speed {training_ratio:.2f}x")
        evidence.append(text)
    fast_verdicts = {"accuracy": _verdict(accuracy), "activations": _verdict(activations),
                     "runtime (latency and training)": _verdict(runtime)}
    found.append({"part": "3", "claim": "fast scaling (a = 0.8) is as accurate as uniform "
                  "compound scaling (a = 1/3), with fewer activations and faster on this "
                  "machine (Dollar et al. 2021)", "evidence": "; ".join(evidence) or "-",
                  "verdict": ", ".join(f"{k}: {v}" for k, v in fast_verdicts.items())})
    outcomes, evidence = [], []
    for phi in range(0, 1 + top_phi):
        name = "b0" if phi == 0 else f"compound-b{phi}"
        searched, reference = members.get(f"{SEARCHED}/{name}"), members.get(f"{B0}/{name}")
        if searched and reference:
            outcomes.append(compare(searched, reference))
            evidence.append(f"b{phi} {_points(searched, reference)}")
    found.append({"part": "4", "claim": "the searched baseline's compound family is more "
                  "accurate than EfficientNet-B0's at the same multiplier",
                  "evidence": "; ".join(evidence) or "-", "verdict": _verdict(outcomes)})
    return found


def phi_trends(members: dict[str, dict[str, Any]], bases: dict[str, str]) -> list[dict[str, Any]]:
    """Whether each family's accuracy rises with phi: every step between its measured
    members (b0 -> b1 -> b2 ...) and b0 against its largest member, each weighed by
    ``compare``. Verdicts: "rises at every step", "rises overall" (no step falls beyond
    noise, some are within it), "falls" (the largest member is less accurate than b0),
    "mixed" (rises overall, yet one step falls), "within noise", "not measured"."""
    found = []
    for base in BASES:
        labels = PART2_METHODS + (("fast-a0.8", "fast-a0.333") if base == B0 else ())
        for label in labels:
            rows = family_rows(members, base, label)
            if not any(row["phi"] > 0 for row in rows):
                continue
            steps = [(low, high, compare(high, low)) for low, high in zip(rows, rows[1:])]
            if rows[0]["phi"] != 0:
                overall, verdict = None, "not measured"
            else:
                overall = compare(rows[-1], rows[0])
                outcomes = [outcome for _, _, outcome in steps]
                if all(outcome > 0 for outcome in outcomes):
                    verdict = "rises at every step"
                elif overall > 0:
                    verdict = "mixed" if min(outcomes) < 0 else "rises overall"
                else:
                    verdict = "falls" if overall < 0 else "within noise"
            found.append({
                "base": base, "family": label, "phis": [row["phi"] for row in rows],
                "accuracies": [row["accuracy"] for row in rows],
                "steps": [f"b{low['phi']}->b{high['phi']} "
                          f"{100 * (high['accuracy'] - low['accuracy']):+.2f}"
                          f"{'' if outcome else ' (noise)'}" for low, high, outcome in steps],
                "overall": overall, "verdict": verdict})
    return found


def phi_trends_markdown(found: Sequence[dict[str, Any]], bases: dict[str, str],
                        protocol: Protocol) -> str:
    table = [[bases.get(row["base"], row["base"]), row["family"],
              " -> ".join(f"{100 * accuracy:.2f}" for accuracy in row["accuracies"]),
              "; ".join(row["steps"]), row["verdict"]] for row in found]
    return (f"### Does accuracy rise with phi? ({title(protocol)})\n\n"
            "Each step between a family's measured members, in points; \"(noise)\" marks a "
            "step within two standard errors of the difference (the rule of the claims "
            "below).\n\n"
            + markdown_table(["base", "family", "test acc % by phi", "steps (points)",
                              "verdict"], table) + "\n")


def search_record(out: Path) -> Optional[dict[str, Any]]:
    """Part 1 from the copied study (baseline/study.db): its target, wall time and every
    trial's state, cost and proxy accuracy; None without a copied study."""
    import optuna

    from nas.run import RunFolder, locate_study, open_study
    from nas.trial import TrialRecord

    folder = RunFolder(out / "baseline")
    if not folder.study_db.is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(locate_study(run_dir=folder.path))
    trials = []
    for trial in study.trials:
        attrs, kind = trial.user_attrs, TrialRecord(trial).state
        # "state" is Optuna's, as in trials.csv; "kind" the trial's state in nas.trial.
        trials.append({"number": trial.number, "state": trial.state.name, "kind": kind,
                       "trained": bool(trial.intermediate_values) or trial.value is not None,
                       "prescreened": kind == "prescreened",
                       "flops": attrs.get("flops"), "params": attrs.get("params"),
                       "accuracy": attrs.get("accuracy", max(
                           trial.intermediate_values.values(), default=None)),
                       # Optuna stores a pruned trial's last intermediate value as its
                       # value; that is an accuracy, not a reward.
                       "reward": trial.value if trial.state.name == "COMPLETE" else None,
                       "seconds": (trial.duration.total_seconds() if trial.duration else None)})
    starts = [t.datetime_start for t in study.trials if t.datetime_start]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
    return {"study": study.study_name, "target_flops": study.user_attrs.get("target"),
            "evaluator": study.user_attrs.get("evaluator"),
            "prescreen": study.user_attrs.get("prescreen", "none"),
            "wall_seconds": (max(ends) - min(starts)).total_seconds() if ends else None,
            "trials": trials}


def search_markdown(search: dict[str, Any]) -> str:
    trained = [t for t in search["trials"] if t["trained"]]
    best = max((t for t in trained if t["reward"] is not None), key=lambda t: t["reward"],
               default=None)
    table = [[t["number"] if t is not best else f"**{t['number']}** (best)", t["state"],
              _millions(t["flops"]), _millions(t["params"]),
              _number(None if t["accuracy"] is None else 100 * t["accuracy"], ".2f"),
              _number(t["reward"], ".4f"), _number(t["seconds"], ".0f")] for t in trained]
    minutes = (search["wall_seconds"] or 0) / 60
    prescreened = sum(t.get("prescreened", False) for t in search["trials"])
    how = (f" ({prescreened} by their {search.get('prescreen')} score, the rest by their "
           "multiply-adds)" if prescreened else " by their multiply-adds")
    return (f"### Part 1: the search ({search['study']})\n\n"
            f"{len(search['trials'])} trials in {minutes:.1f} minutes, target "
            f"{_millions(search['target_flops'])} multiply-adds at 224 px, evaluator "
            f"{search['evaluator']}; {len(search['trials']) - len(trained)} of them were "
            f"screened out{how} before training. The trained ones:\n\n"
            + markdown_table(["trial", "state", "multiply-adds", "params",
                              "proxy val acc %", "reward", "seconds"], table) + "\n")


def _gain_row(member: dict[str, Any]) -> dict[str, Any]:
    return {"member": member["member"], "flops": member["flops"], "seeds": member["seeds"],
            "epochs": len(member["epoch_accuracies"][0]), "accuracy": member["accuracy"],
            "gain": member["last_third_gain"],
            "gains": [last_third_gain(curve) for curve in member["epoch_accuracies"]]}


def plateau(members: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Whether the training levelled off, for EfficientNet-B0 and the member with the
    most multiply-adds: each one's gain over the last third of the epochs (fractions,
    mean and per seed). Empty under a one-epoch protocol."""
    chosen = [members[f"{B0}/b0"]] if f"{B0}/b0" in members else []
    largest = max(members.values(), key=lambda m: m["flops"], default=None)
    if largest is not None and largest["member"] != f"{B0}/b0":
        chosen.append(largest)
    return [_gain_row(m) for m in chosen if m["last_third_gain"] is not None]


def last_third_gains(members: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The same gain for every member, the largest first: the plateau check covers two
    members, and a member that learns slower than both (a much deeper one) shows here."""
    rows = [_gain_row(m) for m in members.values() if m["last_third_gain"] is not None]
    return sorted(rows, key=lambda row: -row["gain"])


def _gain_table(found: Sequence[dict[str, Any]]) -> str:
    table = [[row["member"], _millions(row["flops"]), f"{100 * row['accuracy']:.2f}",
              f"{100 * row['gain']:+.2f}",
              ", ".join(f"{100 * gain:+.2f}" for gain in row["gains"])] for row in found]
    return markdown_table(["member", "multiply-adds", "final test acc %",
                           "gain (points, mean)", "gain per seed"], table)


def plateau_markdown(found: Sequence[dict[str, Any]], every: Sequence[dict[str, Any]],
                     protocol: Protocol) -> str:
    epochs = found[0]["epochs"]
    since = last_third_start(epochs)
    text = (f"### Plateau ({title(protocol)}): test accuracy gained from epoch {since} to "
            f"epoch {epochs}\n\n"
            "The learning rate anneals over the last third of a one-cycle schedule, so a "
            "member that has levelled off still gains a little there; a gain of several "
            "points says it had not. Every epoch's test accuracy is in the members' "
            "metrics.json (`history`) and in plateau.png.\n\n" + _gain_table(found) + "\n")
    if len(every) > len(found):
        text += ("\nEvery member, the largest gain first (a member far above the check's "
                 "gains had not levelled off, and its accuracy understates what it can "
                 "reach):\n\n" + _gain_table(every) + "\n")
    return text


def coverage(rows: Sequence[dict[str, Any]], planned: Sequence[tuple[int, str]]) -> dict[str, Any]:
    """How many of the ``planned`` (seed, member) trainings have a test accuracy, and which
    members still lack one under which seeds, so a partial run's tables say they are."""
    finished = {(row["seed"], row["member"]) for row in rows
                if row.get("test_accuracy") is not None}
    wanted = set(planned)
    missing: dict[str, list[int]] = {}
    for seed, member in planned:
        if (seed, member) not in finished:
            missing.setdefault(member, []).append(seed)
    return {"planned": len(wanted), "finished": len(wanted & finished),
            "missing": [{"member": member, "seeds": sorted(seeds)}
                        for member, seeds in missing.items()]}


def coverage_markdown(found: dict[str, Any]) -> str:
    if not found["missing"]:
        return f"All {found['planned']} planned trainings (members x seeds) have finished.\n"
    still = "; ".join(f"{row['member']} (seed{'s' * (len(row['seeds']) > 1)} "
                      f"{', '.join(map(str, row['seeds']))})" for row in found["missing"])
    return (f"**A partial run: {found['finished']} of {found['planned']} planned trainings "
            f"(members x seeds) have finished.** Still to train: {still}.\n")


def _member_order(member: dict[str, Any]) -> tuple:
    """EfficientNet-B0's members before the searched baseline's, b0 first, then by family
    and phi."""
    family = member["family"] if member["phi"] else ""
    return ((B0, SEARCHED).index(member["base"]),
            FAMILY_ORDER.index(family) if family in FAMILY_ORDER else -1, member["phi"])


def trainings_markdown(members: dict[str, dict[str, Any]], protocol: Protocol) -> str:
    """Every training: each member's test accuracy and seconds under each seed."""
    seeds = sorted({seed for member in members.values() for seed in member["seeds"]})
    table = []
    for member in sorted(members.values(), key=_member_order):
        accuracy = dict(zip(member["seeds"], member["accuracies"]))
        seconds = dict(zip(member["seeds"], member["seconds_per_seed"]))
        table.append([member["member"], _millions(member["flops"]),
                      *(_number(None if seed not in accuracy else 100 * accuracy[seed], ".2f")
                        for seed in seeds),
                      ", ".join(_number(seconds.get(seed), ",.0f") for seed in seeds)])
    return (f"### Every training ({title(protocol)})\n\nTest accuracy in %; seconds are wall "
            "time of each training (with its test evaluations), in seed order; - where that "
            "seed has not finished.\n\n"
            + markdown_table(["member", "multiply-adds as trained",
                              *(f"seed {seed}" for seed in seeds), "seconds per training"],
                             table) + "\n")


def summary_markdown(members: dict[str, dict[str, Any]], speed: Optional[dict[str, Any]],
                     bases: dict[str, str], protocol: Protocol,
                     search: Optional[dict[str, Any]] = None,
                     found: Optional[dict[str, Any]] = None) -> str:
    """Tables of all parts (accuracy in %, mean ± half the max-min spread over seeds),
    under a heading that names the protocol; with ``found`` (:func:`coverage`), how much
    of the planned run they cover."""
    name = title(protocol)
    parts = [f"## Reproduction under the {name}\n\n{describe(protocol)}.\n"]
    parts += [coverage_markdown(found)] if found and found["planned"] else []
    parts += [search_markdown(search)] if search else []
    headers = ["family", "phi", "px", "multiply-adds", "x b0", "params", "activations",
               "test acc %", "train img/s", "latency b1 ms"]
    for base in BASES:
        if not any(m["base"] == base for m in members.values()):
            continue
        parts.append(f"### Part 2 ({name}): {bases.get(base, base)} scaled by one method "
                     "at a time\n")
        table = []
        for label in PART2_METHODS:
            for row in family_rows(members, base, label):
                reference = members.get(f"{base}/b0")
                ratio = row["flops"] / reference["flops"] if reference else math.nan
                table.append([label, row["phi"], row["resolution"], _millions(row["flops"]),
                              f"{ratio:.2f}", _millions(row["params"]),
                              _millions(row["activations"]), _percent(row),
                              f"{row['train_images_per_second']:.0f}",
                              f"{row['latency_b1_ms']:.1f}"])
        parts.append(markdown_table(headers, table) + "\n")
    fast = [row for label in ("fast-a0.8", "fast-a0.333") for row in family_rows(members, B0, label)
            if row["family"] == label or row["phi"] == 0]
    if any(row["phi"] > 0 for row in fast):
        parts.append(f"### Part 3 ({name}): fast (a = 0.8) against uniform (a = 1/3) "
                     "scaling of EfficientNet-B0\n")
        table = []
        for label in ("fast-a0.8", "fast-a0.333"):
            for row in family_rows(members, B0, label):
                measured = (speed or {}).get("members", {}).get(row["member"], {})
                table.append([label, row["phi"], row["resolution"], _millions(row["flops"]),
                              _millions(row["activations"]), _percent(row),
                              _number(measured.get("train_images_per_second"), ".0f"),
                              _number(measured.get("latency_b1_ms"), ".1f"),
                              f"{row['train_images_per_second']:.0f}"])
        parts.append(markdown_table(["family", "phi", "px", "multiply-adds", "activations",
                                     "test acc %", "train img/s (interleaved)",
                                     "latency b1 ms (interleaved)", "train img/s (during run)"],
                                    table) + "\n")
    compound = [row for base in BASES for row in family_rows(members, base, "compound")]
    if {row["base"] for row in compound} == set(BASES):
        parts.append(f"### Part 4 ({name}): compound families, searched against "
                     "EfficientNet-B0\n")
        table = [[bases.get(row["base"], row["base"]), row["phi"], row["resolution"],
                  _millions(row["flops"]), _millions(row["params"]), _percent(row)]
                 for row in compound]
        parts.append(markdown_table(["base", "phi", "px", "multiply-adds", "params",
                                     "test acc %"], table) + "\n")
    trends = phi_trends(members, bases)
    if trends:
        parts.append(phi_trends_markdown(trends, bases, protocol))
    found = plateau(members)
    if found:
        parts.append(plateau_markdown(found, last_third_gains(members), protocol))
    parts.append(f"### Claims ({name})\n")
    parts.append(markdown_table(["part", "claim", "evidence (accuracy in points)", "verdict"],
                                [[c["part"], c["claim"], c["evidence"], c["verdict"]]
                                 for c in claims(members, speed, bases)]) + "\n")
    if members:
        parts.append(trainings_markdown(members, protocol))
    return "\n".join(parts)


_STYLE = {"compound": ("tab:red", "o"), "width": ("tab:blue", "s"), "depth": ("tab:green", "^"),
          "resolution": ("tab:purple", "D"), "fast-a0.8": ("tab:orange", "o"),
          "fast-a0.333": ("tab:gray", "s"), SEARCHED: ("tab:red", "o"), B0: ("tab:blue", "s")}


def _curve(axis, rows: Sequence[dict[str, Any]], x_key: str, label: str, style_key: str) -> None:
    color, marker = _STYLE[style_key]
    xs = [row[x_key] for row in rows]
    ys = [100 * row["accuracy"] for row in rows]
    spread = [[100 * (row["accuracy"] - min(row["accuracies"])) for row in rows],
              [100 * (max(row["accuracies"]) - row["accuracy"]) for row in rows]]
    axis.errorbar(xs, ys, yerr=spread, color=color, marker=marker, capsize=3, label=label)


def _suptitle(figure, text: str) -> None:
    """The figure's title, wrapped to its width: a searched baseline's name made the
    one-line titles run past both edges."""
    figure.suptitle(textwrap.fill(text, width=int(figure.get_figwidth() * 9),
                                  break_on_hyphens=False))


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def write_plots(out: Path, members: dict[str, dict[str, Any]], speed: Optional[dict[str, Any]],
                bases: dict[str, str], protocol: Protocol,
                search: Optional[dict[str, Any]] = None) -> list[str]:
    """part1.png, part2_<base>.png, part3.png, part4.png, latency.png, plateau.png;
    returns the names written. The titles of the members' plots name the protocol."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    heading = title(protocol)
    caption = f"{describe(protocol)}\nerror bars: min-max over seeds"
    written = []
    if search:
        figure = Figure(figsize=(7.5, 4.5), layout="constrained")
        axis = figure.subplots()
        trained = [t for t in search["trials"] if t["trained"] and t["accuracy"] is not None]
        screened = [t for t in search["trials"] if not t["trained"] and t["flops"]]
        axis.scatter([t["flops"] for t in trained], [100 * t["accuracy"] for t in trained],
                     color="tab:red", label="trained (proxy validation accuracy)")
        for trial in trained:
            axis.annotate(str(trial["number"]), (trial["flops"], 100 * trial["accuracy"]),
                          textcoords="offset points", xytext=(4, 4), fontsize=8)
        bottom = min((100 * t["accuracy"] for t in trained), default=0) - 2
        axis.scatter([t["flops"] for t in screened], [bottom] * len(screened), marker="|",
                     s=200, color="gray", label="screened out by multiply-adds")
        if search["target_flops"]:
            axis.axvline(search["target_flops"], color="black", linestyle=":", label="target")
        _finish_axis(axis, "multiply-adds at 224 px", "proxy validation accuracy (%)")
        axis.set_xscale("linear")
        _suptitle(figure, f"Part 1: the search ({search['study']}), every trial")
        _save(figure, out / "part1.png")
        written.append("part1.png")
    for base in BASES:
        if not any(m["base"] == base and m["phi"] > 0 for m in members.values()):
            continue
        figure = Figure(figsize=(7.5, 5), layout="constrained")
        axis = figure.subplots()
        for label in PART2_METHODS:
            rows = family_rows(members, base, label)
            if len(rows) > 1:
                _curve(axis, rows, "flops", label, label)
        _finish_axis(axis, "multiply-adds per image (as trained)", "test accuracy (%)")
        _suptitle(figure, f"Part 2 ({heading}): scaling {bases.get(base, base)} by one "
                  "dimension or all three")
        figure.supxlabel(caption, fontsize=8)
        _save(figure, out / f"part2_{base}.png")
        written.append(f"part2_{base}.png")
    fast_rows = {label: family_rows(members, B0, label) for label in ("fast-a0.8", "fast-a0.333")}
    if any(len(rows) > 1 for rows in fast_rows.values()):
        figure = Figure(figsize=(15, 4.5), layout="constrained")
        accuracy_axis, activation_axis, speed_axis = figure.subplots(1, 3)
        measured = (speed or {}).get("members", {})
        for label, rows in fast_rows.items():
            name = "fast a=0.8" if label == "fast-a0.8" else "uniform a=1/3"
            _curve(accuracy_axis, rows, "flops", name, label)
            color, marker = _STYLE[label]
            activation_axis.plot([r["flops"] for r in rows], [r["activations"] for r in rows],
                                 color=color, marker=marker, label=name)
            timed = [r for r in rows if r["member"] in measured]
            speed_axis.plot([r["flops"] for r in timed],
                            [measured[r["member"]]["latency_b1_ms"] for r in timed],
                            color=color, marker=marker, label=f"{name}: latency b1 (ms)")
            speed_axis.plot([r["flops"] for r in timed],
                            [1e3 / measured[r["member"]]["train_images_per_second"] for r in timed],
                            color=color, marker=marker, linestyle="--",
                            label=f"{name}: training ms per image")
        _finish_axis(accuracy_axis, "multiply-adds per image", "test accuracy (%)")
        _finish_axis(activation_axis, "multiply-adds per image", "activations per image")
        activation_axis.set_yscale("log")
        if any(r["member"] in measured for rows in fast_rows.values() for r in rows):
            _finish_axis(speed_axis, "multiply-adds per image", "milliseconds (this CPU)")
            speed_axis.set_yscale("log")
        else:  # speed.json is written when part 3 runs; a log axis cannot be empty
            speed_axis.set_axis_off()
            speed_axis.text(0.5, 0.5, "runtimes not measured yet", ha="center",
                            transform=speed_axis.transAxes)
        _suptitle(figure, f"Part 3 ({heading}): fast scaling (a = 0.8) against uniform compound "
                  "scaling (a = 1/3) of EfficientNet-B0")
        figure.supxlabel(caption, fontsize=8)
        _save(figure, out / "part3.png")
        written.append("part3.png")
    compound = {base: family_rows(members, base, "compound") for base in BASES}
    if all(len(rows) > 1 for rows in compound.values()):
        figure = Figure(figsize=(7.5, 5), layout="constrained")
        axis = figure.subplots()
        for base, rows in compound.items():
            _curve(axis, rows, "flops", f"{bases.get(base, base)} (compound)", base)
        _finish_axis(axis, "multiply-adds per image (as trained)", "test accuracy (%)")
        _suptitle(figure, f"Part 4 ({heading}): searched baseline against EfficientNet-B0, "
                  "compound families")
        figure.supxlabel(caption, fontsize=8)
        _save(figure, out / "part4.png")
        written.append("part4.png")
    if len(members) >= 3:
        figure = Figure(figsize=(11, 4.5), layout="constrained")
        for axis, key, label in zip(figure.subplots(1, 2), ("flops", "activations"),
                                    ("multiply-adds", "activations")):
            for style in FAMILY_ORDER:
                rows = [m for m in members.values() if m["family"] == style and m["phi"] > 0]
                if rows:
                    color, marker = _STYLE[style]
                    axis.scatter([r[key] for r in rows], [r["latency_b1_ms"] for r in rows],
                                 color=color, marker=marker, label=style)
            bases_rows = [m for m in members.values() if m["phi"] == 0]
            axis.scatter([r[key] for r in bases_rows], [r["latency_b1_ms"] for r in bases_rows],
                         color="black", marker="*", label="phi 0")
            values = [m[key] for m in members.values()]
            latency = [m["latency_b1_ms"] for m in members.values()]
            r = float(np.corrcoef(np.log(values), np.log(latency))[0, 1])
            _finish_axis(axis, f"{label} per image", "latency, batch 1 (ms, during the run)")
            axis.set_yscale("log")
            axis.set_title(f"{label}: Pearson r of logs = {r:.3f}")
        _suptitle(figure, f"Which cost predicts CPU latency? Every trained member ({heading})")
        _save(figure, out / "latency.png")
        written.append("latency.png")
    found = plateau(members)
    if found:
        figure = Figure(figsize=(7.5, 5), layout="constrained")
        axis = figure.subplots()
        for row, color in zip(found, ("tab:blue", "tab:red")):
            curves = members[row["member"]]["epoch_accuracies"]
            for seed, curve in zip(row["seeds"], curves):
                axis.plot(range(1, len(curve) + 1), [100 * a for a in curve], color=color,
                          marker="o", linestyle="-" if seed == row["seeds"][0] else "--",
                          label=f"{row['member']} ({_millions(row['flops'])}), seed {seed}")
        epochs = found[0]["epochs"]
        axis.axvspan(last_third_start(epochs), epochs, color="gray", alpha=0.15,
                     label="last third")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel("test accuracy (%)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
        _suptitle(figure, f"Plateau ({heading}): EfficientNet-B0 and the largest member")
        figure.supxlabel(describe(protocol), fontsize=8)
        _save(figure, out / "plateau.png")
        written.append("plateau.png")
    return written


def _finish_axis(axis, xlabel: str, ylabel: str) -> None:
    axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, which="both", alpha=0.3)
    if axis.get_legend_handles_labels()[1]:  # a part with no member trained yet has none
        axis.legend(fontsize=8)


def latency_correlations(members: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Pearson correlation of log latency with log multiply-adds, activations, params."""
    if len(members) < 3:
        return {}
    latency = np.log([m["latency_b1_ms"] for m in members.values()])
    return {key: round(float(np.corrcoef(np.log([m[key] for m in members.values()]),
                                         latency)[0, 1]), 4)
            for key in ("flops", "activations", "params")}


def write_results(out: Path, protocol: Protocol, bases: dict[str, str], *,
                  plots: bool = True, planned: Sequence[tuple[int, str]] = ()) -> dict[str, Any]:
    """results.json, results.csv, summary.md and (with ``plots``) the plots from
    whatever members exist; ``planned`` (seed, member) pairs say how much that is."""
    rows = collect(out)
    members = aggregate(rows)
    found = coverage(rows, planned)
    speed_path = out / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.is_file() else None
    search = search_record(out)
    summary = {"protocol": protocol.to_dict(), "bases": bases, "search": search,
               "coverage": found,
               "latency_correlations_log": latency_correlations(members),
               "claims": claims(members, speed, bases),
               "phi_trends": phi_trends(members, bases), "plateau": plateau(members),
               "last_third_gains": last_third_gains(members),
               "members": list(members.values())}
    atomic_write_json(out / "results.json", summary)
    buffer = io.StringIO()
    fields = ["member", "base", "family", "phi", "seed", "resolution", "flops", "params",
              "activations", "deploy_flops", "test_accuracy", "train_images_per_second",
              "latency_b1_ms", "seconds", "failed"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (r["member"], r["seed"])))
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_text(out / "summary.md", summary_markdown(members, speed, bases, protocol,
                                                           search, found))
    summary["plots"] = (write_plots(out, members, speed, bases, protocol, search) if plots
                        else [])
    return summary


