"""Noise-aware selection: verdicts on the best's lead, and --confirm-top's longer trainings."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import optuna
import pytest

from nas.cli import main
from nas.commands.search import print_summary
from nas.results import write_outputs
from nas.search_config import SearchConfig
from nas.trial import genome_digest
from space import Genome, SearchSpace, presets
from space.search_space import MBCONV_SPACE_PATH

TARGET = 400e6


def storage(runs: Path, name: str) -> str:
    (runs / name).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / name / 'study.db'}"


def add_trial(study: optuna.Study, genome: Genome, *, accuracy: float, flops: int,
              noise: float | None = None, reference: str | None = None) -> None:
    """A finished trial as the search records one (the scores given, not measured)."""
    reward = accuracy * (flops / TARGET) ** -0.07
    attrs = {"genome": genome.to_dict(), "digest": genome_digest(genome), "flops": flops,
             "params": 1_000_000, "activations": 2_000_000, "cost": flops,
             "evaluator": "proxy-train", "accuracy": accuracy, "reward": reward,
             "eval_seconds": 1.0, "worker": "elsewhere:1"}
    if noise is not None:
        attrs["noise"] = noise
    if reference is not None:
        attrs["reference"] = reference
    study.add_trial(optuna.create_trial(value=reward, user_attrs=attrs))


def two_genomes() -> tuple[Genome, Genome]:
    small = SearchSpace.from_file(MBCONV_SPACE_PATH).smallest()
    wide = dataclasses.replace(small, stages=tuple(
        dataclasses.replace(stage, kernel_size=5) for stage in small.stages))
    return small, wide


def test_verdict_says_within_noise_below_the_combined_standard_error(tmp_path, capsys):
    study = optuna.create_study(study_name="v", storage=storage(tmp_path, "v"),
                                direction="maximize")
    small, wide = two_genomes()
    add_trial(study, presets.get("efficientnet-b0"), accuracy=0.850, noise=0.01,
              flops=300_000_000, reference="efficientnet-b0")
    add_trial(study, small, accuracy=0.900, noise=0.01, flops=400_000_000)
    add_trial(study, wide, accuracy=0.895, noise=0.01, flops=400_000_000)
    result = write_outputs(study, tmp_path / "v")
    selection = json.loads((tmp_path / "v" / "selection.json").read_text())
    assert selection["basis"] == "proxy" and selection["best"]["trial"] == 1
    # a lead of 0.005 against sqrt(2) x 0.01 = 0.0141: within noise
    runner = selection["runner_up"]
    assert runner["trial"] == 2 and runner["beyond_noise"] is False
    assert runner["lead"] == pytest.approx(0.005)
    assert runner["lead_standard_error"] == pytest.approx(math.sqrt(2) * 0.01)
    assert runner["verdict"] == "within noise: lead +0.005 <= standard error 0.01414"
    # B0 costs less, so its reward carries the factor (300/400)^-0.07, and so does its noise
    factor = 0.75 ** -0.07
    b0 = selection["references"][0]
    assert b0["reward"] == pytest.approx(0.85 * factor)
    assert b0["reward_standard_error"] == pytest.approx(0.01 * factor)
    assert b0["beyond_noise"] is True and b0["verdict"].startswith("beyond noise: lead +0.0")
    print_summary(result, SearchConfig(target=TARGET))
    out = capsys.readouterr().out
    assert "chosen by reward of the search's evaluator: trial 1, reward 0.9000 +- 0.0100" in out
    assert "vs trial 2: reward 0.8950 +- 0.0100; within noise: lead +0.005" in out
    assert f"vs efficientnet-b0 (reference, trial 0): reward {0.85 * factor:.4f} +- " \
           f"{0.01 * factor:.4f}; beyond noise" in out
    # a lead beyond the binomial error of the search's own scores says what it leaves out
    assert selection["noise_covers"].startswith("the validation split's binomial error only")
    assert "noise: the validation split's binomial error only" in out
    assert "--confirm-top K trains the best and the references" in out


# A proxy small enough for seconds: 256 images at 16 px, 200 validation images.
TINY = ["--evaluator", "proxy-train", "--proxy-subset", "256", "--proxy-resolution", "16",
        "--proxy-val-size", "200", "--proxy-epochs", "1", "--pruner", "none",
        "--references", "none", "--confirm-top", "2", "--confirm-epochs", "2",
        "--target-flops", "400M"]


def confirm(runs: Path, capsys) -> str:
    """``nas search --confirm-top 2`` on study "c" (its budget spent: it only confirms)."""
    assert main(["search", *TINY, "--runs", str(runs), "--study", "c", "--n-trials", "2"]) == 0
    return capsys.readouterr().err


def entries(study: optuna.Study) -> dict[str, dict]:
    return {key.split(":", 1)[1]: value for key, value in study.user_attrs.items()
            if key.startswith("confirmed:")}


def test_confirm_top_chooses_best_json_by_the_confirmed_reward_and_resumes(tmp_path, capsys):
    small, wide = two_genomes()
    digests = {genome_digest(small): small, genome_digest(wide): wide}
    # The search's proxy scores both alike; the confirmation trains each twice, longer.
    study = optuna.create_study(study_name="c", storage=storage(tmp_path, "c"),
                                direction="maximize")
    add_trial(study, small, accuracy=0.5, flops=400_000_000)
    add_trial(study, wide, accuracy=0.5, flops=400_000_000)
    assert confirm(tmp_path, capsys).count("confirming ") == 2
    measured = entries(study)
    assert set(measured) == set(digests) and study.user_attrs["confirm_protocol"]["epochs"] == 2
    means = {}
    for digest, entry in measured.items():
        assert entry["seeds"] == [0, 1] and len(entry["accuracies"]) == 2
        assert all(abs(a * 200 - round(a * 200)) < 1e-6 for a in entry["accuracies"])  # of 200
        means[digest] = statistics.fmean(entry["accuracies"])
    assert len(set(means.values())) == 2, "both genomes confirmed alike; cannot test the order"
    winner, loser = max(means, key=means.get), min(means, key=means.get)
    # Later trials of the same genomes: now the proxy prefers the one confirmed lower. The
    # rerun trains nothing (both are confirmed) and chooses by the confirmed reward.
    add_trial(study, digests[loser], accuracy=0.9, flops=400_000_000)
    add_trial(study, digests[winner], accuracy=0.1, flops=400_000_000)
    assert "confirming" not in confirm(tmp_path, capsys)
    assert entries(study) == measured
    assert Genome.from_json(tmp_path / "c" / "best.json").key() == digests[winner].key()
    selection = json.loads((tmp_path / "c" / "selection.json").read_text())
    assert selection["basis"] == "confirmed"
    assert selection["noise_covers"].startswith("the spread of the confirmation's seeds")
    assert selection["best"]["trial"] == measured[winner]["trial"]
    assert selection["runner_up"]["trial"] == measured[loser]["trial"]
    assert selection["best"]["accuracy"] == pytest.approx(means[winner])
    spread = statistics.stdev(measured[winner]["accuracies"]) / math.sqrt(2)
    binomial = math.sqrt(means[winner] * (1 - means[winner]) / 200)
    assert selection["best"]["accuracy_standard_error"] == pytest.approx(max(spread, binomial))

    # Killed after the first seed of the winner: a rerun trains only its second seed, and
    # the same protocol and seed train it to the same accuracy.
    study.set_user_attr("confirmed:" + winner, {**measured[winner],
                                                "accuracies": measured[winner]["accuracies"][:1]})
    err = confirm(tmp_path, capsys)
    assert err.count("confirming ") == 1
    assert f"trial {measured[winner]['trial']}, 2 epochs x 2 seed(s)" in err
    assert entries(study) == measured
