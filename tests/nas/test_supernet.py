"""The supernet is the space: every sub-network with inherited weights computes exactly
what the stand-alone build() of its genome computes with those weights copied in; it
trains in seconds with the sandwich rule, scores its largest sub-network above chance,
and a training interrupted at any step resumes to the same weights."""

import random
import signal

import pytest
import torch

from nas.data import load_dataset, split_train_val, take_subset
from nas.evaluators import make_evaluator
from nas.protocol import EvaluationFailed
from nas.supernet import Supernet, SupernetError, SupernetSettings
from nas.supernet.training import free_fields, sandwich, teacher, train_supernet
from space import Genome, SearchSpace, build, resolve_blocks

from _supernet_space import TINY_SETTINGS, tiny_space


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on the shared 2-core machine a second OpenMP thread spinning
    beside a busy core makes these tiny trainings 10-20x slower (as tests/nas/test_train.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomised(supernet: Supernet) -> Supernet:
    """Non-trivial batch-norm statistics and affine parameters, so that a slice that
    used the wrong channels or statistics would show."""
    generator = torch.Generator().manual_seed(0)
    for module in supernet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(module.num_features, generator=generator))
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator))
    with torch.no_grad():
        supernet.net.classifier.weight.normal_(generator=generator)
    return supernet.eval()


def _stage(genome: Genome, index: int, **changes) -> Genome:
    stages = list(genome.stages)
    stages[index] = type(stages[index])(**{**stages[index].__dict__, **changes})
    return Genome(**{**genome.__dict__, "stages": tuple(stages)})


def test_sub_networks_compute_what_their_standalone_build_computes():
    space = tiny_space()
    supernet = _randomised(Supernet(space, num_classes=10, in_channels=1))
    largest, smallest = space.largest(), space.smallest()  # all fused / all MBConv
    genomes = [largest, smallest, teacher(space),
               _stage(largest, 1, num_layers=1),                       # fewer layers
               _stage(largest, 2, kernel_size=3, conv_op="mbconv"),    # smaller kernel
               _stage(largest, 1, expand_ratio=1, se_ratio=0.25),      # no expansion, SE on
               _stage(smallest, 0, se_ratio=0.25, kernel_size=5)]      # SE on a small one
    rng = random.Random(1)
    genomes += [space.random_genome(rng) for _ in range(6)]
    assert len({g.key() for g in genomes}) == len(genomes)
    blocks = [spec for genome in genomes for spec in resolve_blocks(genome)]
    for feature in (lambda b: (b.conv_op, b.residual), lambda b: (b.conv_op, b.has_expansion),
                    lambda b: (b.conv_op, b.se_channels > 0), lambda b: (b.conv_op, b.kernel_size)):
        assert len({feature(b) for b in blocks}) == 4  # every op with and without each choice
    inputs = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    for genome in genomes:
        model = supernet.extract(genome).eval()
        reference = build(genome, num_classes=10, in_channels=1)
        assert [tuple(t.shape) for t in model.state_dict().values()] == \
            [tuple(t.shape) for t in reference.state_dict().values()]
        with torch.no_grad():
            assert torch.allclose(supernet(inputs, genome), model(inputs)), genome.to_json()
    # Weights are shared, not copied per genome: the smallest's 3x3 depthwise kernel is
    # the centre of the largest's 5x5 one.
    small = supernet.extract(smallest).blocks[0].body[0][0].weight
    large = supernet.candidates["0-mbconv"].body[1][0].weight
    assert small.shape == (8, 1, 3, 3) and large.shape == (24, 1, 5, 5)  # 8 x ratio 3
    assert torch.equal(small, large[:8, :, 1:4, 1:4])


def test_a_genome_outside_the_space_is_refused():
    space = tiny_space()
    supernet = Supernet(space, num_classes=10, in_channels=1)
    outside = _stage(space.largest(), 0, kernel_size=7)
    with pytest.raises(SupernetError, match="stage 1 kernel_size 7 not in"):
        supernet(torch.zeros(1, 1, 16, 16), outside)


def test_a_choice_the_supernet_does_not_share_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr("nas.supernet.model.SHARED_CHOICES",
                        ("kernel_size", "expand_ratio", "se_ratio", "num_layers",
                         "out_channels", "stride", "skip_op"))
    with pytest.raises(SupernetError) as refused:
        make_evaluator("supernet", space=SearchSpace.default())
    assert str(refused.value) == (
        "the supernet cannot share weights over stage 1 conv_op choices ['mbconv', 'fused']: "
        "fix it to one value in the space file, or use another evaluator (proxy-train)")


def test_the_default_space_is_one_supernet():
    space = SearchSpace.default()
    supernet = Supernet(space, num_classes=10, in_channels=1)
    # One candidate block for the other conv op at every layer of the stages offering
    # both (stages 1-3 of the default space: 2 + 3 + 3 layers at most).
    both = [index for index, c in enumerate(space.stages) if len(c.options["conv_op"]) == 2]
    assert both and len(supernet.candidates) == sum(
        space.largest().stages[index].num_layers for index in both)
    assert len(supernet.net.blocks) == space.largest().num_blocks
    rng = random.Random(3)
    genome = next(g for g in iter(lambda: space.random_genome(rng), None)
                  if {s.conv_op for s in g.stages[:3]} == {"mbconv", "fused"})
    model = supernet.extract(genome).eval()
    inputs = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(supernet.eval()(inputs, genome), model(inputs))


def test_sandwich_is_largest_smallest_and_seeded_random_ones():
    space = tiny_space()
    supernet = Supernet(space, num_classes=10, in_channels=1)
    step = sandwich(supernet, 5, 0, 2)
    assert len(step) == 4
    assert step[0] == teacher(space) and step[0].dropout == 0.1
    assert {s.conv_op for s in step[0].stages} == {"mbconv"}  # the cheaper op, residuals
    assert {s.skip_op for s in step[0].stages} == {"identity"}
    assert step[1].stages == space.smallest().stages and step[1].dropout == 0.0
    assert [g.key() for g in step] == [g.key() for g in sandwich(supernet, 5, 0, 2)]
    assert len({g.key() for s in range(20) for g in sandwich(supernet, s, 0, 2)[2:]}) > 10


def test_progressive_schedule_frees_kernel_then_depth_then_every_choice_by_quarters():
    space = tiny_space()
    supernet = Supernet(space, num_classes=10, in_channels=1)
    progressive = SupernetSettings(**TINY_SETTINGS, schedule="progressive")
    assert [free_fields(progressive, step, 100) for step in (0, 24, 25, 50, 74, 75, 99)] == \
        [(), (), ("kernel_size",), ("kernel_size", "num_layers"),
         ("kernel_size", "num_layers"), None, None]
    assert free_fields(SupernetSettings(**TINY_SETTINGS), 0, 100) is None

    assert sandwich(supernet, 3, 0, 2, ()) == [teacher(space)]  # the teacher alone
    largest = teacher(space)
    for free in (("kernel_size",), ("kernel_size", "num_layers")):
        students = [g for step in range(20) for g in sandwich(supernet, step, 0, 2, free)[1:]]
        varied = {name for g in students for mine, big in zip(g.stages, largest.stages)
                  for name in mine.__dict__ if getattr(mine, name) != getattr(big, name)}
        assert varied == set(free)
        assert all(g.dropout == 0.0 and g != largest for g in students)
    # Every choice free: the students are the whole space's, as in the sandwich rule.
    assert sandwich(supernet, 7, 0, 2, None) == sandwich(supernet, 7, 0, 2)


def test_the_default_schedule_keeps_the_keys_of_artifacts_made_before_it_was_a_choice():
    assert "schedule" not in SupernetSettings().to_dict()
    assert SupernetSettings(schedule="progressive").to_dict()["schedule"] == "progressive"
    with pytest.raises(ValueError, match="schedule 'shrink' must be one of sandwich, progressive"):
        SupernetSettings(schedule="shrink")


@pytest.fixture(scope="module")
def fashion():
    data = load_dataset("fashion-mnist")
    train, _ = split_train_val(data, TINY_SETTINGS["val_size"], 0)
    return data, take_subset(train, 384, 0)


def _train(data, train, settings, **options):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space(), num_classes=10, in_channels=1)
    summary = train_supernet(supernet, train, data.normalization, settings, digest="d",
                             device=torch.device("cpu"), **options)
    return supernet, summary


RESUMABLE = SupernetSettings(**{**TINY_SETTINGS, "epochs": 2, "subset": 384})  # 12 steps


@pytest.fixture(scope="module")
def uninterrupted(fashion):
    # One thread, as the resumed trainings in the tests (module fixtures are made before
    # _one_thread applies): another thread count sums in another order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(*fashion, RESUMABLE, checkpoint=None)[0].state_dict()
    finally:
        torch.set_num_threads(threads)


def _resumes_to(reference, fashion, checkpoint, step):
    resumed, summary = _train(*fashion, RESUMABLE, checkpoint=checkpoint)
    assert summary["resumed_at_step"] == step and summary["steps"] == 12  # 2 x 384 // 64
    for (name, a), b in zip(reference.items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_progressive_training_trains_otherwise_than_the_sandwich_rule(fashion, uninterrupted):
    progressive = SupernetSettings(**{**RESUMABLE.to_dict(), "schedule": "progressive"})
    supernet, summary = _train(*fashion, progressive, checkpoint=None)
    assert summary["steps"] == 12 and len(summary["history"]) == 2
    # Its first three steps train the teacher alone, the sandwich's every student too.
    assert any(not torch.equal(a, b) for a, b in zip(uninterrupted.values(),
                                                     supernet.state_dict().values()))


def test_interrupted_training_resumes_from_its_checkpoint_to_the_same_weights(
        fashion, uninterrupted, tmp_path):
    class Killed(Exception):
        pass

    def kill_at_step_5(step):
        if step == 5:
            raise Killed

    checkpoint = tmp_path / "s.pt.partial"
    with pytest.raises(Killed):
        _train(*fashion, RESUMABLE, checkpoint=checkpoint, checkpoint_seconds=0,
               on_step=kill_at_step_5)
    assert checkpoint.is_file()
    _resumes_to(uninterrupted, fashion, checkpoint, 5)


def test_ctrl_c_saves_the_step_it_stopped_at(fashion, uninterrupted, tmp_path):
    def ctrl_c_after_step_3(step):
        if step == 3:
            signal.raise_signal(signal.SIGINT)

    checkpoint = tmp_path / "s.pt.partial"
    # No periodic checkpoint in 10^9 s: only the stop request writes one.
    with pytest.raises(KeyboardInterrupt):
        _train(*fashion, RESUMABLE, checkpoint=checkpoint, checkpoint_seconds=1e9,
               on_step=ctrl_c_after_step_3)
    _resumes_to(uninterrupted, fashion, checkpoint, 3)


def test_off_a_terminal_progress_is_a_line_a_minute_not_a_redrawn_bar(fashion, capsys):
    _train(*fashion, RESUMABLE, checkpoint=None, quiet=False)  # 12 steps, well under a minute
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("supernet step 12/12: loss ")
    assert "\r" not in lines[0] and "img/s" in lines[0]


def test_largest_sub_network_scores_above_chance_after_a_short_training(tmp_path):
    settings = SupernetSettings(**{**TINY_SETTINGS, "epochs": 3, "subset": 2048})
    evaluator = make_evaluator("supernet", space=tiny_space(), runs_dir=tmp_path,
                               supernet_settings=settings)
    assert evaluator.built and evaluator.path.parent == tmp_path / "supernets"
    largest = evaluator.evaluate(teacher(tiny_space()))
    smallest = evaluator.evaluate(tiny_space().smallest())
    # Chance is 0.10; 500 validation images give a standard error near 0.02.
    assert largest > 0.45 and smallest > 0.25, (largest, smallest)
    assert evaluator.noise(largest) == pytest.approx((largest * (1 - largest) / 500) ** 0.5)
    with pytest.raises(EvaluationFailed, match="outside its space"):
        evaluator.evaluate(_stage(tiny_space().largest(), 0, out_channels=64))
    again = make_evaluator("supernet", space=tiny_space(), runs_dir=tmp_path,
                           supernet_settings=settings)
    assert not again.built and again.evaluate(teacher(tiny_space())) == largest
