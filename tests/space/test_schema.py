"""The genome schema: one declaration per stage field, and what is derived from it."""

import dataclasses
import json

import pytest

from space import Genome, GenomeError, SearchSpace, Stage, presets, units
from space.model import unit_module
from space.schema import STAGE_FIELDS, first_mismatch, exactly
from space.stage_table import STAGE_COLUMNS, stage_rows, stage_table


def _with(genome, index, **fields):
    stages = list(genome.stages)
    stages[index] = dataclasses.replace(stages[index], **fields)
    return dataclasses.replace(genome, stages=tuple(stages))


def test_stage_is_made_from_the_schema():
    assert [f.name for f in dataclasses.fields(Stage)] == [f.name for f in STAGE_FIELDS]
    stage = Stage(3, 6, 0.25, 2, 24, 2)  # positional order of genome version 1
    assert (stage.conv_op, stage.skip_op) == ("mbconv", "identity")
    with pytest.raises(GenomeError, match=r"'stage.conv_op' = 'sep': expected one of "
                                          r"'mbconv', 'fused'"):
        Stage(3, 6, 0.25, 2, 24, 2, conv_op="sep")


def test_old_genome_json_reads_with_todays_meaning_and_writes_unchanged():
    b0 = presets.get("efficientnet-b0")
    text = b0.to_json()
    assert "conv_op" not in text and "skip_op" not in text  # defaults are not written
    assert Genome.from_json(text) == b0
    data = json.loads(text)
    data["stages"][1].update(conv_op="fused", skip_op="none")
    fused = Genome.from_dict(data)
    assert (fused.stages[1].conv_op, fused.stages[1].skip_op) == ("fused", "none")
    assert Genome.from_json(fused.to_json()) == fused and fused.key() != b0.key()
    data["stages"][2]["skip_op"] = "pool"
    with pytest.raises(GenomeError, match=r"stages\[2\].skip_op"):
        Genome.from_dict(data)


def test_a_skip_op_that_removes_no_residual_keeps_the_key():
    # stage 1 of B0 is one block from 32 to 16 channels: there is no residual to remove
    b0 = presets.get("efficientnet-b0")
    assert _with(b0, 0, skip_op="none").key() == b0.key()
    assert _with(b0, 1, skip_op="none").key() != b0.key()  # its second block has one


def test_latency_unit_keys_of_old_genomes_are_unchanged_and_new_choices_are_tagged():
    b0 = presets.get("efficientnet-b0")
    assert units(b0, 32, 10, 1)[2].key == "block-i16-o24-x96-k3-s2-se4-16px-silu"
    new = units(_with(b0, 1, conv_op="fused", skip_op="none"), 32, 10, 1)
    assert [unit.key for unit in new[2:4]] == [
        "block-i16-o24-x96-k3-s2-se4-16px-silu-fused",   # strides: no residual to remove
        "block-i24-o24-x144-k3-s1-se6-8px-silu-fused-noskip"]
    # the unit's module is the block the network builds
    module = unit_module(new[3])
    assert sum(p.numel() for p in module.parameters()) == (
        24 * 144 * 9 + 2 * 144 + (144 * 6 + 6) + (6 * 144 + 144) + 144 * 24 + 2 * 24)
    assert not module.spec.residual


def test_one_stage_numbering_stem_1_to_n_head():
    genome = _with(presets.get("mnasnet-a1"), 2, conv_op="fused")
    headers, rows = stage_table(genome, 224)
    assert headers == STAGE_COLUMNS == ("stage", "operator", "SE", "layers", "channels",
                                        "stride", "skip", "resolution")
    assert [row[0] for row in rows] == ["stem", "1", "2", "3", "4", "5", "6", "7", "head"]
    assert rows[1] == ("1", "SepConv, k3x3", "0", "1", "16", "1", "none", "112\u00d7112")
    assert rows[3][:2] == ("3", "Fused-MBConv3, k5x5")
    assert stage_rows(genome, 224)[-1]["resolution"] == 7


def test_containment_and_difference_are_one_comparison():
    space = SearchSpace.default()
    b0 = presets.get("efficientnet-b0")
    odd = _with(b0, 3, kernel_size=7)
    assert space.why_not_contained(odd) == "stage 4 kernel_size 7 not in [3, 5]"
    assert first_mismatch(odd, exactly(b0)).label == "stage 4 kernel_size"
    assert space.why_not_contained(_with(b0, 3, stride=1)) == "stage 4 stride 1, the space has 2"
    from nas.export import architecture_difference
    assert architecture_difference(b0, _with(b0, 5, conv_op="fused")) == (
        "stage 6 conv_op 'fused' vs 'mbconv'")
    assert architecture_difference(b0, dataclasses.replace(b0, dropout=0.5)) is None
    assert architecture_difference(b0, dataclasses.replace(b0, stages=b0.stages[:6])) == (
        "number of stages 6 vs 7")


def test_space_files_without_the_new_choices_keep_todays_meaning(tmp_path):
    from space.search_space import MBCONV_SPACE_PATH
    old = SearchSpace.from_file(MBCONV_SPACE_PATH)
    assert all(c.conv_op == ("mbconv",) and c.skip_op == ("identity",) for c in old.stages)
    text = MBCONV_SPACE_PATH.read_text().replace("[choices]", '[choices]\nconv_op = ["sep"]')
    (tmp_path / "bad.toml").write_text(text)
    from space import SpaceError
    with pytest.raises(SpaceError, match=r"stages\[0\].conv_op includes 'sep'"):
        SearchSpace.from_file(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").write_text(text.replace('["sep"]', '"fused"'))
    with pytest.raises(SpaceError, match="conv_op must be a non-empty list of at most 64 "
                                         "strings"):
        SearchSpace.from_file(tmp_path / "bad.toml")
