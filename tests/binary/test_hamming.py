"""Hamming paths: binary points one flip apart, their ends and length, greedy orders, barriers
through paths.profile / paths.barrier, and the binary single-bend path."""

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from torch import nn

from binary import binary_mlp, committee, export, fixed_weights, trainable
from binary.barriers import HammingBarriers, hamming_barriers
from binary.bend import HammingBentPath, hamming_bent, hamming_midpoint
from binary.distance import hamming_distance
from binary.errors import BinaryError
from binary.hamming import HammingPath, hamming_path
from canonicalize import Sign
from funcspace.evaluation import Settings, evaluate
from paths import barrier, profile
from tests.binary.test_symmetry import shuffled, wide
from tests.strategies import binary_mlps, group_seeds, randomize_batchnorm


def binary_vector(params: dict, names) -> torch.Tensor:
    """(K, N): the binary tensors of K stacked points, concatenated."""
    return torch.cat([params[n].reshape(len(params[n]), -1) for n in names], dim=1)


def perturbed(model: nn.Module, seed: int, flips: int) -> nn.Module:
    """A copy with ``flips`` random binary weights flipped (and shuffled units)."""
    g = torch.Generator().manual_seed(seed)
    other = copy.deepcopy(model)
    linears = [m for m in other.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for _ in range(flips):
            layer = linears[int(torch.randint(len(linears), (1,), generator=g))]
            i = int(torch.randint(layer.weight.numel(), (1,), generator=g))
            layer.weight.view(-1)[i] *= -1
    return other


def check_path(path: HammingPath, a: nn.Module, x: torch.Tensor) -> None:
    h = path.length
    ts = np.arange(h + 1) / h if h else np.array([0.0, 1.0])  # H = 0: only reals may move
    params = path.params(ts)
    points = binary_vector(params, path.names)
    assert bool((points.abs() == 1).all())  # every point binary
    steps = (points[1:] != points[:-1]).sum(dim=1)
    assert steps.tolist() == ([1] * h if h else [0])  # one weight per step
    start, end = a.state_dict(), path.aligned.state_dict()
    for name in params:
        assert torch.equal(params[name][0], start[name])
        assert torch.equal(params[name][-1], end[name])
    assert torch.equal(path.at(0.0)(x), a(x))
    assert torch.equal(path.at(1.0)(x), path.end(x))


@given(binary_mlps(batchnorm=False), group_seeds)
def test_random_paths_are_binary_geodesics(case, seed):
    b = perturbed(case.model, seed, flips=3)
    path = hamming_path(case.model, b, seed=seed, example_input=case.x)
    check_path(path, case.model, case.x)
    assert path.length == hamming_distance(case.model, b, case.x).count
    assert hamming_path(case.model, b, align=False).length <= 3


def test_a_path_to_a_shuffled_copy_by_hand():
    a, x = wide(bias=True)
    b = perturbed(shuffled(a, 2), 1, flips=7)
    path = hamming_path(a, b, seed=3, example_input=x)
    assert path.length == hamming_distance(a, b, x).count > 0
    assert hamming_distance(a, b, x, align=False).count > path.length  # alignment shortens it
    check_path(path, a, x)
    assert path.kind == "hamming" and not path.straight
    h = path.length
    assert path.steps([0.0, 0.49 / h, 0.5 / h, 1.0]).tolist() == [0, 0, 1, h]
    assert json.loads(json.dumps(path.to_dict()))["hamming_distance"] == h
    raw = hamming_path(a, b, align=False)
    assert raw.length == hamming_distance(a, b, align=False).count
    assert torch.equal(raw.params([1.0])["0.weight"][0], b[0].weight)


def test_orders_are_seeded():
    a, x = wide()
    b = perturbed(a, 0, flips=12)
    one, two = (hamming_path(a, b, seed=s, example_input=x) for s in (1, 2))
    assert torch.equal(one.flips, hamming_path(a, b, seed=1, example_input=x).flips)
    assert not torch.equal(one.flips, two.flips)
    assert sorted(one.flips.tolist()) == sorted(two.flips.tolist())


def test_real_parameters_move_with_the_fraction_of_flips():
    a, x = wide(bias=True)
    b = perturbed(a, 3, flips=4)
    with torch.no_grad():
        b[4].bias.add_(1.0)
    path = hamming_path(a, b, align=False)
    bias = path.params([0.0, 0.3, 0.5, 1.0])["4.bias"]
    assert torch.allclose(bias - a[4].bias, torch.tensor([0.0, 0.25, 0.5, 1.0])[:, None].double())


def test_profile_and_barrier_measure_it_like_any_path():
    a, x = wide(bias=True)
    b = perturbed(a, 5, flips=9)
    y = a(x).argmax(1)
    path = hamming_path(a, b, seed=0, example_input=x)
    ts = np.arange(path.length + 1) / path.length
    batched = profile(path, (x, y), t=ts)
    looped = evaluate([path.at(float(t)) for t in ts], (x, y), strategy="loop")
    assert np.allclose(batched.values["error"], looped.error, atol=1e-12)
    assert np.allclose(batched.values["loss"], looped.loss, atol=1e-9)
    assert batched.kind == "hamming" and batched.values["error"][0] == 0
    found = barrier(path, (x, y), resolution=1 / 16)
    assert found.kind == "hamming" and found.ends == (0.0, batched.values["error"][-1])
    assert found.peak <= batched.values["error"].max()


def test_greedy_takes_the_best_flip_at_every_step():
    a, x = wide()
    b = perturbed(a, 7, flips=6)
    data = (x, a(x).argmax(1))
    path = hamming_path(a, b, "greedy", data=data, seed=0)
    check_path(path, a, x)
    assert path.metric == "error" and len(path.values) == path.length
    # the recorded values are the profile at each step
    ts = np.arange(1, path.length + 1) / path.length
    measured = profile(path, data, t=ts, settings=Settings(metrics="error"))
    assert np.allclose(measured.values["error"], path.values)
    # the first step is the best single flip
    start = path.params([0.0])
    flat = binary_vector(start, path.names)[0]
    differing = path.flips
    best = []
    for i in differing.tolist():
        point = flat.clone()
        point[i] = -point[i]
        best.append(_error_at(path, point, data))
    assert path.values[0] == min(best)
    random = hamming_barriers(a, b, data, orders=4, example_input=x)
    greedy_peak = max(path.values)
    assert greedy_peak <= random.peak_mean


def _error_at(path: HammingPath, flat: torch.Tensor, data) -> float:
    model = copy.deepcopy(path.start)
    state = model.state_dict()
    offset = 0
    for name in path.names:
        n = state[name].numel()
        state[name] = flat[offset : offset + n].reshape(state[name].shape)
        offset += n
    model.load_state_dict(state)
    return float(evaluate(model, data, "error").error[0])


def test_greedy_with_few_candidates_and_a_sign_output():
    g = torch.Generator().manual_seed(0)
    a = nn.Sequential(nn.Linear(9, 5, bias=False), Sign(), nn.Linear(5, 1, bias=False), Sign())
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.randint(0, 2, p.shape, generator=g) * 2.0 - 1)
    b = perturbed(a, 2, flips=8)
    x = torch.randn(64, 9, generator=g)
    data = (x, a(x).flatten())
    path = hamming_path(a, b, "greedy", data=data, candidates=2, seed=4)
    assert path.metric == "sign_error"
    check_path(path, a, x)


def test_mean_barrier_over_random_orders():
    a, x = wide(bias=True)
    b = perturbed(a, 9, flips=10)
    data = (x, a(x).argmax(1))
    found = hamming_barriers(a, b, data, orders=3, seed=5, example_input=x)
    assert isinstance(found, HammingBarriers) and len(found.barriers) == 3
    assert found.mean == pytest.approx(found.heights.mean())
    assert found.std == pytest.approx(found.heights.std())
    assert found.peak_mean == pytest.approx(np.mean([f.peak for f in found.barriers]))
    assert found.distance == hamming_distance(a, b, x).count
    again = hamming_barriers(a, b, data, orders=3, seed=5, example_input=x)
    assert again.seeds == found.seeds and np.array_equal(again.heights, found.heights)
    assert json.loads(json.dumps(found.to_dict()))["distance"] == found.distance


def test_batchnorm_networks_get_interpolated_statistics():
    a = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), Sign(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in (a[0], a[3]):
            m.weight.copy_(torch.randint(0, 2, m.weight.shape, generator=g) * 2.0 - 1)
        a[1].running_mean.normal_(generator=g)
    a.eval()
    b = perturbed(a, 1, flips=5)
    with torch.no_grad():
        b[1].running_var.fill_(2.0)
    path = hamming_path(a, b, align=False)
    var = path.buffers([0.0, 0.5, 1.0])["1.running_var"][:, 0]
    s = float(path.steps([0.5])[0]) / path.length
    assert var.tolist() == [1.0, 1.0 + s, 2.0]
    x = torch.randn(32, 5, dtype=torch.float64, generator=g)
    result = profile(path, (x, a(x).argmax(1)), n=5, batchnorm="interpolate")
    assert result.batchnorm == "interpolate"


def test_the_ends_of_a_batchnorm_network_s_path_are_exact():
    """Real-valued parameters at t = 1 are the end's, not ``origin + 1 * direction`` (which
    rounds: a float step away from ``b``'s value)."""
    g = torch.Generator().manual_seed(0)
    a, b = (export(binary_mlp(12, (6, 5), 3, seed=s)) for s in (1, 2))
    for net in (a, b):
        randomize_batchnorm(net, g)
        net.eval()
    x = torch.randn(32, 12, generator=g)
    path = hamming_path(a, b, example_input=x)
    origin, end = a.state_dict(), path.aligned.state_dict()
    rounded = [n for n in path.origin if not torch.equal(origin[n] + (end[n] - origin[n]), end[n])]
    assert rounded  # the naive end misses b's values here
    for t, ends in ((0.0, origin), (1.0, end)):
        params = path.params([t])
        assert all(torch.equal(params[n][0], ends[n]) for n in params)
        reached = path.at(t).state_dict()
        assert all(torch.equal(reached[n], ends[n]) for n in ends)
    assert torch.equal(path.at(1.0)(x), b(x))


@pytest.mark.parametrize("output", ["sum", "majority"])
def test_paths_and_midpoints_of_committees_keep_their_fixed_layers(output):
    """Alignment only permutes a committee's hidden units, so every point between two
    committees is a committee: the vote and readout of its ends."""
    a, b = (export(committee(15, 5, output=output, seed=s)) for s in (1, 2))
    x = torch.randn(32, 15, generator=torch.Generator().manual_seed(0))
    fixed = {n: a.state_dict()[n] for n in fixed_weights(a)}
    path = hamming_path(a, b, example_input=x)
    assert path.names == ("1.weight",)
    assert path.length == hamming_distance(a, b, x).count
    params = path.params(np.arange(path.length + 1) / path.length)
    assert all(bool((params[n] == v).all()) for n, v in fixed.items())
    assert torch.equal(path.at(1.0)(x), b(x))
    template = committee(15, 5, output=output, seed=0)
    for seed in range(4):
        mid = hamming_midpoint(a, b, seed=seed, example_input=x)
        assert fixed_weights(mid) == tuple(fixed)
        assert all(torch.equal(mid.state_dict()[n], v) for n, v in fixed.items())
        assert torch.equal(export(trainable(mid, template)).state_dict()["1.weight"], mid[1].weight)
    bent = hamming_bent(a, None, b, example_input=x, seed=1)
    assert fixed_weights(bent.bend) == tuple(fixed)
    assert all(torch.equal(bent.bend.state_dict()[n], v) for n, v in fixed.items())
    assert torch.equal(bent.at(1.0)(x), b(x))


def test_single_bend_path():
    a, x = wide()
    b = perturbed(a, 11, flips=10)
    calls = []

    def train(mid):
        calls.append(mid)
        return mid

    path = hamming_bent(a, None, b, train=train, example_input=x, seed=2)
    assert isinstance(path, HammingBentPath) and len(calls) == 1
    assert path.length == path.first.length + path.second.length
    check_path(path.first, a, x)
    assert torch.equal(
        path.params([1.0])["4.weight"][0], path.second.aligned.state_dict()["4.weight"]
    )
    mid = path.params([0.5])
    for name, value in path.bend.state_dict().items():
        assert torch.equal(mid[name][0], value)
    assert torch.equal(path.at(1.0)(x), b(x))
    middle = hamming_midpoint(a, b, example_input=x, seed=2)
    h = hamming_distance(a, b, x).count
    assert hamming_distance(a, middle, align=False).count == h // 2
    with pytest.raises(BinaryError, match="trained bend"):
        hamming_bent(a, None, b, train=lambda m: nn.Linear(3, 3), example_input=x)


def test_bad_input():
    a, x = wide()
    with pytest.raises(BinaryError, match="order must be"):
        hamming_path(a, a, "shortest")
    with pytest.raises(BinaryError, match="needs data"):
        hamming_path(a, a, "greedy")
    with pytest.raises(BinaryError, match="candidates"):
        hamming_path(a, a, "greedy", data=(x, torch.zeros(32, dtype=torch.long)), candidates=0)
    with pytest.raises(BinaryError, match="orders"):
        hamming_barriers(a, a, (x, torch.zeros(32, dtype=torch.long)), orders=0)
    real = copy.deepcopy(a)
    with torch.no_grad():
        real[4].weight[0, 0] = 0.1
    with pytest.raises(BinaryError, match=r"'4\.weight' \(\w+\) is not binary"):
        hamming_path(a, real)
