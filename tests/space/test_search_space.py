import random

import optuna
import pytest

from space import SearchSpace, SpaceError, cost, presets
from space.search_space import DEFAULT_SPACE_PATH, MBCONV_SPACE_PATH


def test_default_space_holds_b0_not_mnasnet():
    space = SearchSpace.default()
    assert space.contains(presets.get("efficientnet-b0"))
    assert "activation" in space.why_not_contained(presets.get("mnasnet-a1"))
    assert [c.stride for c in space.stages] == [1, 2, 2, 2, 1, 2, 1]
    assert space.stem_channels == 32 and space.head_channels == 1280


def test_size_counts_distinct_choices():
    space = SearchSpace.from_file(MBCONV_SPACE_PATH)
    # stage 1: 2 kernels x 3 expansions x 2 SE x layers {1,2} x channels {16,24} = 48
    assert space.stages[0].size == 48
    assert space.stages[0].out_channels == (16, 24)
    assert space.stages[3].out_channels == (64, 80, 104)
    assert space.size() == 48 * 72 * 108 * 108 * 108 * 108 * 72
    # the default space adds MnasNet's skip op (identity, none) to every stage and its conv
    # op (MBConv, Fused-MBConv) to the first three
    default = SearchSpace.default()
    assert [c.conv_op for c in default.stages] == [("mbconv", "fused")] * 3 + [("mbconv",)] * 4
    assert all(c.skip_op == ("identity", "none") for c in default.stages)
    assert default.size() == space.size() * 4 ** 3 * 2 ** 4


def test_sample_uses_one_named_parameter_per_stage_choice():
    space = SearchSpace.default()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    genome = space.sample(trial)
    assert space.contains(genome)
    assert set(trial.params) == {f"stage{i}_{f}" for i in range(1, 8) for f in
                                 ("kernel_size", "expand_ratio", "se_ratio", "num_layers",
                                  "out_channels", "skip_op")} | {
        f"stage{i}_conv_op" for i in range(1, 4)}
    assert space.genome_from_params(trial.params) == genome


def test_parameters_of_a_trial_made_before_the_ops_existed_replay_with_defaults():
    space = SearchSpace.default()
    old = {key: value for key, value in space.params_of(presets.get("efficientnet-b0")).items()
           if not key.endswith(("_conv_op", "_skip_op"))}
    assert space.genome_from_params(old).key() == presets.get("efficientnet-b0").key()
    with pytest.raises(SpaceError, match="lack 'stage1_kernel_size'"):
        space.genome_from_params({})


def test_params_of_enqueues_a_known_genome():
    space = SearchSpace.default()
    b0 = presets.get("efficientnet-b0")
    study = optuna.create_study()
    study.enqueue_trial(space.params_of(b0))
    assert space.sample(study.ask()).key() == b0.key()


def test_smallest_and_largest_bound_the_cost():
    space = SearchSpace.default()
    low, high = cost(space.smallest()).flops, cost(space.largest()).flops
    rng = random.Random(1)
    for _ in range(50):
        assert low <= cost(space.random_genome(rng)).flops <= high


def test_user_space_file_overrides(tmp_path):
    text = DEFAULT_SPACE_PATH.read_text().replace("kernel_size = [3, 5]", "kernel_size = [3, 5, 7]")
    path = tmp_path / "mine.toml"
    path.write_text(text + "\n")
    space = SearchSpace.from_file(path)
    assert space.stages[2].kernel_size == (3, 5, 7)
    assert space.size() == SearchSpace.default().size() * 1.5 ** 7


@pytest.mark.parametrize("text, message", [
    ("version = 1\nstages = 3", "stages"),
    ("this is not toml", "not valid TOML"),
    ("version = 1\ncolour = 1\nstages = []", "unknown key 'colour'"),
    ("[choices]\nkernel_size=[4]\nexpand_ratio=[6]\nse_ratio=[0]\nlayers_delta=[0]\n"
     "width_multiplier=[1.0]\n[[stages]]\nout_channels=16\nnum_layers=1\nstride=1", "kernel_size"),
    ("[choices]\nkernel_size=[3]\nexpand_ratio=[6]\nse_ratio=[0]\nlayers_delta=[0]\n"
     "width_multiplier=[1.0]\n[[stages]]\nout_channels=16\nnum_layers=1\nstride=3", "stride"),
    ("[choices]\nkernel_size=[3]\nexpand_ratio=[6]\nse_ratio=[0]\nlayers_delta=[0]\n"
     "width_multiplier=[1e300]\n[[stages]]\nout_channels=16\nnum_layers=1\nstride=1",
     "width_multiplier"),
])
def test_bad_space_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_file(path)


def test_missing_space_file():
    with pytest.raises(SpaceError, match="does not exist"):
        SearchSpace.from_file("/nonexistent/space.toml")
