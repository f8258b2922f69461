"""The analytic cost must equal what torch builds and counts, exactly."""

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from space import SearchSpace, build, cost, graph, presets


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
