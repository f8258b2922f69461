"""`nas search --evaluator supernet` finds the supernet of its space, dataset and
settings under the runs folder and scores every trial with it, without training it again."""

import json
from pathlib import Path

import optuna
import pytest
import torch

from nas.cli import main
from nas.data import load_dataset
from nas.evaluators import make_evaluator
from nas.supernet import SupernetSettings
from nas.supernet.artifact import default_path, supernet_key
from space import cost

from _supernet_space import TINY_SETTINGS, TINY_SPACE, tiny_space


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr("nas.train.configure_threads", lambda *args: 1)
    yield
    torch.set_num_threads(threads)


def test_a_search_reuses_the_supernet_of_its_space_and_scores_with_it(tmp_path, capsys):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(TINY_SPACE))
    runs = tmp_path / "runs"
    # The supernet the search will look for: the default settings at the search's proxy
    # resolution, validation split and seed. It is trained here with the tiny settings
    # (the defaults would take an hour); the search accepts it because its split and
    # resolution match, and records the settings it was trained with.
    wanted = SupernetSettings(resolution=16, val_size=500, seed=0)
    path = default_path(runs, supernet_key(tiny_space(), load_dataset("fashion-mnist"), wanted))
    trained = make_evaluator("supernet", space=tiny_space(), supernet=path,
                             supernet_settings=SupernetSettings(**TINY_SETTINGS))
    assert trained.built
    stamp = path.stat().st_mtime_ns
    target = cost(tiny_space().largest(), 224, 10, 1).flops / 4
    assert main(["search", "--target-flops", str(int(target)), "--space", str(space_file),
                 "--evaluator", "supernet", "--proxy-resolution", "16",
                 "--proxy-val-size", "500", "--n-trials", "4", "--cost-window", "0",
                 "--runs", str(runs), "--study", "sn", "--references", "none"]) == 0
    capsys.readouterr()
    assert path.stat().st_mtime_ns == stamp  # read, not trained again
    study = optuna.load_study(study_name="sn", storage=f"sqlite:///{runs / 'sn' / 'study.db'}")
    scores = [t.user_attrs["accuracy"] for t in study.trials if t.state.name == "COMPLETE"]
    assert len(scores) == 4 and all(0.0 < s <= 1.0 for s in scores)
    assert all(abs(s * 500 - round(s * 500)) < 1e-6 for s in scores)  # of 500 images
    assert len({Path(p).name for p in (runs / "supernets").glob("*.pt")}) == 1


def test_workers_share_one_supernet_by_path_and_a_study_refuses_another(tmp_path, capsys):
    """--supernet FILE: every worker scores with that artifact (on any machine), the study
    records its digest, and a resumed study refuses a supernet trained otherwise."""
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(TINY_SPACE))
    shared, other = tmp_path / "shared.pt", tmp_path / "other.pt"
    for path, epochs in ((shared, 1), (other, 2)):
        make_evaluator("supernet", space=tiny_space(), supernet=path,
                       supernet_settings=SupernetSettings(**{**TINY_SETTINGS, "epochs": epochs}))
    target = cost(tiny_space().largest(), 224, 10, 1).flops / 4
    command = ["search", "--target-flops", str(int(target)), "--space", str(space_file),
               "--evaluator", "supernet", "--proxy-resolution", "16", "--proxy-val-size",
               "500", "--cost-window", "0", "--runs", str(tmp_path / "runs"), "--study", "sn",
               "--references", "none"]
    assert main(command + ["--n-trials", "2", "--supernet", str(shared)]) == 0
    capsys.readouterr()
    assert not (tmp_path / "runs" / "supernets").exists()  # nothing trained under runs/
    study = optuna.load_study(study_name="sn",
                              storage=f"sqlite:///{tmp_path / 'runs' / 'sn' / 'study.db'}")
    reread = make_evaluator("supernet", space=tiny_space(), supernet=shared,
                            supernet_settings=SupernetSettings(**TINY_SETTINGS))
    assert study.user_attrs["supernet"] == reread.settings()["supernet_digest"]
    assert main(command + ["--n-trials", "3", "--supernet", str(other)]) == 2
    assert "supernet" in capsys.readouterr().err
    assert main(command + ["--n-trials", "3", "--supernet", str(shared)]) == 0
    assert len([t for t in optuna.load_study(
        study_name="sn", storage=f"sqlite:///{tmp_path / 'runs' / 'sn' / 'study.db'}").trials
        if t.state.name == "COMPLETE"]) == 3
    assert main(["search", "--target-flops", "400M", "--supernet", str(shared),
                 "--runs", str(tmp_path / "runs2")]) == 2
    assert "--evaluator supernet" in capsys.readouterr().err
