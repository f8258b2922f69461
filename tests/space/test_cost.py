"""The analytic cost must equal what torch builds and counts, exactly."""

import dataclasses
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from space import SearchSpace, build, cost, graph, presets
from space.search_space import MBCONV_SPACE_PATH


def torch_counts(genome, resolution, num_classes, in_channels):
    # The meta device counts shapes without computing, so many genomes stay cheap.
    with torch.device("meta"):
        model = build(genome, num_classes=num_classes, in_channels=in_channels).eval()
        image = torch.empty(1, in_channels, resolution, resolution)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model(image)
    return params, counter.get_total_flops()


def test_efficientnet_b0_matches_torchvision_and_paper():
    genome = presets.get("efficientnet-b0")
    total = cost(genome)
    assert total.params == 5_288_548  # torchvision efficientnet_b0
    assert total.flops == 385_814_752  # paper: 0.39 B multiply-adds at 224
    assert round(total.flops / 1e9, 2) == 0.39
    assert torch_counts(genome, 224, 1000, 3) == (total.params, 2 * total.flops)


def test_mnasnet_a1_matches_paper():
    total = cost(presets.get("mnasnet-a1"))
    assert round(total.params / 1e6, 1) == 3.9  # paper: 3.9 M
    assert round(total.flops / 1e6) == 312  # paper: 312 M multiply-adds
    assert total.params == 3_887_038


def test_random_genomes_match_torch_exactly():
    # 6 genomes per setting keep this near 12 s on 2 cores; benchmarks/bench_cost.py
    # asserts the same equality for every genome it times.
    space = SearchSpace.default()
    rng = random.Random(2019)
    settings = [(32, 10, 1), (64, 100, 3), (224, 1000, 3), (97, 7, 2), (160, 10, 1)]
    for index in range(30):
        genome = space.random_genome(rng)
        resolution, classes, channels = settings[index % len(settings)]
        analytic = cost(genome, resolution, classes, channels)
        params, flop_count = torch_counts(genome, resolution, classes, channels)
        assert analytic.params == params, (index, genome.to_dict())
        assert 2 * analytic.flops == flop_count, (index, genome.to_dict())


def test_activations_are_conv_and_linear_outputs():
    genome = presets.get("efficientnet-b0")
    with torch.device("meta"):
        model = build(genome).eval()
    outputs = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(lambda m, i, o: outputs.append(o.numel()))
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert cost(genome).activations == sum(outputs)


def test_graph_has_shapes_in_data_flow_order():
    g = graph(presets.get("efficientnet-b0"), resolution=224)
    assert g.nodes["stem"]["out_shape"] == (32, 112, 112)
    assert g.nodes["head"]["out_shape"] == (1280, 7, 7)
    assert g.nodes["classifier"]["out_shape"] == (1000,)
    # residual blocks join two paths
    assert g.in_degree("blocks.2.add") == 2
    import networkx as nx
    assert nx.is_directed_acyclic_graph(g)


def test_cost_scales_with_resolution_and_defaults_to_genome_resolution():
    genome = presets.get("efficientnet-b0")
    assert cost(genome) == cost(genome, 224)
    assert cost(genome, 448).flops > 3.9 * cost(genome, 224).flops
    with pytest.raises(ValueError):
        cost(genome, 0)


def _ops_space(tmp_path, conv_op, skip_op):
    """The space before the ops existed, with these ops on every stage (the default space
    fuses only the first three)."""
    text = MBCONV_SPACE_PATH.read_text().replace(
        "[choices]", f"[choices]\nconv_op = {conv_op}\nskip_op = {skip_op}")
    path = tmp_path / "ops.toml"
    path.write_text(text)
    return SearchSpace.from_file(path)


@pytest.mark.parametrize("conv_op, skip_op", [('["fused"]', '["identity", "none"]'),
                                              ('["mbconv", "fused"]', '["none"]')])
def test_random_genomes_with_fused_and_no_skip_blocks_match_torch_exactly(tmp_path, conv_op,
                                                                          skip_op):
    space = _ops_space(tmp_path, conv_op, skip_op)
    rng = random.Random(20)
    for index, (resolution, classes, channels) in enumerate([(32, 10, 1), (64, 100, 3),
                                                             (97, 7, 2)]):
        genome = space.random_genome(rng)
        assert {s.conv_op for s in genome.stages} <= {"mbconv", "fused"}
        analytic = cost(genome, resolution, classes, channels)
        assert torch_counts(genome, resolution, classes, channels) == (
            analytic.params, 2 * analytic.flops), (index, genome.to_dict())


def test_fused_block_is_one_regular_kxk_convolution_then_the_projection():
    b0 = presets.get("efficientnet-b0")
    fused = dataclasses.replace(b0, stages=(b0.stages[0], dataclasses.replace(
        b0.stages[1], conv_op="fused"), *b0.stages[2:]))
    layers = graph(fused)
    # block 1 (first of stage 2): 16 -> 96 channels by a 3x3 stride-2 conv, no depthwise
    node = layers.nodes["blocks.1.fused"]
    assert (node["groups"], node["kernel_size"], node["stride"]) == (1, 3, 2)
    assert node["params"] == 96 * 16 * 9 and node["out_shape"] == (96, 56, 56)
    assert "blocks.1.expand" not in layers and "blocks.1.depthwise" not in layers
    # per block the fused conv and its batch norm replace the expansion (16*96 weights)
    # and the depthwise conv (96*9), each with a batch norm of 2*96
    assert cost(fused).params - cost(b0).params == (
        96 * 16 * 9 - 16 * 96 - 96 * 9 - 2 * 96) + (144 * 24 * 9 - 24 * 144 - 144 * 9 - 2 * 144)
    # expand ratio 1: a kxk conv at the input width, then the projection (timm 'er_e1')
    first = dataclasses.replace(b0, stages=(dataclasses.replace(b0.stages[0], conv_op="fused"),
                                            *b0.stages[1:]))
    assert graph(first).nodes["blocks.0.fused"]["params"] == 32 * 32 * 9


def test_no_skip_removes_the_residual_add_and_nothing_else():
    b0 = presets.get("efficientnet-b0")
    plain = dataclasses.replace(b0, stages=tuple(dataclasses.replace(s, skip_op="none")
                                                 for s in b0.stages))
    adds = [name for name in graph(b0) if name.endswith(".add")]
    assert len(adds) == 9 and not [name for name in graph(plain) if name.endswith(".add")]
    assert cost(plain) == cost(b0)
    with torch.device("meta"):
        model = build(plain)
    assert not any(block.spec.residual for block in model.blocks)
