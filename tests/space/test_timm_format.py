"""Genomes <-> timm's EfficientNet architecture strings.

The golden definitions are timm's own (huggingface/pytorch-image-models,
timm/models/efficientnet.py: ``_gen_efficientnet`` for efficientnet_b0..b7 and
``_gen_mnasnet_a1`` for mnasnet_a1 / semnasnet_100).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest

from scaling import OFFICIAL_TABLE, scale, scaling_factors
from space import Genome, NasError, SearchSpace, Stage, build, presets, resolve_blocks
from space.timm_format import TimmArch, TimmFormatError, from_timm, stage_string, to_timm

TIMM_EFFICIENTNET_B0 = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]
TIMM_MNASNET_A1 = [
    ["ds_r1_k3_s1_e1_c16_noskip"],
    ["ir_r2_k3_s2_e6_c24"],
    ["ir_r3_k5_s2_e3_c40_se0.25"],
    ["ir_r4_k3_s2_e6_c80"],
    ["ir_r2_k3_s1_e6_c112_se0.25"],
    ["ir_r3_k5_s2_e6_c160_se0.25"],
    ["ir_r1_k3_s1_e6_c320"],
]
RANDOM_SEEDS = range(20)


def random_genomes() -> list[Genome]:
    space = SearchSpace.default()
    return [space.random_genome(random.Random(seed), name=f"random-{seed}")
            for seed in RANDOM_SEEDS]


def test_b0_strings_are_timms_published_definition():
    arch = to_timm(presets.get("efficientnet-b0"))
    assert [list(stage) for stage in arch.arch_def] == TIMM_EFFICIENTNET_B0
    assert (arch.channel_multiplier, arch.depth_multiplier, arch.depth_trunc) == (1.0, 1.0, "ceil")
    assert (arch.stem_size, arch.num_features, arch.head_features) == (32, 1280, 1280)
    assert arch.act_layer == "swish"
    assert from_timm(TIMM_EFFICIENTNET_B0, name="efficientnet-b0") == presets.get("efficientnet-b0")


def test_timms_mnasnet_a1_reads_as_the_preset():
    # timm marks the first block 'noskip' (the reference code does too): the preset's first
    # stage has skip_op "none", so the strings match both ways.
    preset = presets.get("mnasnet-a1")
    assert from_timm(TIMM_MNASNET_A1, act_layer="relu", drop_path_rate=0.0,
                     name="mnasnet-a1") == preset
    written = [list(stage) for stage in to_timm(preset).arch_def]
    assert written == TIMM_MNASNET_A1
    # 32 -> 16 channels has no residual anyway: the same network as without the flag
    without = from_timm([[text.replace("_noskip", "") for text in stage]
                         for stage in TIMM_MNASNET_A1], act_layer="relu", drop_path_rate=0.0)
    assert without.stages[0].skip_op == "identity" and without.key() == preset.key()


@pytest.mark.parametrize("genome", [presets.get("efficientnet-b0"), presets.get("mnasnet-a1"),
                                    *random_genomes()], ids=lambda genome: genome.name)
def test_genome_to_strings_to_genome_is_the_identity(genome):
    arch = to_timm(genome)
    assert arch.to_genome() == genome
    # ... and through the JSON file form as well
    data = json.loads(json.dumps(arch.to_dict()))
    assert TimmArch.from_dict(data).to_genome() == genome


@pytest.mark.parametrize("phi", range(8))
def test_official_family_is_b0_strings_with_timms_multipliers(phi):
    """timm's efficientnet_b<phi> is B0's strings with (width, depth) of the published table;
    the scaler's official member must be exactly what timm builds from them."""
    b0 = presets.get("efficientnet-b0")
    width, depth, _, _ = OFFICIAL_TABLE[phi]
    member = scale(b0, phi=phi, method="official")
    arch = to_timm(member, base=b0, channel_multiplier=width, depth_multiplier=depth)
    assert [list(stage) for stage in arch.arch_def] == TIMM_EFFICIENTNET_B0
    assert arch.to_genome() == member
    assert to_timm(member).to_genome() == member  # the final-strings form too
    timm_built = from_timm(TIMM_EFFICIENTNET_B0, width, depth)
    assert (timm_built.stages, timm_built.stem_channels, timm_built.head_channels) == (
        member.stages, member.stem_channels, member.head_channels)


@pytest.mark.parametrize("method", ["compound", "fast"])
def test_scaled_genomes_round_trip_as_final_strings(method):
    b0 = presets.get("efficientnet-b0")
    for phi in (1, 2, 3):
        member = scale(b0, phi=phi, method=method)
        assert to_timm(member).to_genome() == member


def test_fast_members_are_written_as_base_strings_with_rounded_depth():
    """Fast scaling rounds repeats to nearest, so timm must rebuild it with
    depth_trunc="round"; ceil would add a layer to every stage of B0 at phi 1."""
    b0 = presets.get("efficientnet-b0")
    for phi in (1, 2, 3):
        member = scale(b0, phi=phi, method="fast")
        factors = scaling_factors(phi, "fast")
        arch = to_timm(member, base=b0, channel_multiplier=factors.width,
                       depth_multiplier=factors.depth)
        assert arch.depth_trunc == "round"
        assert arch.to_genome() == member
    official = to_timm(scale(b0, phi=3, method="official"), base=b0, channel_multiplier=1.2,
                       depth_multiplier=1.4)
    assert official.depth_trunc == "ceil"


def test_wrong_multipliers_for_a_base_are_refused_with_the_first_difference():
    b0 = presets.get("efficientnet-b0")
    b3 = scale(b0, phi=3, method="official")
    with pytest.raises(TimmFormatError,
                       match=r"stage 1 num_layers: timm builds 1, the genome has 2"):
        to_timm(b3, base=b0, channel_multiplier=1.2, depth_multiplier=1.0)
    with pytest.raises(TimmFormatError, match="pass base="):
        to_timm(b3, channel_multiplier=1.2)


def test_depth_is_shared_among_a_stages_strings_like_timm():
    """Single-Path NAS's stage 2 (timm ``_gen_spnasnet``) at depth 1.5: the stage's 4 repeats
    become ceil(6) = 6, allocated from the last string: round(3/4 x 6) = 4, then 2."""
    arch_def = [["ds_r1_k3_s1_c16"], ["ir_r1_k5_s2_e6_c40", "ir_r3_k3_s1_e3_c40"]]
    genome = from_timm(arch_def, depth_multiplier=1.5)
    assert [(s.num_layers, s.stride, s.kernel_size, s.expand_ratio) for s in genome.stages] == [
        (2, 1, 3, 1), (2, 2, 5, 6), (4, 1, 3, 3)]
    rounded = from_timm(arch_def, depth_multiplier=1.2, depth_trunc="round")
    assert [s.num_layers for s in rounded.stages] == [1, 1, 4]  # round(1.2) = 1, round(4.8) = 5
    # timm's own first stage says 'noskip': harmless for one block (32 -> 16 channels), but a
    # second block loses the residual it would have had: the genome's skip_op "none".
    timm_stage = [["ds_r1_k3_s1_c16_noskip"], *arch_def[1:]]
    assert from_timm(timm_stage).stages[0].num_layers == 1
    deeper = from_timm(timm_stage, depth_multiplier=1.5)
    assert (deeper.stages[0].num_layers, deeper.stages[0].skip_op) == (2, "none")
    assert not any(spec.residual for spec in resolve_blocks(deeper) if spec.stage_index == 0)


def test_stage_string_writes_fractions_exactly_and_reads_back():
    stage = Stage(kernel_size=5, expand_ratio=4.5, se_ratio=0.125, num_layers=2, out_channels=40,
                  stride=1)
    assert stage_string(stage) == "ir_r2_k5_s1_e4.5_c40_se0.125"
    genome = Genome(stages=(stage,), stem_channels=32)
    assert to_timm(genome).to_genome() == genome


@pytest.mark.parametrize("arch_def, message", [
    ([["cn_r1_k3_s1_e1_c16_skip"]], "block type 'cn'"),
    ([["er_r2_k3_s2_c24"]], "'e' is missing \\('er' blocks need it\\)"),
    ([["er_r2_k3_s2_e4_c24_skip"]], "'skip' has no effect on 'er' blocks"),
    ([["xx_r1_k3_s1_c16"]], "unknown block type 'xx'"),
    ([["ir_r2_k3_s2_e1_c24"]], "write it as a 'ds' block"),
    ([["ds_r1_k3_s1_e6_c16"]], "has no effect on a 'ds' block"),
    ([["ir_r2_k3.5_s2_e6_c24"]], "mixed kernels"),
    ([["ir_r2_k3_s2_e6_c24_gs8"]], "'gs8'"),
    ([["ir_r2_k3_s2_e6_c24_cc4"]], "CondConv"),
    ([["ir_r2_k3_a3_s2_e6_c24"]], "'a3'"),
    ([["ir_r2_k3_s2_e6_c24_nhs"]], "hard-swish"),
    ([["ir_r2_k3_s2_e6_c24_nre"]], "a relu block in a silu network"),
    ([["ir_r2_k3_s2_c24"]], "'e' is missing"),
    ([["ir_k3_s2_e6_c24"]], "'r' is missing"),
    ([["ir_r2_r3_k3_s2_e6_c24"]], "appears twice"),
    ([["ir_r2_k3_s3_e6_c24"]], "'s3'"),
    ([["ir_r2_k4_s2_e6_c24"]], "odd integer"),
    ([["ir_r2_k3_s2_e6_c24_foo"]], "unknown option 'foo'"),
    ([["ir_r1_k3_s2_e6_c24", "ir_r1_k3_s2_e6_c24"]], "only a stage's first block strides"),
    ([["ir_r2_k3_s2_e6_c24_se0.15"]], "squeeze width is 5, the genome's"),
    ([], "non-empty list of stages"),
    ([[]], "non-empty list of block strings"),
    ("ir_r2_k3_s2_e6_c24", "non-empty list of stages"),
])
def test_strings_a_genome_cannot_hold_are_refused_by_name(arch_def, message):
    with pytest.raises(TimmFormatError, match=message) as caught:
        from_timm(arch_def)
    assert isinstance(caught.value, NasError)


def test_genomes_timm_cannot_express_are_refused_with_the_reason():
    b0 = presets.get("efficientnet-b0")
    odd_width = dataclasses.replace(b0, stages=(dataclasses.replace(b0.stages[0], out_channels=20),
                                                *b0.stages[1:]))
    with pytest.raises(TimmFormatError, match=r"stage 1 out_channels: timm builds 24, the genome "
                                              r"has 20 \(timm rounds every width to a multiple"):
        to_timm(odd_width)
    odd_stem = dataclasses.replace(b0, stem_channels=36)
    with pytest.raises(TimmFormatError, match="stem_channels: timm builds 40"):
        to_timm(odd_stem)
    odd_se = dataclasses.replace(b0, stages=(b0.stages[0], dataclasses.replace(b0.stages[1],
                                                                              se_ratio=0.15),
                                             *b0.stages[2:]))
    with pytest.raises(TimmFormatError, match=r"arch_def\[1\]\[0\] 'ir_r2_k3_s2_e6_c24_se0.15': "
                                              r"in block 3 \(24 channels in\) timm's squeeze "
                                              r"width is 4, the genome's max\(1, int\(24 x "
                                              r"0.15\)\) is 3"):
        to_timm(odd_se)


def test_file_form_is_strict():
    with pytest.raises(TimmFormatError, match="unknown key 'colour'"):
        TimmArch.from_dict({"arch_def": TIMM_EFFICIENTNET_B0, "colour": "red"})
    with pytest.raises(TimmFormatError, match="needs 'arch_def'"):
        TimmArch.from_dict({"stem_size": 32})
    with pytest.raises(TimmFormatError, match="act_layer = 'gelu'"):
        TimmArch(arch_def=TIMM_EFFICIENTNET_B0, act_layer="gelu")
    with pytest.raises(TimmFormatError, match="channel_multiplier = 0"):
        TimmArch(arch_def=TIMM_EFFICIENTNET_B0, channel_multiplier=0)


def test_python_code_builds_with_timms_own_calls():
    arch = to_timm(scale(presets.get("efficientnet-b0"), phi=3, method="official"),
                   base=presets.get("efficientnet-b0"), channel_multiplier=1.2,
                   depth_multiplier=1.4)
    code = arch.python_code(num_classes=10, in_chans=1)
    compile(code, "<timm>", "exec")  # valid Python; building it needs timm installed
    assert "partial(round_channels, multiplier=1.2)" in code
    assert "decode_arch_def(arch_def, depth_multiplier=1.4, depth_trunc='ceil')" in code
    assert "stem_size=32, num_features=round_chs_fn(1280)" in code
    assert "num_classes=10, in_chans=1" in code
    # stage comments in timm's style, at the genome's 300 px
    assert "    # stage 0, 150x150 in\n    ['ds_r1_k3_s1_e1_c16_se0.25']," in code
    assert "    # stage 6, 10x10 in\n    ['ir_r1_k3_s1_e6_c320_se0.25']," in code


# timm (the library) does not install next to this CPU torch: its layers import torchvision,
# whose compiled operators need a matching torch build. So the strings are checked against
# timm's documented grammar and block definitions instead, restated here independently
# (timm/models/_efficientnet_builder.py: _decode_block_str, round_channels;
# timm/models/_efficientnet_blocks.py: DepthwiseSeparableConv, InvertedResidual,
# EdgeResidual, SqueezeExcite): the network timm would build must have the genome's
# parameter count and residual blocks.
_TIMM_STRING = re.compile(r"^(ds|ir|er)(_(r\d+|k\d+|s[12]|e\d+(\.\d+)?|c\d+|se0\.\d+|noskip))+$")


def _timm_make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _timm_block(kind: str, options: dict, noskip: bool, in_chs: int, stride: int):
    """(parameters, has_skip, out_chs) of one timm block of a string's options."""
    out, k, e, se = int(options["c"]), int(options["k"]), float(options.get("e", 1)), \
        float(options.get("se", 0))

    def bn(channels: int) -> int:  # weight and bias
        return 2 * channels

    if kind == "ds":
        mid, params = in_chs, k * k * in_chs + bn(in_chs)
        se_width = round(in_chs * se)
    else:
        mid = _timm_make_divisible(in_chs * e)
        if kind == "ir":
            params = in_chs * mid + bn(mid) + k * k * mid + bn(mid)
        else:  # EdgeResidual: conv_exp is a full k x k convolution, no depthwise
            params = k * k * in_chs * mid + bn(mid)
        se_width = round(mid * se / e)  # the builder divides se by e (se_from_exp=False)
    if se:
        params += mid * se_width + se_width + se_width * mid + mid
    params += mid * out + bn(out)
    return params, stride == 1 and in_chs == out and not noskip, out


def _timm_network(arch: TimmArch, num_classes: int = 1000, in_chans: int = 3):
    """(parameters, residual blocks) of timm's EfficientNet from ``arch`` at multipliers 1."""
    assert (arch.channel_multiplier, arch.depth_multiplier) == (1.0, 1.0)
    stem = _timm_make_divisible(arch.stem_size)
    params, residual, in_chs = 9 * in_chans * stem + 2 * stem, 0, stem
    for stage in arch.arch_def:
        for text in stage:
            assert _TIMM_STRING.match(text), text
            kind, *tokens = text.split("_")
            options = {re.match(r"[a-z]+", t).group(): re.sub(r"^[a-z]+", "", t)
                       for t in tokens if t != "noskip"}
            for index in range(int(options["r"])):
                stride = int(options["s"]) if index == 0 else 1
                block, skip, in_chs = _timm_block(kind, options, "noskip" in tokens, in_chs,
                                                  stride)
                params, residual = params + block, residual + skip
    head = _timm_make_divisible(arch.num_features)
    params += in_chs * head + 2 * head + head * num_classes + num_classes
    return params, residual


@pytest.mark.parametrize("genome", [presets.get("efficientnet-b0"), presets.get("mnasnet-a1"),
                                    *random_genomes()], ids=lambda genome: genome.name)
def test_strings_follow_timms_grammar_and_build_the_genomes_parameters(genome):
    arch = to_timm(genome)
    params, residual = _timm_network(arch)
    assert params == sum(p.numel() for p in build(genome).parameters())
    assert residual == sum(spec.residual for spec in resolve_blocks(genome))


def test_fused_and_no_skip_stages_read_as_efficientnetv2_writes_them():
    # EfficientNetV2-S's fused stages (timm _gen_efficientnetv2_s), after a 24-channel stem
    genome = from_timm([["er_r2_k3_s2_e4_c48"], ["er_r4_k3_s2_e4_c64_noskip"],
                        ["ir_r6_k3_s2_e4_c128_se0.25"]], stem_size=24)
    assert [(s.conv_op, s.expand_ratio, s.skip_op) for s in genome.stages] == [
        ("fused", 4, "identity"), ("fused", 4, "none"), ("mbconv", 4, "identity")]
    assert [stage_string(s) for s in genome.stages] == [
        "er_r2_k3_s2_e4_c48", "er_r4_k3_s2_e4_c64_noskip", "ir_r6_k3_s2_e4_c128_se0.25"]
    single = from_timm([["er_r2_k3_s1_e1_c32"]])  # expand 1: a kxk conv at the input width
    assert single.stages[0].operator == "Fused-MBConv1"
    assert _timm_network(to_timm(genome))[0] == sum(p.numel() for p in build(genome).parameters())
