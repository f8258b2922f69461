import dataclasses
import json
import re

import pytest

from space import Genome, GenomeError, Stage, presets


def b0_dict():
    return presets.get("efficientnet-b0").to_dict()


def test_json_round_trip_is_identity():
    for name in presets.names():
        genome = presets.get(name)
        text = genome.to_json()
        assert json.loads(text)["version"] == 1
        assert Genome.from_json(text) == genome


def test_from_json_reads_a_file(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(presets.get("mnasnet-a1").to_json())
    assert Genome.from_json(path) == presets.get("mnasnet-a1")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["stages"][2].update(kernel_size=4), "stages[2].kernel_size"),
    (lambda d: d["stages"][2].update(kernel_size=1), "stages[2].kernel_size"),
    (lambda d: d["stages"][0].update(expand_ratio=0.5), "stages[0].expand_ratio"),
    (lambda d: d["stages"][1].update(se_ratio=1.0), "stages[1].se_ratio"),
    (lambda d: d["stages"][1].update(se_ratio=-0.1), "stages[1].se_ratio"),
    (lambda d: d["stages"][3].update(stride=3), "stages[3].stride"),
    (lambda d: d["stages"][3].update(out_channels=0), "stages[3].out_channels"),
    (lambda d: d["stages"][3].update(num_layers=0), "stages[3].num_layers"),
    (lambda d: d["stages"][3].update(num_layers="3"), "stages[3].num_layers"),
    (lambda d: d["stages"][3].update(num_layers=10**12), "stages[3].num_layers"),
    (lambda d: d["stages"][4].update(extra=1), "stages[4].extra"),
    (lambda d: d["stages"][4].pop("stride"), "stages[4].stride"),
    (lambda d: d.update(stem_channels=-8), "stem_channels"),
    (lambda d: d.update(head_channels=True), "head_channels"),
    (lambda d: d.update(dropout=1.5), "dropout"),
    (lambda d: d.update(resolution=10**9), "resolution"),
    (lambda d: d.update(activation="gelu"), "activation"),
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.update(stages=[]), "stages"),
    (lambda d: d.update(stages="many"), "stages"),
])
def test_invalid_field_is_named(mutate, field):
    data = b0_dict()
    mutate(data)
    with pytest.raises(GenomeError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Genome.from_dict(data)


def test_genome_error_is_a_value_error():
    with pytest.raises(ValueError):
        Stage(kernel_size=2, expand_ratio=6, se_ratio=0, num_layers=1, out_channels=8, stride=1)


def test_malformed_and_hostile_json():
    with pytest.raises(GenomeError, match="not valid JSON"):
        Genome.from_json("{not json")
    with pytest.raises(GenomeError, match="nested too deeply|not valid JSON"):
        Genome.from_json("[" * 100000 + "]" * 100000)
    with pytest.raises(GenomeError, match="JSON object"):
        Genome.from_json("[1, 2]")
    with pytest.raises(GenomeError, match="does not exist"):
        Genome.from_json("/nonexistent/genome.json")


def test_frozen_and_replace():
    genome = presets.get("efficientnet-b0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        genome.resolution = 300
    bigger = dataclasses.replace(genome, resolution=300)
    assert bigger.resolution == 300 and genome.resolution == 224
    assert bigger.key() != genome.key()
    assert dataclasses.replace(genome, name="other").key() == genome.key()


def test_operator_names_follow_the_papers():
    b0 = presets.get("efficientnet-b0")
    a1 = presets.get("mnasnet-a1")
    assert [s.operator for s in b0.stages] == ["MBConv1"] + ["MBConv6"] * 6
    assert a1.stages[0].operator == "SepConv"
    assert a1.stages[2].operator == "MBConv3"


def test_search_context_travels_in_the_json_but_is_not_architecture():
    from space import SearchContext

    b0 = presets.get("efficientnet-b0")
    assert "context" not in b0.to_dict()  # genomes without one keep their old JSON
    searched = dataclasses.replace(b0, context=SearchContext("fashion-mnist", 1, 10))
    again = Genome.from_json(searched.to_json())
    assert again.context == SearchContext("fashion-mnist", 1, 10)
    assert again == b0 and again.key() == b0.key()
    for context, message in [([1], "expected an object"),
                             ({"dataset": "x", "in_channels": 1}, "missing 'num_classes'"),
                             ({"dataset": "x", "in_channels": 1, "num_classes": 10, "y": 1},
                              "unknown 'y'"),
                             ({"dataset": "x", "in_channels": 0, "num_classes": 10},
                              "context.in_channels"),
                             ({"dataset": "x", "in_channels": 1, "num_classes": True},
                              "context.num_classes")]:
        with pytest.raises(GenomeError, match=re.escape(message)):
            Genome.from_dict({**b0.to_dict(), "context": context})
