"""Evaluators: one interface, positive scores, pruning callbacks, failures."""

from __future__ import annotations

import dataclasses
import math
import random

import optuna
import pytest
import torch

from nas.common import UsageError
from nas.evaluators import EVALUATORS, EvaluationFailed, Evaluator, make_evaluator
from nas.train import TrainConfig
from space import Genome, NasError, SearchSpace, Stage, presets

TINY = Genome(name="tiny", stem_channels=8, head_channels=32, dropout=0.0,
              drop_connect_rate=0.0, resolution=224, activation="relu",
              stages=(Stage(kernel_size=3, expand_ratio=1, se_ratio=0.0, num_layers=1,
                            out_channels=8, stride=1),
                      Stage(kernel_size=3, expand_ratio=3, se_ratio=0.25, num_layers=2,
                            out_channels=16, stride=2)))


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine a spinning second OpenMP thread makes
    small models many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _proxy(**options) -> Evaluator:
    settings = {"subset": 3000, "epochs": 2, "batch_size": 64, "val_size": 1000,
                "resolution": 16, "train_config": TrainConfig(lr=0.01)}
    return make_evaluator("proxy-train", **{**settings, **options})


def test_proxy_training_scores_validation_accuracy_and_reports_every_epoch():
    evaluator = _proxy()
    assert evaluator.is_accuracy and evaluator.name == "proxy-train"
    assert evaluator.num_classes == 10 and evaluator.in_channels == 1
    assert len(evaluator.train) == 3000 and len(evaluator.val) == 1000
    reports = []
    score = evaluator.evaluate(TINY, on_epoch=lambda epoch, acc: reports.append((epoch, acc)))
    assert 0.6 < score <= 1.0  # ten classes: chance is 0.1
    assert [epoch for epoch, _ in reports] == [1, 2] and reports[-1][1] == score
    assert evaluator.evaluate(TINY) == score  # seeded: the same genome, the same score


def test_trial_pruned_raised_by_the_callback_propagates_unchanged():
    evaluator = _proxy(epochs=3)

    def prune(epoch: int, accuracy: float) -> None:
        raise optuna.TrialPruned(f"epoch {epoch}")

    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        evaluator.evaluate(TINY, on_epoch=prune)


def test_diverging_training_is_an_evaluation_failure_not_a_user_error():
    evaluator = _proxy(epochs=1, train_config=TrainConfig(lr=1e12))
    with pytest.raises(EvaluationFailed, match="training diverged: loss became"):
        evaluator.evaluate(TINY)
    assert not issubclass(EvaluationFailed, NasError)


def test_evaluation_runs_at_proxy_resolution_times_the_multiplier_not_at_224():
    evaluator = make_evaluator("naswot", resolution=32)
    scaled = dataclasses.replace(TINY, resolution_multiplier=1.5, resolution=336)
    assert evaluator.input_resolution(TINY) == 32
    assert evaluator.input_resolution(scaled) == 48
    sizes = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: sizes.append(args[0].shape[-1]) if isinstance(module, torch.nn.Conv2d) else None)
    try:
        evaluator.evaluate(scaled)
    finally:
        handle.remove()
    assert sizes[0] == 48


@pytest.mark.parametrize("name", ["naswot", "synflow", "grad-norm"])
def test_zero_cost_proxies_are_positive_deterministic_and_rank_networks(name):
    evaluator = make_evaluator(name)
    assert not evaluator.is_accuracy and evaluator.name == name
    space = SearchSpace.default()
    small, b0, large = space.smallest(), presets.get("efficientnet-b0"), space.largest()
    scores = [evaluator.evaluate(genome) for genome in (small, b0, large)]
    assert all(score > 0 for score in scores)
    assert evaluator.evaluate(b0) == scores[1]
    # All three proxies grow with the network's size on this space.
    assert scores[0] < scores[1] < scores[2]


def test_naswot_respects_the_hadamard_bound_of_its_kernel():
    """K is a Gram matrix whose diagonal is the number of activation units U, so
    0 < ln|K| <= B ln U for a batch of B images (Hadamard's inequality)."""
    evaluator = make_evaluator("naswot", batch_size=8)
    genome = SearchSpace.default().random_genome(random.Random(0))
    units = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: units.append(args[0][0].numel())
        if isinstance(module, (torch.nn.SiLU, torch.nn.ReLU)) else None)
    try:
        score = evaluator.evaluate(genome)
    finally:
        handle.remove()
    assert 0 < score <= 8 * math.log(sum(units)) + 1e-9
    assert score > 0.5 * 8 * math.log(sum(units))  # far from singular: images differ


def test_unknown_evaluator_and_bad_settings_are_usage_errors():
    with pytest.raises(UsageError, match="unknown evaluator 'oracle'; choose one of "
                                         "proxy-train, naswot, synflow, grad-norm"):
        make_evaluator("oracle")
    with pytest.raises(UsageError, match="proxy resolution 4"):
        make_evaluator("naswot", resolution=4)
    assert EVALUATORS == ("proxy-train", "naswot", "synflow", "grad-norm", "supernet")


def test_every_evaluator_kind_has_its_class_and_the_protocol_checks_once():
    import importlib

    from nas.evaluators import _CLASSES
    from nas.protocol import EVALUATOR_KINDS
    from nas.settings import ProxySettings

    for kind in EVALUATOR_KINDS.values():
        importlib.import_module(kind.module)  # as make_evaluator does
    assert set(_CLASSES) == set(EVALUATOR_KINDS)
    assert [name for name, kind in EVALUATOR_KINDS.items() if kind.is_accuracy] == ["proxy-train"]
    assert make_evaluator("naswot", batch_size=8).is_accuracy is False
    # The proxy protocol's bounds, named as the library's callers know them.
    with pytest.raises(UsageError, match="proxy epochs 0 must be at least 1"):
        make_evaluator("proxy-train", epochs=0)
    with pytest.raises(UsageError, match="proxy batch size 1 must be at least 2"):
        make_evaluator("naswot", batch_size=1)
    evaluator = make_evaluator("proxy-train", proxy=ProxySettings(subset=500, val_size=100),
                               epochs=1)
    assert (len(evaluator.train), len(evaluator.val)) == (500, 100)
    assert (evaluator.config.epochs, evaluator.config.batch_size) == (1, 128)
