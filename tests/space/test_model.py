import random

import pytest
import torch

from space import SearchSpace, build, presets


def genomes():
    rng = random.Random(7)
    space = SearchSpace.default()
    return [presets.get("efficientnet-b0"), presets.get("mnasnet-a1")] + [
        space.random_genome(rng) for _ in range(3)]


@pytest.mark.parametrize("index", range(5))
def test_forward_and_backward_at_32px_grey(index):
    torch.manual_seed(0)
    model = build(genomes()[index], num_classes=10, in_channels=1).train()
    out = model(torch.randn(4, 1, 32, 32))
    assert out.shape == (4, 10)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["efficientnet-b0", "mnasnet-a1"])
def test_forward_and_backward_at_224px_rgb(name):
    torch.manual_seed(0)
    model = build(presets.get(name)).train()
    out = model(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1000)
    out.sum().backward()
    assert model.stem[0].weight.grad.abs().sum() > 0


def test_drop_connect_only_in_training():
    torch.manual_seed(0)
    model = build(presets.get("efficientnet-b0"), num_classes=10, in_channels=1)
    x = torch.randn(2, 1, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    last = model.blocks[-2]  # a residual block with the largest drop probability
    assert last.spec.residual and last.spec.drop_connect > 0.15
