"""benchmarks/reproduce.py on a tiny protocol: it trains members on real Fashion-MNIST,
writes their files, and a second run resumes without retraining."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_driver():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


TINY = ["--subset", "100", "--test-size", "100", "--epochs", "1", "--batch-size", "50",
        "--max-phi", "1", "--bases", "efficientnet-b0", "--parts", "2", "4",
        "--families", "compound", "--threads", "1", "--quiet"]


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns
            for path in (folder / "members").rglob("metrics.json")}


def test_trains_writes_and_resumes_without_retraining(tmp_path: Path) -> None:
    driver = _load_driver()
    out = tmp_path / "reference"
    first = driver.main(["--out", str(out), *TINY])
    assert (first["trained"], first["skipped"], first["failed"]) == (2, 0, 0)

    b0 = json.loads((out / "members/seed0/efficientnet-b0/b0/metrics.json").read_text())
    b1 = json.loads((out / "members/seed0/efficientnet-b0/compound-b1/metrics.json").read_text())
    assert 0.0 <= b0["test_accuracy"] <= 1.0 and b0["test_images"] == 100
    assert b0["resolution"] == 32 and b0["history"][0]["train_images"] == 100
    # phi 1 of compound scaling: resolution 224 -> 256 (gamma 1.15, rounded to 8), so the
    # proxy input is round(32 * 256 / 224) = 37 px, with more multiply-adds than B0.
    assert b1["resolution"] == 37 and b1["flops"] > b0["flops"]
    assert b1["latency_b1_ms"] > 0 and b1["train_images_per_second"] > 0
    assert (out / "families/efficientnet-b0/compound/b1.json").is_file()
    family = json.loads((out / "families/efficientnet-b0/compound/family.json").read_text())
    assert [m["phi"] for m in family["members"]] == [0, 1]
    results = json.loads((out / "results.json").read_text())
    assert {m["member"] for m in results["members"]} == {"efficientnet-b0/b0",
                                                          "efficientnet-b0/compound-b1"}
    assert (out / "part2_efficientnet-b0.png").stat().st_size > 1000
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["protocol"]["subset"] == 100 and len(protocol["runs"]) == 1

    # Two worker processes (the script as a user runs it) train the same members to the
    # same accuracies: each process holds its own seeded copy of the data and model.
    parallel = tmp_path / "parallel"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--out",
                           str(parallel), *TINY, "--workers", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained 2, skipped 0" in done.stdout
    for member in ("b0", "compound-b1"):
        serial, side_by_side = (json.loads((folder / f"members/seed0/efficientnet-b0/{member}/"
                                                     "metrics.json").read_text())
                                for folder in (out, parallel))
        assert side_by_side["test_accuracy"] == serial["test_accuracy"]
        assert side_by_side["threads"] == 1

    before = _mtimes(out)
    second = driver.main(["--out", str(out), *TINY])
    assert (second["trained"], second["skipped"]) == (0, 2)
    assert _mtimes(out) == before

    # A kill between members leaves the finished ones; only the missing one is retrained.
    (out / "members/seed0/efficientnet-b0/compound-b1/metrics.json").unlink()
    third = driver.main(["--out", str(out), *TINY])
    assert (third["trained"], third["skipped"]) == (1, 1)
    after = _mtimes(out)
    key = "members/seed0/efficientnet-b0/b0/metrics.json"
    assert after[key] == before[key]
    assert len(json.loads((out / "protocol.json").read_text())["runs"]) == 3


def test_refuses_to_mix_protocols(tmp_path: Path) -> None:
    driver = _load_driver()
    out = tmp_path / "reference"
    out.mkdir()
    (out / "protocol.json").write_text(json.dumps({"protocol": {"subset": 999}, "runs": []}))
    with pytest.raises(driver.ReproduceError, match="another --out"):
        driver.main(["--out", str(out), *TINY])
    assert not (out / "members").exists()


def _member(base: str, name: str, accuracy: float, *, accuracies=None, activations=1e6,
            flops=1e7, test_images=2000) -> dict:
    phi = 0 if name == "b0" else int(name.rsplit("-b", 1)[1])
    family = "b0" if phi == 0 else name.rsplit("-b", 1)[0]
    return {"member": f"{base}/{name}", "base": base, "family": family, "phi": phi,
            "accuracy": accuracy, "accuracies": accuracies or [accuracy],
            "test_images": test_images, "activations": activations, "flops": flops}


def _verdicts(members: list[dict], speed=None) -> dict[str, str]:
    driver = _load_driver()
    found = driver.claims({m["member"]: m for m in members}, speed, {})
    # Part 2 has one claim per base; the one of EfficientNet-B0 is named "2".
    return {claim["part"]: claim["verdict"] for claim in found
            if not claim["claim"].startswith("searched")}


def test_claim_verdicts_weigh_gaps_against_sampling_and_seed_noise() -> None:
    b0 = "efficientnet-b0"
    # 2,000 test images at ~85%: two standard errors of a difference are ~2.3 points.
    clear = [_member(b0, "compound-b1", 0.88), _member(b0, "width-b1", 0.85),
             _member(b0, "depth-b1", 0.84), _member(b0, "resolution-b1", 0.85)]
    assert _verdicts(clear)["2"] == "reproduced"
    close = [_member(b0, "compound-b1", 0.86), *clear[1:]]
    assert _verdicts(close)["2"] == "within noise"
    against = [_member(b0, "compound-b1", 0.80), *clear[1:]]
    assert _verdicts(against)["2"] == "not reproduced"
    # The same 3-point gap is noise when two seeds disagree by 8 points.
    noisy = [_member(b0, "compound-b1", 0.88, accuracies=[0.84, 0.92]), *clear[1:]]
    assert _verdicts(noisy)["2"] == "within noise"
    assert _verdicts(clear)["4"] == "not measured"

    fast = [_member(b0, "fast-a0.8-b1", 0.85, activations=4e5),
            _member(b0, "fast-a0.333-b1", 0.86, activations=5e5)]
    speed = {"members": {f"{b0}/fast-a0.8-b1": {"latency_b1_ms": 2.0, "train_images_per_second": 300},
                         f"{b0}/fast-a0.333-b1": {"latency_b1_ms": 2.5, "train_images_per_second": 250}}}
    assert _verdicts(fast, speed)["3"] == ("accuracy: reproduced, activations: reproduced, "
                                           "runtime (latency and training): reproduced")
    slower = {"members": {**speed["members"], f"{b0}/fast-a0.8-b1": {
        "latency_b1_ms": 2.0, "train_images_per_second": 200}}}
    worse = [_member(b0, "fast-a0.8-b1", 0.80, activations=4e5), fast[1]]
    assert _verdicts(worse, slower)["3"] == ("accuracy: not reproduced, activations: reproduced, "
                                             "runtime (latency and training): not reproduced")


def test_part1_reads_the_copied_study_and_tells_screened_from_trained(tmp_path: Path) -> None:
    import optuna

    driver = _load_driver()
    (tmp_path / "baseline").mkdir()
    storage = f"sqlite:///{tmp_path / 'baseline' / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("target", 400_000_000)
    study.set_user_attr("evaluator", "proxy-train")
    study.set_user_attr("prescreen", "naswot")
    for flops, accuracies, outcome in ((390e6, [0.80, 0.85], 0.86), (300e6, [], None),
                                       (410e6, [0.70], None), (395e6, [], None)):
        trial = study.ask()
        trial.set_user_attr("flops", int(flops))
        trial.set_user_attr("params", 2_000_000)
        if flops == 395e6:  # in the window, rejected by its zero-cost score
            trial.set_user_attr("prescreen_score", 612.5)
            trial.set_user_attr("screened", "naswot score below the median; not trained")
        for step, accuracy in enumerate(accuracies, 1):
            trial.report(accuracy, step)
        if outcome is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            trial.set_user_attr("accuracy", accuracies[-1])
            study.tell(trial, outcome)

    search = driver.search_record(tmp_path)
    assert search["target_flops"] == 400_000_000 and len(search["trials"]) == 4
    complete, screened, pruned, prescreened = search["trials"]
    assert (complete["trained"], complete["accuracy"], complete["reward"]) == (True, 0.85, 0.86)
    assert not screened["trained"] and not screened["prescreened"]
    assert not prescreened["trained"] and prescreened["prescreened"]
    # Optuna keeps a pruned trial's last accuracy as its value: not a reward.
    assert (pruned["trained"], pruned["accuracy"], pruned["reward"]) == (True, 0.70, None)
    text = driver.search_markdown(search)
    assert "4 trials" in text and ("2 of them were screened out (1 by their naswot score, "
                                   "the rest by their multiply-adds)") in text
    assert "| **0** (best) | COMPLETE | 390.0M | 2.0M | 85.00 | 0.8600 |" in text
    assert "| 2 | PRUNED | 410.0M | 2.0M | 70.00 | - |" in text
    written = driver.write_plots(tmp_path, {}, None, {}, driver.Protocol(), search)
    assert written == ["part1.png"] and (tmp_path / "part1.png").stat().st_size > 1000
    assert driver.search_record(tmp_path / "elsewhere") is None



def test_family_files_are_the_ones_nas_scale_writes(tmp_path: Path, capsys) -> None:
    from nas.cli import main
    from space import presets

    driver = _load_driver()
    driver.write_family_files(presets.get("efficientnet-b0"), "efficientnet-b0", "fast", 1 / 3,
                              2, tmp_path / "driver", 10, 1)
    assert main(["scale", "--genome", "efficientnet-b0", "--phi", "0..2", "--method", "fast",
                 "--alpha", repr(1 / 3), "--num-classes", "10", "--in-channels", "1",
                 "--out", str(tmp_path / "command")]) == 0
    for name in ("family.json", "family.csv", "b0.json", "b2.json"):
        assert (tmp_path / "driver" / name).read_bytes() == (tmp_path / "command" / name).read_bytes()
    text = (tmp_path / "driver" / "family.txt").read_text()
    assert text.startswith("$ nas scale --genome efficientnet-b0 --phi 0..2 --method fast")
    assert capsys.readouterr().out.splitlines()[0] == text.splitlines()[1]
