"""The batched evaluation of binary points with exact int8 products (``Settings.int8``):
Hamming-path profiles, local energy and committees give bit for bit the float results; what
cannot run in int8 (convolutions, the training model's latent weights, the first layer)
stays in float."""

import dataclasses

import numpy as np
import pytest
import torch

import funcspace.evaluation.int8 as core
from binary import (
    binary_cnn,
    binary_mlp,
    committee,
    export,
    hamming_barriers,
    hamming_path,
    local_energy,
)
from funcspace.evaluation import Settings, evaluate
from paths import profile
from tests.strategies import randomize_batchnorm

needs_int8 = pytest.mark.skipif(
    not core.int8_supported("cpu"), reason="torch._int_mm does not run on this CPU"
)


def mnist_like(d=24, n=300, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def mlp_pair(batchnorm=True, widths=(32, 31, 33)):
    """Two exported deep binary MLPs with random BatchNorm statistics and parameters."""
    nets = []
    for seed in (0, 1):
        net = export(binary_mlp(24, widths, 4, batchnorm=batchnorm, seed=seed))
        randomize_batchnorm(net, torch.Generator().manual_seed(seed))
        nets.append(net.eval())
    return nets


def same(a, b) -> bool:
    return a.values.keys() == b.values.keys() and all(np.array_equal(a[m], b[m]) for m in a.values)


def modes(settings: Settings) -> tuple[Settings, Settings]:
    return (
        dataclasses.replace(settings, int8="always"),
        dataclasses.replace(settings, int8="never"),
    )


@needs_int8
@pytest.mark.parametrize("batchnorm", ["interpolate", "recalibrate"])
@pytest.mark.parametrize("chunk", [None, 1, 4])
def test_hamming_profiles_of_deep_mlps_are_bit_exact(batchnorm, chunk, int8_calls):
    a, b = mlp_pair()
    data = mnist_like()
    t = np.linspace(0, 1, 17)
    fast, plain = modes(Settings(metrics=("error", "loss"), chunk=chunk, batch_size=128))
    for seed in (0, 1):
        path = hamming_path(a, b, seed=seed, align=False)
        got = profile(path, data, t=t, batchnorm=batchnorm, settings=fast)
        seen = len(int8_calls)
        want = profile(path, data, t=t, batchnorm=batchnorm, settings=plain)
        assert len(int8_calls) == seen  # "never" does not try
        for metric in ("error", "loss"):
            assert np.array_equal(got.values[metric], want.values[metric])
    assert int8_calls and all(int8_calls)  # every point of the path is binary: int8 everywhere


@needs_int8
def test_evaluated_layers_of_an_exported_mlp():
    a, _ = mlp_pair(batchnorm=False)
    fast = evaluate(a, mnist_like(), int8="always")
    # the first layer reads the data (float); the hidden and output layers read signs
    assert fast.strategy == "stacked" and fast.int8_layers == ("3", "5", "7")
    assert same(fast, evaluate(a, mnist_like(), int8="never"))


@needs_int8
def test_local_energy_of_a_deep_mlp_is_bit_exact(int8_calls):
    a, _ = mlp_pair()
    data = mnist_like()
    fast, plain = modes(Settings(metrics=("error",)))
    got = local_energy(a, data, fractions=(0.0, 0.05, 0.2), samples=6, seed=3, settings=fast)
    want = local_energy(a, data, fractions=(0.0, 0.05, 0.2), samples=6, seed=3, settings=plain)
    assert np.array_equal(got.perturbed["error"], want.perturbed["error"])
    assert got.base == want.base and int8_calls and all(int8_calls)


@needs_int8
@pytest.mark.parametrize("output", ["sum", "majority"])
def test_committee_barriers_are_bit_exact(output, int8_calls):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 45, generator=g)
    teacher = export(committee(45, 5, output=output, seed=9)).eval()
    y = teacher(x).argmax(1)
    a, b = (export(committee(45, 5, output=output, seed=s)).eval() for s in (1, 2))
    fast, plain = modes(Settings(metrics=("error",)))
    got = hamming_barriers(a, b, (x, y), orders=3, seed=0, align=False, settings=fast)
    want = hamming_barriers(a, b, (x, y), orders=3, seed=0, align=False, settings=plain)
    assert np.array_equal(got.heights, want.heights) and np.array_equal(got.peaks, want.peaks)
    for mine, theirs in zip(got.barriers, want.barriers, strict=True):
        assert np.array_equal(mine.profile_t, theirs.profile_t)
        assert np.array_equal(mine.profile_values, theirs.profile_values)
    assert int8_calls and all(int8_calls)
    # the vote (a +-1 layer reading the hidden signs) runs in int8; a sum's readout reads
    # integers, not signs, and stays in float
    layers = evaluate(a, (x, y), int8="always").int8_layers
    assert layers == (("3",) if output == "sum" else ("3", "5"))


@needs_int8
def test_tree_committees_and_cnns_stay_in_float(int8_calls):
    """Convolutions (a tree committee's grouped 1x1, a CNN's stages) are no chain: the
    generic strategies run them in float."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 15, generator=g), torch.randint(0, 2, (60,), generator=g)
    tree = [export(committee(15, 3, tree=True, seed=s)).eval() for s in (0, 1)]
    images = torch.randn(40, 1, 8, 8, generator=g)
    labels = torch.randint(0, 10, (40,), generator=g)
    cnn = [export(binary_cnn(1, 8, 10, channels=(4, 8), seed=s)).eval() for s in (0, 1)]
    for nets, data in ((tree, (x, y)), (cnn, (images, labels))):
        fast = evaluate(nets, data, int8="always")
        assert fast.strategy != "stacked" and fast.int8_layers == ()
        assert same(fast, evaluate(nets, data, int8="never"))
    assert not int8_calls


@needs_int8
def test_latent_real_weights_stay_in_float(int8_calls):
    """The training model (BinaryLinear, latent weights) is no plain chain, and its exported
    layers holding latent values fall back at run time: float either way, same numbers."""
    model = binary_mlp(24, (16, 15), 4, batchnorm=False, seed=0).eval()
    data = mnist_like()
    fast = evaluate(model, data, int8="always")
    assert fast.int8_layers == () and not int8_calls
    latent = export(model)
    with torch.no_grad():
        for name, module in latent.named_modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(getattr(model, name).weight)  # the latent values
    fast = evaluate(latent, data, int8="always")
    assert fast.int8_layers == () and int8_calls and not any(int8_calls)
    assert same(fast, evaluate(latent, data, int8="never"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("batchnorm", ["interpolate", "recalibrate"])
def test_cuda_hamming_profiles_are_bit_exact(batchnorm):
    a, b = (net.cuda() for net in mlp_pair(widths=(64, 40, 33)))
    x, y = mnist_like()
    data = (x.cuda(), y.cuda())
    t = np.linspace(0, 1, 33)
    path = hamming_path(a, b, seed=0, align=False)
    fast, plain = modes(Settings(metrics=("error", "loss")))
    got = profile(path, data, t=t, batchnorm=batchnorm, settings=fast)
    want = profile(path, data, t=t, batchnorm=batchnorm, settings=plain)
    for metric in ("error", "loss"):
        assert np.array_equal(got.values[metric], want.values[metric])
    assert evaluate(a, data, int8="always").int8_layers == ("4", "7", "10")
