import csv
import dataclasses
import json
import re
import subprocess
import sys

import pytest

from nas.cli import main
from nas.commands.scale import parse_phis
from nas.common import UsageError
from scaling import Coefficients, scale
from space import Genome, SearchContext, presets
from space.search_space import MBCONV_SPACE_PATH

B0 = presets.get("efficientnet-b0")


def test_parse_phis():
    assert parse_phis("3") == [3]
    assert parse_phis("0..7") == list(range(8))
    assert parse_phis("0,2,4") == [0, 2, 4]
    assert parse_phis(" 5, 0..2 ") == [0, 1, 2, 5]
    assert parse_phis("4..4") == [4]
    for text, message in [("-1", ">= 0"), ("3..1", "backwards"), ("x", "not a whole number"),
                          ("1.5", "not a whole number"), ("", "not a whole number"),
                          ("0,,1", "not a whole number"), ("1,0..2", "twice"),
                          ("0..65", "too large")]:
        with pytest.raises(UsageError, match=message):
            parse_phis(text)


def test_official_family_end_to_end(tmp_path, capsys):
    out = tmp_path / "family"
    assert main(["scale", "--genome", "efficientnet-b0", "--phi", "0..7", "--method",
                 "official", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "efficientnet-b7" in printed and "97.83x" in printed and "37.7G" in printed
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted([f"b{phi}.json" for phi in range(8)] +
                           ["family.json", "family.csv", "family.png", "family.html"])
    summary = json.loads((out / "family.json").read_text())
    assert summary["method"] == "official" and summary["coefficients"] == {}
    assert Genome.from_dict(summary["base"]) == B0
    member = summary["members"][3]
    assert set(member) == {"phi", "name", "file", "depth_multiplier", "width_multiplier",
                           "resolution_multiplier", "resolution", "flops", "params",
                           "activations", "flops_ratio"}
    assert (member["phi"], member["name"], member["file"], member["resolution"],
            member["params"]) == (3, "efficientnet-b3", "b3.json", 300, 12_233_232)
    assert [m["params"] for m in summary["members"]][-1] == 66_347_960
    b3 = Genome.from_json(out / "b3.json")
    assert b3 == scale(B0, 3, "official")
    rows = list(csv.DictReader((out / "family.csv").open()))
    assert len(rows) == 8 and int(rows[7]["flops"]) == summary["members"][7]["flops"]
    assert (out / "family.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "family.html").read_text()
    # self-contained: plotly.js is inlined, no <script src=...> to fetch
    assert "<script src=" not in html and "Plotly.newPlot" in html and len(html) > 1_000_000


def test_default_out_is_beside_the_genome_and_small_costs(tmp_path, capsys):
    genome_file = tmp_path / "best.json"
    genome_file.write_text(presets.get("mnasnet-a1").to_json())
    assert main(["scale", "--genome", str(genome_file), "--phi", "0,2", "--method", "fast",
                 "--alpha", "0.8", "--num-classes", "10", "--in-channels", "1"]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "family.json").read_text())
    assert summary["coefficients"] == {"alpha": 0.8}
    assert [m["name"] for m in summary["members"]] == ["mnasnet-a1-b0", "mnasnet-a1-b2"]
    assert (tmp_path / "b2.json").exists() and not (tmp_path / "b1.json").exists()
    assert summary["num_classes"] == 10 and summary["in_channels"] == 1


def test_coefficients_file_and_warning(tmp_path, capsys):
    coefficients = tmp_path / "coefficients.json"
    coefficients.write_text(Coefficients(alpha=1.0, beta=1.0, gamma=1.2).to_json())
    out = tmp_path / "out"
    assert main(["scale", "--genome", "efficientnet-b0", "--phi", "2", "--coefficients",
                 str(coefficients), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: alpha*beta^2*gamma^2" in printed and "1.440" in printed
    assert Genome.from_json(out / "b2.json") == scale(B0, 2, alpha=1.0, beta=1.0, gamma=1.2)
    assert main(["scale", "--genome", "efficientnet-b0", "--phi", "2", "--coefficients",
                 str(coefficients), "--alpha", "1.2", "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err


def test_the_input_genome_is_never_overwritten(tmp_path, capsys):
    genome_file = tmp_path / "b1.json"
    genome_file.write_text(B0.to_json())
    before = genome_file.read_text()
    assert main(["scale", "--genome", str(genome_file), "--phi", "0..2"]) == 2
    assert "overwrite the input genome" in capsys.readouterr().err
    assert genome_file.read_text() == before and sorted(tmp_path.iterdir()) == [genome_file]


@pytest.mark.parametrize("args, message", [
    (["--phi", "8", "--method", "official"], "B0..B7"),
    (["--phi", "-1"], ">= 0"),
    (["--phi", "3..1"], "backwards"),
    (["--phi", "x"], "not a whole number"),
    (["--phi", "0..3", "--method", "fast", "--alpha", "1.5"], "alpha in [0, 1]"),
    (["--phi", "0..7", "--method", "depth"], "smaller phi"),
    (["--phi", "1", "--method", "official", "--gamma", "1.2"], "takes no coefficients"),
])
def test_bad_input_exit_2_one_line_out_untouched(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b0.json").write_text("keep me")
    assert main(["scale", "--genome", "efficientnet-b0", *args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert captured.out == ""
    assert [p.name for p in out.iterdir()] == ["b0.json"]
    assert (out / "b0.json").read_text() == "keep me"


@pytest.mark.parametrize("phi", ["-1", "8"])
def test_bad_phi_from_a_shell_is_one_line_without_traceback(tmp_path, phi):
    result = subprocess.run([sys.executable, "-m", "nas", "scale", "--genome", "efficientnet-b0",
                             "--phi", phi, "--method", "official", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("nas scale: error: phi") or "--phi" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_or_invalid_genome_file(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["scale", "--genome", str(tmp_path / "missing.json"), "--phi", "1",
                 "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    data = B0.to_dict()
    data["stages"][2]["stride"] = 3
    bad.write_text(json.dumps(data))
    assert main(["scale", "--genome", str(bad), "--phi", "1", "--out", str(out)]) == 2
    assert "stages[2].stride" in capsys.readouterr().err
    assert not out.exists()


def test_grid_search_with_naswot_end_to_end(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["scale", "--genome", "mnasnet-a1", "--grid", "--grid-values", "1.0,1.4",
                 "--evaluator", "naswot", "--data", "/usr/share/datasets/fashion-mnist",
                 "--batch-size", "8", "--proxy-resolution", "16", "--phi", "0,1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 triples" in printed and "<- chosen" in printed
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert [(float(r["alpha"]), float(r["beta"]), float(r["gamma"])) for r in rows] == \
        [(1.0, 1.0, 1.4), (1.0, 1.4, 1.0)]
    assert all(float(r["score"]) > 0 for r in rows)
    chosen = max(rows, key=lambda r: float(r["score"]))
    assert chosen["chosen"] == "1"
    coefficients = Coefficients.from_json(out / "coefficients.json")
    assert (coefficients.alpha, coefficients.beta, coefficients.gamma) == \
        (float(chosen["alpha"]), float(chosen["beta"]), float(chosen["gamma"]))
    summary = json.loads((out / "family.json").read_text())
    assert summary["coefficients"] == coefficients.to_dict()
    assert Genome.from_json(out / "b1.json") == scale(presets.get("mnasnet-a1"), 1,
                                                      **coefficients.to_dict())


def test_grid_rejects_other_methods_and_bad_evaluators(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["scale", "--genome", "mnasnet-a1", "--grid", "--method", "fast",
                 "--out", str(out)]) == 2
    assert "compound coefficients" in capsys.readouterr().err
    assert main(["scale", "--genome", "mnasnet-a1", "--grid", "--evaluator", "oracle",
                 "--out", str(out)]) == 2
    assert "unknown evaluator" in capsys.readouterr().err
    assert main(["scale", "--genome", "mnasnet-a1", "--grid", "--data", str(tmp_path / "none"),
                 "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not out.exists()


def test_grid_proxy_options_are_the_proxy_settings(tmp_path, capsys, monkeypatch):
    from nas import evaluators
    from nas.settings import ProxySettings

    with pytest.raises(SystemExit):
        main(["scale", "--help"])
    assert "training batch (default 128)" in " ".join(capsys.readouterr().out.split())
    asked = []

    def record(name, **kwargs):
        asked.append(kwargs)
        raise UsageError("recorded")

    monkeypatch.setattr(evaluators, "make_evaluator", record)
    out = tmp_path / "grid"
    assert main(["scale", "--genome", "mnasnet-a1", "--grid", "--out", str(out)]) == 2
    assert asked[-1]["proxy"] == ProxySettings() and asked[-1]["batch_size"] is None
    assert asked[-1]["dataset"] == "fashion-mnist"
    searched = tmp_path / "best.json"  # searched on CIFAR-10: the grid scores it there
    searched.write_text(dataclasses.replace(
        presets.get("mnasnet-a1"), context=SearchContext("cifar10", 3, 10)).to_json())
    assert main(["scale", "--genome", str(searched), "--grid", "--out", str(out)]) == 2
    assert asked[-1]["dataset"] == "cifar10"
    assert main(["scale", "--genome", "mnasnet-a1", "--grid", "--proxy-epochs", "2",
                 "--batch-size", "16", "--out", str(out)]) == 2
    assert asked[-1]["proxy"] == ProxySettings(epochs=2, batch_size=16)
    assert asked[-1]["batch_size"] == 16
    capsys.readouterr()
    assert main(["scale", "--genome", "mnasnet-a1", "--grid", "--proxy-epochs", "0",
                 "--out", str(out)]) == 2
    assert capsys.readouterr().err == "nas scale: error: --proxy-epochs 0 must be at least 1\n"
    assert not out.exists()


def test_a_searched_genome_scales_with_its_search_context(tmp_path, capsys):
    """The search reports best.json's costs for the dataset's 1 channel and 10 classes;
    `nas scale` of that best.json reports the same multiply-adds for b0 and says why."""
    assert main(["search", "--target-flops", "400M", "--runs", str(tmp_path), "--study", "s",
                 "--n-trials", "2", "--evaluator", "naswot", "--proxy-subset", "256",
                 "--space", str(MBCONV_SPACE_PATH), "--quiet", "--references", "none"]) == 0
    searched = re.search(r"multiply-adds ([\d,]+) \(([^)]+)\)", capsys.readouterr().out)
    best = tmp_path / "s" / "best.json"
    assert json.loads(best.read_text())["context"] == \
        {"dataset": "fashion-mnist", "in_channels": 1, "num_classes": 10}
    assert main(["scale", "--genome", str(best), "--phi", "0,1", "--out",
                 str(tmp_path / "family")]) == 0
    printed = capsys.readouterr().out
    assert "1 input channel(s), 10 classes (the genome's search context, fashion-mnist)" in printed
    summary = json.loads((tmp_path / "family" / "family.json").read_text())
    assert (summary["in_channels"], summary["num_classes"]) == (1, 10)
    assert summary["members"][0]["flops"] == int(searched.group(1).replace(",", ""))
    b0_row = next(line for line in printed.splitlines() if line.split()[:1] == ["0"])
    assert f" {searched.group(2)} " in b0_row  # as the search summary formats it
    member = Genome.from_json(tmp_path / "family" / "b1.json")
    assert member.context == Genome.from_json(best).context

    # Flags still win; a genome without a context (an older best.json) keeps ImageNet's.
    assert main(["scale", "--genome", str(best), "--phi", "0", "--num-classes", "1000",
                 "--out", str(tmp_path / "given")]) == 0
    assert "1 input channel(s), 1000 classes (as asked)" in capsys.readouterr().out
    old = tmp_path / "old" / "best.json"
    old.parent.mkdir()
    old.write_text(dataclasses.replace(Genome.from_json(best), context=None).to_json())
    assert "context" not in json.loads(old.read_text())
    assert main(["scale", "--genome", str(old), "--phi", "0"]) == 0
    assert ("3 input channel(s), 1000 classes (ImageNet's, as the papers report; the genome "
            "records no search context)") in capsys.readouterr().out
    assert json.loads((old.parent / "family.json").read_text())["members"][0]["flops"] > \
        summary["members"][0]["flops"]
