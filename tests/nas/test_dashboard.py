"""The dashboard: per-trial notes and artifacts, and `nas dashboard` served over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import optuna
import pytest
from optuna.trial import TrialState

from nas import trial_notes
from nas.cli import main
from nas.diagram import block_boxes, genome_svg
from space import Genome, cost, graph, presets

sys.path.insert(0, str(Path(__file__).parent))
from _study_fixture import NUM_CLASSES, IN_CHANNELS, RESOLUTION, make_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "demo"
    make_study(folder, n_trials=14)
    return folder


def test_note_has_stage_table_and_costs():
    genome = presets.get("efficientnet-b0")
    note = trial_notes.trial_note(genome, cost(genome), accuracy=0.7712, reward=0.7689,
                                resolution=224)
    assert "385,814,752 (385.8M)" in note  # B0's multiply-adds, exact (Tan & Le 2019: 0.39B)
    assert "5,288,548" in note and "accuracy** 0.7712" in note and "reward** 0.7689" in note
    rows = [line for line in note.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 1 + 7 + 1  # header, stem, seven stages, head
    # The stage table of space.stage_table (H1's schema): kernel and expansion in the operator.
    assert rows[2].split("|")[1:7] == [" 1 ", " MBConv1, k3x3 ", " 0.25 ", " 1 ", " 16 ", " 1 "]
    assert "| 6 | MBConv6, k5x5 | 0.25 | 4 | 192 | 2 | identity | 14×14 |" in note
    assert "| head | Conv1x1, pooling, FC |  | 1 | 1280 | 1 |  | 7×7 |" in note


def test_diagram_is_drawn_from_the_graph():
    genome = presets.get("efficientnet-b0")
    boxes = block_boxes(genome, graph(genome))
    assert len(boxes) == 2 + genome.num_blocks + 2  # input, stem, 16 blocks, head, classifier
    assert sum(box.flops for box in boxes) == cost(genome).flops
    assert [box.residual for box in boxes].count(True) == 9  # B0: all repeats but stage firsts
    assert boxes[-3].out_shape == (320, 7, 7) and boxes[-3].stage == 7
    svg = genome_svg(genome, resolution=32, num_classes=10, in_channels=1)
    root = ElementTree.fromstring(svg)  # well-formed XML
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "1×32×32" in texts and "stage 7" in texts and "MBConv6, k5x5, SE0.25, stride 2" in texts


def test_trials_carry_notes_and_artifacts(run_dir):
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{run_dir / 'study.db'}")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 3
    store = trial_notes.artifact_store_for(run_dir)
    for trial in complete:
        metas = {json.loads(v)["filename"]: json.loads(v) for k, v in trial.system_attrs.items()
                 if k.startswith("artifacts:")}
        assert set(metas) == {f"genome-trial{trial.number}.json",
                              f"architecture-trial{trial.number}.svg"}
        stored = store.open_reader(metas[f"genome-trial{trial.number}.json"]["artifact_id"]).read()
        genome = Genome.from_json(stored.decode())
        assert genome.to_dict() == trial.user_attrs["genome"]
        svg = store.open_reader(metas[f"architecture-trial{trial.number}.svg"]["artifact_id"]).read()
        assert metas[f"architecture-trial{trial.number}.svg"]["mimetype"] == "image/svg+xml"
        # the diagram is drawn at the study's resolution and input channels
        assert f"{IN_CHANNELS}×{RESOLUTION}×{RESOLUTION}".encode() in svg


def test_attach_is_cheap(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="t")
    store = trial_notes.artifact_store_for(tmp_path)
    trial = study.ask()
    genome = presets.get("efficientnet-b0")
    trial_notes.attach_trial_artifacts(study, trial, genome, store)
    started = time.perf_counter()
    for _ in range(5):
        trial_notes.attach_trial_artifacts(study, trial, genome, store)
    # generous bound for a shared 2-core machine; about 9 ms measured alone
    assert (time.perf_counter() - started) / 5 < 0.25
    assert len(list((tmp_path / "artifacts").iterdir())) == 12


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.status == 200
        return response.read()


def test_dashboard_serves_trials_over_http(run_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Started with SIGINT ignored, as a background job of a non-interactive shell starts
    # (the suite may be one): the dashboard must install its own handling of Ctrl-C.
    server = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", str(run_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = server.stdout.readline()
        assert "optuna-dashboard for study 'demo': http://127.0.0.1:" in line, server.stderr.read()
        url = line.split(": ", 1)[1].strip()
        base = url.split("/dashboard/")[0]
        port = int(base.rsplit(":", 1)[1])
        assert port > 0
        with pytest.raises(OSError):  # bound to 127.0.0.1 alone, not to the rest of 127/8
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
        studies = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
        assert [s["study_name"] for s in studies] == ["demo"]
        study_id = studies[0]["study_id"]
        assert url.endswith(f"/dashboard/studies/{study_id}")
        assert b"<html" in _get(url).lower()
        detail = json.loads(_get(f"{base}/api/studies/{study_id}"))
        trials = detail["trials"]
        # the evaluated trials alone: the screened genomes are counted by the report
        study = optuna.load_study(study_name="demo", storage=f"sqlite:///{run_dir / 'study.db'}")
        evaluated = [t.number for t in study.trials if "screened" not in t.user_attrs]
        assert len(evaluated) < 14 and [t["number"] for t in trials] == evaluated
        complete = [t for t in trials if t["state"] == "Complete"]
        assert complete
        for trial in complete:
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            assert {"genome", "flops", "params", "activations", "accuracy", "reward"} <= set(attrs)
            genome = Genome.from_dict(json.loads(attrs["genome"]))
            assert int(attrs["flops"]) == cost(genome, RESOLUTION, NUM_CLASSES, IN_CHANNELS).flops
            assert "| stage | operator |" in trial["note"]["body"]
            assert f"**multiply-adds** {int(attrs['flops']):,}" in trial["note"]["body"]
            assert trial["intermediate_values"]
            names = sorted(a["filename"] for a in trial["artifacts"])
            assert names == [f"architecture-trial{trial['number']}.svg",
                             f"genome-trial{trial['number']}.json"]
        trial = complete[0]
        svg_meta = next(a for a in trial["artifacts"] if a["filename"].endswith(".svg"))
        svg = _get(f"{base}/artifacts/{study_id}/{trial['trial_id']}/{svg_meta['artifact_id']}")
        assert svg.startswith(b"<svg") and b"stage 7" in svg
        assert not any(a["key"] == "screened" for t in trials for a in t["user_attrs"])
        server.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = server.communicate(timeout=20)
        assert server.returncode == 0, err
        assert "dashboard stopped" in out
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_dashboard_bad_input_is_one_line(tmp_path, run_dir, capsys):
    assert main(["dashboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no study (study.db is missing)" in err
    assert not (tmp_path / "study.db").exists()
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    assert main(["dashboard", str(run_dir), "--study", "other"]) == 2
    assert "has no study 'other'; it has: demo" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", str(run_dir), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err
        assert "pick another --port" in err


def test_show_draws_any_genome(tmp_path, capsys):
    target = tmp_path / "figures" / "a1.svg"
    assert main(["show", "--genome", "mnasnet-a1", "--resolution", "32", "--num-classes", "10",
                 "--in-channels", "1", "--diagram", str(target)]) == 0
    assert f"diagram: {target}" in capsys.readouterr().out
    svg = target.read_text()
    genome = presets.get("mnasnet-a1")
    texts = [t.text for t in ElementTree.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "SepConv, k3x3" in texts and "1×32×32" in texts
    assert sum(1 for t in texts if t and t.startswith("stage ")) == len(genome.stages)
    assert main(["show", "--genome", "mnasnet-a1", "--diagram", str(tmp_path / "a1.png")]) == 2
    assert "must be an .svg file name" in capsys.readouterr().err
    assert not (tmp_path / "a1.png").exists()
