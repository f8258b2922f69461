"""The published EfficientNet table applied to the B0 preset reproduces torchvision and
the paper (golden numbers in efficientnet_official.json)."""

import json
from pathlib import Path

import pytest

from scaling import ScalingError, family, scale
from space import build, presets

GOLDEN = json.loads((Path(__file__).with_name("efficientnet_official.json")).read_text())["members"]
B0 = presets.get("efficientnet-b0")


@pytest.fixture(scope="module")
def members():
    return family(B0, range(8), "official")


def test_parameter_counts_equal_torchvision_exactly(members):
    assert [m.cost.params for m in members] == [row["params"] for row in GOLDEN]
    assert [m.name for m in members] == [row["name"] for row in GOLDEN]
    assert [m.resolution for m in members] == [row["resolution"] for row in GOLDEN]
    assert [m.genome.dropout for m in members] == [row["dropout"] for row in GOLDEN]


@pytest.mark.parametrize("phi", [0, 2, 4])
def test_built_torch_model_has_the_golden_count(members, phi):
    model = build(members[phi].genome)
    assert sum(p.numel() for p in model.parameters()) == GOLDEN[phi]["params"]


def test_multiply_adds_within_5_percent_of_the_paper(members):
    for member, row in zip(members, GOLDEN):
        paper = row["paper_multiply_adds_billion"] * 1e9
        assert abs(member.cost.flops / paper - 1) < 0.05, (member.name, member.cost.flops)
    assert members[0].cost.flops == 385_814_752


def test_official_structure_of_b7():
    b7 = scale(B0, 7, "official")
    # width 2.0: every channel count doubles (all are multiples of 8 already); depth 3.1
    assert b7.stem_channels == 64 and b7.head_channels == 2560
    assert [s.out_channels for s in b7.stages] == [32, 48, 80, 160, 224, 384, 640]
    assert [s.num_layers for s in b7.stages] == [4, 7, 7, 10, 10, 13, 4]
    assert b7.resolution_multiplier == pytest.approx(600 / 224)


def test_official_table_stops_at_b7():
    with pytest.raises(ScalingError, match="B0..B7"):
        family(B0, [0, 8], "official")
    with pytest.raises(ScalingError, match="integer"):
        scale(B0, 1.5, "official")
