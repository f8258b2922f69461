"""benchmarks/reproduce.py on a tiny protocol: it trains members on real Fashion-MNIST,
writes their files, and a second run resumes without retraining; its two protocol presets
and --commit (benchmarks/commit_results.py, in throwaway git repositories)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _load_driver():
    return _load("reproduce")


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
    assert b0["protocol"]["name"] == "one-epoch" and b0["train_config"]["augment"] is False
    assert b0["device"] == "cpu"
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


def test_a_member_another_instance_trains_is_left_to_it(tmp_path: Path, capsys) -> None:
    """Two instances on the same seeds share the members: one being trained elsewhere (an
    flock on its .training.lock, here held by this test) is not trained twice."""
    import fcntl

    driver = _load_driver()
    out = tmp_path / "shared"
    folder = out / "members/seed0/efficientnet-b0/compound-b1"
    folder.mkdir(parents=True)
    with open(folder / ".training.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        first = driver.main(["--out", str(out), *TINY])
    assert (first["trained"], first["skipped"], first["elsewhere"]) == (1, 0, 1)
    assert not (folder / "metrics.json").exists()
    assert "1 in training by another instance" in capsys.readouterr().out
    # The tables say they are partial, and what is missing.
    summary = (out / "summary.md").read_text()
    assert ("**A partial run: 1 of 2 planned trainings (members x seeds) have finished.** "
            "Still to train: efficientnet-b0/compound-b1 (seed 0).") in summary
    assert first["summary"]["coverage"] == {
        "planned": 2, "finished": 1,
        "missing": [{"member": "efficientnet-b0/compound-b1", "seeds": [0]}]}
    b0 = json.loads((out / "members/seed0/efficientnet-b0/b0/metrics.json").read_text())
    assert (f"| efficientnet-b0/b0 | {b0['flops'] / 1e6:.1f}M | {100 * b0['test_accuracy']:.2f} | "
            f"{b0['seconds']:,.0f} |") in summary
    # The other instance is gone (its lock with it): the member is trained now.
    second = driver.main(["--out", str(out), *TINY])
    assert (second["trained"], second["skipped"], second["elsewhere"]) == (1, 1, 0)
    assert (folder / "metrics.json").is_file()
    summary = (out / "summary.md").read_text()
    assert "All 2 planned trainings (members x seeds) have finished." in summary
    assert "partial" not in summary


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
    found = driver.report.claims({m["member"]: m for m in members}, speed, {})
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


def test_compound_is_weighed_at_equal_multiply_adds_on_its_interpolated_curve() -> None:
    b0 = "efficientnet-b0"
    # Halfway in log multiply-adds between b0 (10M, 80%) and compound b1 (40M, 88%): 84%.
    members = [_member(b0, "b0", 0.80, flops=1e7), _member(b0, "compound-b1", 0.88, flops=4e7),
               _member(b0, "width-b1", 0.80, flops=2e7)]
    found = {claim["part"]: claim for claim in _load_driver().report.claims(
        {m["member"]: m for m in members}, None, {}) if not claim["claim"].startswith("searched")}
    assert found["2 (equal cost)"]["evidence"] == "width b1 at 20.0M: compound (b0..b1) +4.00"
    assert found["2 (equal cost)"]["verdict"] == "reproduced"
    # Resolution alone beats the curve by 3 points, beyond the ~2.2 of two standard errors;
    # depth b1 costs more than the largest compound member, so nothing is compared there.
    members += [_member(b0, "resolution-b1", 0.87, flops=2e7),
                _member(b0, "depth-b1", 0.70, flops=5e7)]
    assert _verdicts(members)["2 (equal cost)"] == "not reproduced"
    [equal_cost] = [claim for claim in _load_driver().report.claims(
        {m["member"]: m for m in members}, None, {}) if claim["part"] == "2 (equal cost)"
        and not claim["claim"].startswith("searched")]
    assert "depth" not in equal_cost["evidence"]
    # The interpolated point's error comes from both ends: (1 - t) and t of theirs.
    report = _load_driver().report
    point = report.interpolate([members[1], members[0]], 2e7)
    assert point["accuracy"] == pytest.approx(0.84)
    assert point["standard_error"] == pytest.approx(math.hypot(
        0.5 * report.standard_error(members[0]), 0.5 * report.standard_error(members[1])))
    assert report.interpolate([members[0], members[1]], 5e7) is None


def test_phi_trends_say_whether_each_family_rises_step_by_step() -> None:
    driver = _load_driver()
    b0 = "efficientnet-b0"
    # 2,000 test images at ~85%: two standard errors of a difference are ~2.3 points.
    members = [_member(b0, "b0", 0.80), _member(b0, "compound-b1", 0.84),
               _member(b0, "compound-b2", 0.88), _member(b0, "width-b1", 0.81),
               _member(b0, "width-b2", 0.85), _member(b0, "depth-b1", 0.70),
               _member(b0, "depth-b2", 0.81), _member(b0, "resolution-b2", 0.79),
               _member("searched", "compound-b1", 0.9)]
    found = {(row["base"], row["family"]): row
             for row in driver.report.phi_trends({m["member"]: m for m in members}, {})}
    assert found[(b0, "compound")]["verdict"] == "rises at every step"
    assert found[(b0, "compound")]["steps"] == ["b0->b1 +4.00", "b1->b2 +4.00"]
    assert found[(b0, "width")]["verdict"] == "rises overall"
    assert found[(b0, "width")]["steps"][0] == "b0->b1 +1.00 (noise)"
    assert found[(b0, "depth")]["verdict"] == "within noise"  # down 10, back up 11
    assert found[(b0, "resolution")]["phis"] == [0, 2]
    assert found[(b0, "resolution")]["verdict"] == "within noise"
    assert found[("searched", "compound")]["verdict"] == "not measured"  # no b0 to start from
    assert (b0, "fast-a0.8") not in found
    falling = [_member(b0, "b0", 0.80), _member(b0, "compound-b1", 0.70)]
    assert driver.report.phi_trends({m["member"]: m for m in falling}, {})[0]["verdict"] == "falls"
    mixed = [_member(b0, "b0", 0.70), _member(b0, "compound-b1", 0.85),
             _member(b0, "compound-b2", 0.80)]
    assert driver.report.phi_trends({m["member"]: m for m in mixed}, {})[0]["verdict"] == "mixed"


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

    search = driver.report.search_record(tmp_path)
    assert search["target_flops"] == 400_000_000 and len(search["trials"]) == 4
    complete, screened, pruned, prescreened = search["trials"]
    assert (complete["trained"], complete["accuracy"], complete["reward"]) == (True, 0.85, 0.86)
    assert not screened["trained"] and not screened["prescreened"]
    assert not prescreened["trained"] and prescreened["prescreened"]
    # Optuna keeps a pruned trial's last accuracy as its value: not a reward.
    assert (pruned["trained"], pruned["accuracy"], pruned["reward"]) == (True, 0.70, None)
    text = driver.report.search_markdown(search)
    assert "4 trials" in text and ("2 of them were screened out (1 by their naswot score, "
                                   "the rest by their multiply-adds)") in text
    assert "| **0** (best) | COMPLETE | 390.0M | 2.0M | 85.00 | 0.8600 |" in text
    assert "| 2 | PRUNED | 410.0M | 2.0M | 70.00 | - |" in text
    written = driver.report.write_plots(tmp_path, {}, None, {}, driver.Protocol(), search)
    assert written == ["part1.png"] and (tmp_path / "part1.png").stat().st_size > 1000
    assert driver.report.search_record(tmp_path / "elsewhere") is None



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


# The protocol.json of runs/reference as the one-epoch run wrote it, before the converged
# preset added fields.
OLD_PROTOCOL = {"subset": 4096, "epochs": 1, "batch_size": 32, "test_size": 2000,
                "resolution": 32, "data_seed": 0, "max_phi": 3, "threads": None}


def test_converged_preset_and_the_flags_that_override_it() -> None:
    driver = _load_driver()
    protocol, seeds, out = driver.resolve_protocol(driver.parse_args([]))
    assert (protocol, seeds, out) == (driver.Protocol(), [0], Path("runs/reference"))
    assert protocol.to_dict() == {**OLD_PROTOCOL, "augment": False, "name": "one-epoch"}

    args = driver.parse_args(["--protocol", "converged"])
    protocol, seeds, out = driver.resolve_protocol(args)
    assert protocol.to_dict() == {"subset": 10000, "epochs": 15, "batch_size": 128,
                                  "test_size": None, "resolution": 32, "data_seed": 0,
                                  "max_phi": 2, "threads": None, "augment": True,
                                  "name": "converged"}
    assert (seeds, out, args.parts) == ([0, 1], Path("runs/converged"), [2, 3, 4])

    protocol, seeds, out = driver.resolve_protocol(driver.parse_args(
        ["--protocol", "converged", "--epochs", "12", "--test-size", "500", "--no-augment",
         "--max-phi", "1", "--seeds", "3", "--out", "elsewhere"]))
    assert (protocol.epochs, protocol.test_size, protocol.augment, protocol.max_phi) == \
        (12, 500, False, 1)
    assert (protocol.subset, protocol.batch_size, protocol.name) == (10000, 128, "converged")
    assert (seeds, out) == ([3], Path("elsewhere"))
    protocol, _, _ = driver.resolve_protocol(driver.parse_args(["--test-size", "0", "--augment"]))
    assert (protocol.test_size, protocol.augment, protocol.epochs) == (None, True, 1)
    with pytest.raises(driver.UsageError, match="--epochs >= 1"):
        driver.resolve_protocol(driver.parse_args(["--protocol", "converged", "--epochs", "0"]))
    # A device is checked before any folder is made or worker started.
    with pytest.raises(driver.UsageError, match="'tpu' is not a device"):
        driver.resolve_protocol(driver.parse_args(["--device", "tpu"]))


def test_the_converged_run_scales_the_searched_genome_of_the_reference_run(
        tmp_path: Path) -> None:
    from space import Genome

    driver = _load_driver()
    reference = ROOT / "runs" / "reference" / "baseline" / "best.json"
    assert driver.PRESETS["converged"]["baseline"] == reference
    bases = driver.Bases(out=tmp_path, wanted=driver.BASES, explicit=None, preset=reference)
    assert bases.load()
    assert bases.genomes[driver.SEARCHED].key() == Genome.from_json(reference).key()
    assert (tmp_path / "baseline" / "best.json").read_bytes() == reference.read_bytes()


def test_members_train_with_the_nas_train_recipe() -> None:
    from nas.full_train import DEFAULTS
    from nas.train import TrainConfig
    from space import presets

    driver = _load_driver()
    b0 = presets.get("efficientnet-b0")
    # The one-epoch protocol trains exactly as it did before the presets existed.
    assert driver.member_config(b0, seed=1, protocol=driver.Protocol()) == TrainConfig(
        epochs=1, batch_size=32, resolution=32, seed=1)
    config = driver.member_config(b0, seed=0, protocol=driver.PRESETS["converged"]["protocol"])
    assert (config.epochs, config.batch_size, config.augment, config.resolution) == \
        (15, 128, True, 32)
    assert (config.optimizer, config.schedule, config.label_smoothing) == \
        (DEFAULTS["optimizer"], DEFAULTS["schedule"], DEFAULTS["label_smoothing"])


def test_a_protocol_json_without_the_new_fields_reads_as_one_epoch(tmp_path: Path) -> None:
    driver = _load_driver()
    one_epoch, _, _ = driver.resolve_protocol(driver.parse_args([]))
    converged, _, _ = driver.resolve_protocol(driver.parse_args(["--protocol", "converged"]))
    # The committed reference run is accepted as it stands.
    driver.check_protocol(ROOT / "runs" / "reference", one_epoch)
    out = tmp_path / "reference"
    out.mkdir()
    (out / "protocol.json").write_text(json.dumps({"protocol": OLD_PROTOCOL, "runs": []}))
    driver.check_protocol(out, one_epoch)
    for other in (converged, dataclasses.replace(one_epoch, augment=True)):
        with pytest.raises(driver.ReproduceError, match="another --out"):
            driver.check_protocol(out, other)
    # A resumed run rewrites protocol.json with every field, and it still matches.
    driver.record_run(out, one_epoch, ["--seeds", "0"])
    assert json.loads((out / "protocol.json").read_text())["protocol"]["augment"] is False
    driver.check_protocol(out, one_epoch)


def test_every_plot_names_its_protocol(tmp_path: Path, monkeypatch) -> None:
    driver = _load_driver()
    members = {}
    for base, names in (("searched", ("b0", "compound-b1", "width-b1")),
                        ("efficientnet-b0", ("b0", "compound-b1", "width-b1", "fast-a0.8-b1",
                                             "fast-a0.333-b1"))):
        for name in names:
            flops = 1e7 if name == "b0" else 2e7 + len(name) * 1e5
            row = _member(base, name, 0.8, flops=flops)
            row.update(seeds=[0], latency_b1_ms=flops / 1e6, activations=flops / 10,
                       epoch_accuracies=[[0.7, 0.78, 0.8]], last_third_gain=0.02)
            members[row["member"]] = row
    titles = []
    save = driver.report._save

    def saved(figure, path: Path) -> None:
        title = figure.get_suptitle()
        # Wrapped to the figure's width (a searched baseline's long name ran past the edges).
        assert max(map(len, title.splitlines())) <= figure.get_figwidth() * 9, title
        titles.append(" ".join(title.split()))
        save(figure, path)

    monkeypatch.setattr(driver.report, "_save", saved)
    written = driver.report.write_plots(tmp_path, members, None, {},
                                        driver.PRESETS["converged"]["protocol"])
    assert written == ["part2_searched.png", "part2_efficientnet-b0.png", "part3.png",
                       "part4.png", "latency.png", "plateau.png"]
    assert len(titles) == 6 and all("(converged protocol)" in text for text in titles), titles


def _git(repo: Path, *arguments: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *arguments], check=True, capture_output=True,
                          text=True).stdout


def _git_repo(repo: Path, monkeypatch) -> Path:
    """A throwaway repository with one commit, under a fixed identity and no user config."""
    for key, value in {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                       "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
                       "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(key, value)
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("runs/*\n")  # as in this repository: --commit forces
    _git(repo, "add", ".gitignore")
    _git(repo, "commit", "-q", "-m", "start")
    return repo


def test_converged_member_trains_augmented_records_epochs_and_commits(
        tmp_path: Path, monkeypatch) -> None:
    import nas.train

    driver = _load_driver()
    repo = _git_repo(tmp_path / "repo", monkeypatch)
    batches = []
    augment = nas.train.augment

    def counted(images, **options):
        batches.append(len(images))
        return augment(images, **options)

    monkeypatch.setattr(nas.train, "augment", counted)
    out = repo / "runs" / "converged"
    done = driver.main(["--protocol", "converged", "--out", str(out), "--subset", "100",
                        "--test-size", "100", "--epochs", "3", "--batch-size", "50",
                        "--max-phi", "1", "--bases", "efficientnet-b0", "--parts", "2",
                        "--families", "compound", "--seeds", "0", "--threads", "1", "--quiet",
                        "--commit"])
    assert (done["trained"], done["failed"]) == (2, 0)
    # Two members x 3 epochs x 2 batches of 50, every one augmented.
    assert batches == [50] * 12

    member = "members/seed0/efficientnet-b0/compound-b1/metrics.json"
    metrics = json.loads((out / member).read_text())
    assert metrics["train_config"]["augment"] is True and metrics["protocol"]["name"] == "converged"
    assert (metrics["resolution"], metrics["test_images"]) == (37, 100)
    curve = [epoch["test_accuracy"] for epoch in metrics["history"]]
    assert [epoch["epoch"] for epoch in metrics["history"]] == [1, 2, 3]
    assert all(0.0 <= accuracy <= 1.0 for accuracy in curve)
    assert curve[-1] == metrics["test_accuracy"]
    results = json.loads((out / "results.json").read_text())
    plateau = {row["member"]: row for row in results["plateau"]}
    assert set(plateau) == {"efficientnet-b0/b0", "efficientnet-b0/compound-b1"}
    assert plateau["efficientnet-b0/compound-b1"]["gains"] == [pytest.approx(curve[2] - curve[1])]
    summary = (out / "summary.md").read_text()
    assert summary.startswith("## Reproduction under the converged protocol\n\nFashion-MNIST, "
                              "100 training images x 3 epoch(s), batch 50, augmented")
    assert "### Part 2 (converged protocol): EfficientNet-B0" in summary
    assert "### Plateau (converged protocol): test accuracy gained from epoch 2 to epoch 3" \
        in summary
    assert {"part2_efficientnet-b0.png", "plateau.png"} <= set(done["summary"]["plots"])

    # --commit: each member with the results it changed, then the folder's small files.
    subjects = _git(repo, "log", "--format=%s").splitlines()
    assert subjects == [f"reproduce (converged): results, plots and family files of {out}",
                        "reproduce (converged): efficientnet-b0/compound-b1 seed 0, test "
                        f"accuracy {metrics['test_accuracy']:.4f}",
                        "reproduce (converged): efficientnet-b0/b0 seed 0, test accuracy "
                        f"{plateau['efficientnet-b0/b0']['accuracy']:.4f}", "start"]
    assert set(_git(repo, "show", "--name-only", "--format=", "HEAD~1").split()) == {
        f"runs/converged/{member}", "runs/converged/results.json", "runs/converged/summary.md"}
    tracked = set(_git(repo, "ls-files", "runs/converged").split())
    assert {"runs/converged/protocol.json", "runs/converged/plateau.png",
            "runs/converged/families/efficientnet-b0/compound/family.json"} <= tracked
    assert (out / "families/efficientnet-b0/compound/family.html").stat().st_size > 1_000_000
    assert "runs/converged/families/efficientnet-b0/compound/family.html" not in tracked
    assert _git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_commit_results_commits_exactly_the_given_paths(tmp_path: Path, monkeypatch) -> None:
    commit_results = _load("commit_results").commit_results
    repo = _git_repo(tmp_path, monkeypatch)
    (repo / "runs").mkdir()
    for name in ("a.json", "b.json"):
        (repo / "runs" / name).write_text("{}\n")
    (repo / ".gitignore").write_text("runs/*\nother\n")  # someone else's edit
    (repo / "staged.txt").write_text("staged\n")  # and their staged file
    _git(repo, "add", "staged.txt")

    assert commit_results([repo / "runs" / "a.json"], "member a", repo)
    assert _git(repo, "log", "-1", "--format=%s").strip() == "member a"
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["runs/a.json"]
    assert _git(repo, "diff", "--cached", "--name-only").split() == ["staged.txt"]
    assert _git(repo, "diff", "--name-only").split() == [".gitignore"]
    head = _git(repo, "rev-parse", "HEAD")
    assert commit_results([repo / "runs" / "a.json"], "unchanged", repo)
    assert _git(repo, "rev-parse", "HEAD") == head
    monkeypatch.chdir(repo / "runs")  # paths relative to the caller's folder
    assert commit_results(["b.json"], "member b", repo)
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["runs/b.json"]


def test_commit_results_waits_for_the_index_lock_and_warns_when_git_fails(
        tmp_path: Path, monkeypatch, caplog) -> None:
    commit_results = _load("commit_results").commit_results
    repo = _git_repo(tmp_path / "repo", monkeypatch)
    (repo / "runs").mkdir()
    result = repo / "runs" / "a.json"
    result.write_text("{}\n")
    lock = repo / ".git" / "index.lock"
    lock.write_text("")  # another git command, for half a second
    threading.Timer(0.5, lock.unlink).start()
    started = time.perf_counter()
    assert commit_results([result], "after the lock", repo, attempts=30, pause=0.1)
    assert time.perf_counter() - started >= 0.4
    assert _git(repo, "log", "-1", "--format=%s").strip() == "after the lock"

    result.write_text("{\"changed\": 1}\n")
    lock.write_text("")  # held for good
    with caplog.at_level(logging.WARNING):
        assert not commit_results([result], "blocked", repo, attempts=2, pause=0.01)
    assert "not committed (blocked)" in caplog.text and "index.lock" in caplog.text
    assert _git(repo, "log", "-1", "--format=%s").strip() == "after the lock"
    lock.unlink()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.json").write_text("{}\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert not commit_results([plain / "x.json"], "no repository", plain)
    assert "not committed (no repository)" in caplog.text


def test_plateau_check_trains_b0_and_the_largest_member_once_and_the_run_reuses_them(
        tmp_path: Path) -> None:
    driver = _load_driver()
    out = tmp_path / "converged"
    common = ["--protocol", "converged", "--out", str(out), "--subset", "64", "--test-size",
              "64", "--epochs", "2", "--batch-size", "32", "--max-phi", "1", "--bases",
              "efficientnet-b0", "--parts", "2", "--families", "compound", "width",
              "--seeds", "0", "1", "--threads", "1", "--quiet"]
    checked = driver.main([*common, "--plateau-check"])
    trained = sorted(str(path.relative_to(out / "members"))
                     for path in (out / "members").rglob("metrics.json"))
    families = {label: json.loads((out / "families" / "efficientnet-b0" / label /
                                   "family.json").read_text()) for label in ("compound", "width")}
    flops = {label: family["members"][1]["flops"] for label, family in families.items()}
    largest = max(flops, key=flops.get)
    # The first seed only, and of the phi-1 members only the costlier one.
    assert trained == ["seed0/efficientnet-b0/b0/metrics.json",
                       f"seed0/efficientnet-b0/{largest}-b1/metrics.json"]
    assert (checked["trained"], checked["skipped"]) == (2, 0)
    assert [row["member"] for row in checked["summary"]["plateau"]] == [
        "efficientnet-b0/b0", f"efficientnet-b0/{largest}-b1"]
    full = driver.main(common)
    assert (full["trained"], full["skipped"], full["failed"]) == (4, 2, 0)
    # Beyond the check's two members, every member's last-third gain, the largest first.
    every = full["summary"]["last_third_gains"]
    assert {row["member"] for row in every} == {"efficientnet-b0/b0",
                                                "efficientnet-b0/compound-b1",
                                                "efficientnet-b0/width-b1"}
    assert [row["gain"] for row in every] == sorted((row["gain"] for row in every), reverse=True)
    for row in every:
        curves = [json.loads((out / f"members/seed{seed}/{row['member']}/metrics.json")
                             .read_text())["history"] for seed in (0, 1)]
        assert row["gains"] == [pytest.approx(h[1]["test_accuracy"] - h[0]["test_accuracy"])
                                for h in curves]
    assert "Every member, the largest gain first" in (out / "summary.md").read_text()


def test_no_speed_trains_part_3_without_timing_it(tmp_path: Path) -> None:
    driver = _load_driver()
    out = tmp_path / "gpu-like"
    done = driver.main(["--out", str(out), "--subset", "64", "--test-size", "64", "--epochs",
                        "1", "--batch-size", "32", "--max-phi", "1", "--bases",
                        "efficientnet-b0", "--parts", "3", "--threads", "1", "--quiet",
                        "--no-speed"])
    # b0 and phi 1 of fast (a = 0.8) and uniform (a = 1/3) scaling, and no runtimes.
    assert (done["trained"], done["failed"]) == (3, 0)
    assert not (out / "speed.json").exists()
