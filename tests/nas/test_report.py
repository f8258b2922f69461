"""`nas report`: the page, its PNGs, and the page rendered by a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.report import member_accuracy, pareto_front
from space import Genome, cost

sys.path.insert(0, str(Path(__file__).parent))
from _study_fixture import IN_CHANNELS, NUM_CLASSES, RESOLUTION, make_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 24-trial study plus two scaled families (compound, width only) of its best genome,
    the compound one partly trained (metrics.json beside its members)."""
    folder = tmp_path_factory.mktemp("runs") / "demo"
    make_study(folder, n_trials=24)
    for method in ("compound", "width"):
        assert main(["scale", "--genome", str(folder / "best.json"), "--phi", "0..3", "--method",
                     method, "--num-classes", str(NUM_CLASSES), "--in-channels",
                     str(IN_CHANNELS), "--out", str(folder / method)]) == 0
    family = json.loads((folder / "compound" / "family.json").read_text())
    for member, accuracy in zip(family["members"][:3], (0.85, 0.87, 0.88)):
        (folder / "compound" / member["name"]).mkdir()
        (folder / "compound" / member["name"] / "metrics.json").write_text(
            json.dumps({"val_accuracy": accuracy - 0.01, "test_accuracy": accuracy}))
    return folder


def test_pareto_front_keeps_undominated_points():
    points = [(300, 0.80, 0), (200, 0.78, 1), (250, 0.77, 2), (400, 0.85, 3), (350, 0.84, 4),
              (200, 0.70, 5)]
    assert pareto_front(points) == [(200, 0.78, 1), (300, 0.80, 0), (350, 0.84, 4), (400, 0.85, 3)]


def test_member_accuracy_reads_what_training_writes():
    assert member_accuracy({"test_accuracy": 0.9, "val_accuracy": 0.8}) == 0.9
    assert member_accuracy({"test_accuracy": None, "val_accuracy": 0.7}) == 0.7
    # Only the keys nas train writes: nothing else is guessed at.
    assert member_accuracy({"test": {"accuracy": 0.91}, "accuracy": 0.9}) is None
    assert member_accuracy({"test_accuracy": 91.0}) is None  # a percentage is not a fraction
    assert member_accuracy(["not", "a", "dict"]) is None


def test_report_files(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    page = run_dir / "report.html"
    assert f"report: {page}" in out
    text = page.read_text()
    # self-contained: plotly.js inline, nothing fetched from anywhere
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text)
    assert text.count('<script type="text/javascript">') >= 1 and len(text) > 3_000_000
    figures = re.findall(r'<div id="figure-([a-z-]+)"', text)
    assert figures == ["history", "cost", "importances", "states", "family", "family-accuracy"]
    pngs = run_dir / "report-figures"
    for key in figures:
        data = (pngs / f"{key}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert (pngs / "best-architecture.svg").read_text().startswith("<svg")
    # the best architecture is the highest-reward trial, with its exact costs
    import optuna
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{run_dir / 'study.db'}")
    best = max((t for t in study.trials if "reward" in t.user_attrs),
               key=lambda t: t.user_attrs["reward"])
    assert f"Best architecture: trial {best.number}</h2>" in text
    flops = cost(Genome.from_dict(best.user_attrs["genome"]), RESOLUTION, NUM_CLASSES,
                 IN_CHANNELS).flops
    assert f"{flops:,}" in text
    assert "compound (compound)" not in text and '"name":"compound"' in text


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        print("\nheadless Chromium test skipped: no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH; apt-get install chromium")
    page = run_dir / "report.html"
    if not page.exists():
        assert main(["report", str(run_dir)]) == 0
    # A copy that records every uncaught error and rejected promise on <html>, so that the
    # dumped DOM says whether any script failed.
    probe = tmp_path / "probe.html"
    catcher = ("<script>(function(){function note(m){var r=document.documentElement;"
               "r.setAttribute('data-js-errors',(r.getAttribute('data-js-errors')||'')+m+';');}"
               "window.addEventListener('error',function(e){note(e.message);});"
               "window.addEventListener('unhandledrejection',function(e){note(String(e.reason));});"
               "})();</script>")
    probe.write_text(page.read_text().replace("<head>", "<head>" + catcher, 1))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    # One run: the DOM after every script ran, and a screenshot of the page.
    dump = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=20000",
                           "--window-size=1280,5200", "--enable-logging=stderr", "--v=0",
                           "--dump-dom", f"--screenshot={shot}", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = dump.stdout
    head, _, body = dom.partition("<body")
    root_tag = re.search(r"<html[^>]*>", head).group(0)
    assert "data-js-errors" not in root_tag, root_tag
    assert "Uncaught" not in dump.stderr
    chunks = re.split(r'<div id="figure-', body)[1:]
    assert len(chunks) == 6
    for chunk in chunks:
        name = chunk.split('"', 1)[0]
        assert chunk.count('class="main-svg"') >= 1, f"figure {name} drew no SVG"
        assert len(re.findall(r'class="point', chunk)) >= 2, f"figure {name} drew no data"
    assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 100_000


def test_few_trials_and_multi_objective(tmp_path, capsys):
    folder = tmp_path / "small"
    make_study(folder, name="small", n_trials=4, objective="multi")
    out = tmp_path / "elsewhere" / "small.html"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Stage-choice importances need at least 10 evaluated trials" in text
    assert 'id="figure-importances"' not in text and 'id="figure-history"' in text
    assert (tmp_path / "elsewhere" / "small-figures" / "history.png").exists()


def test_report_bad_input_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no study" in err
    import optuna
    optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert main(["report", str(tmp_path)]) == 2
    assert "has no trials yet" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "report-figures").exists()
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "x.pdf")]) == 2
    assert "must be an .html file" in capsys.readouterr().err
