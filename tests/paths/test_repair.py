"""REPAIR along paths: every BatchNorm channel's output mean and std on the calibration data
equal the interpolated ends' (exactly, float64), the ends are the end models' own, two copies
give a flat profile, REPAIR and recalibration differ exactly where they should, clear errors."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from torch import nn

import paths
from funcspace.evaluation import Settings, evaluate
from funcspace.models import CNN, MLP
from paths.profile import repair

BN = nn.modules.batchnorm._BatchNorm


def data(n: int = 80, shape: tuple[int, ...] = (6,), classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=g)


def stale(net: nn.Module, seed: int) -> nn.Module:
    """Random affine parameters and running statistics that are not the data's (as after
    training with momentum on other batches)."""
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, BN):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
                m.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
                    m.bias.copy_(0.5 * torch.randn(c, generator=g, dtype=torch.float64))
    return net.eval()


def mlp(seed: int, hidden=(12, 12)) -> nn.Module:
    return stale(MLP(6, list(hidden), 3, batchnorm=True, seed=seed).double(), seed)


def cnn(seed: int) -> nn.Module:
    net = CNN(1, 8, (4, 6), 3, (10,), 3, batchnorm=True, seed=seed)
    return stale(net.double(), seed)


def calibrated(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy whose running statistics are its own on ``x`` (one train-mode pass)."""
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, BN):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(x)
    return net.eval()


def bn_statistics(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """Each BatchNorm layer's output channel mean and (population) std on ``x``."""
    outputs = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, o, n=n: outputs.__setitem__(n, o))
        for n, m in model.named_modules()
        if isinstance(m, BN)
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    flat = {n: o.transpose(0, 1).reshape(o.shape[1], -1) for n, o in outputs.items()}
    return {n: (v.mean(1), v.std(1, unbiased=False)) for n, v in flat.items()}


def interpolated(a, b, t):
    return {n: tuple((1 - t) * u + t * v for u, v in zip(a[n], b[n], strict=True)) for n in a}


def assert_statistics(got, want, rtol=1e-9, atol=1e-10):
    assert got.keys() == want.keys() and got
    for name in want:
        for g, w in zip(got[name], want[name], strict=True):
            torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_every_channel_gets_the_interpolated_ends_statistics(family):
    a, b = (mlp(0), mlp(1)) if family == "mlp" else (cnn(0), cnn(1))
    shape = (6,) if family == "mlp" else (1, 8, 8)
    pair = data(shape=shape)
    before = copy.deepcopy(a.state_dict())
    path = paths.linear(a, b)
    for t in (0.3, 0.5):
        got = bn_statistics(repair(path, pair, t), pair[0])
        want = interpolated(bn_statistics(a, pair[0]), bn_statistics(b, pair[0]), t)
        assert_statistics(got, want)
    assert all(torch.equal(v, before[n]) for n, v in a.state_dict().items())  # untouched


def test_calibration_data_and_batches_are_those_of_recalibration():
    a, b = mlp(0), mlp(1)
    pair, (other, _) = data(), data(n=70, seed=3)
    settings = Settings(batch_size=16, recalibration_data=(other, torch.zeros(70).long()))
    mid = repair(paths.linear(a, b), pair, 0.4, settings=settings)
    want = interpolated(bn_statistics(a, other), bn_statistics(b, other), 0.4)
    assert_statistics(bn_statistics(mid, other), want)  # on the calibration data, in batches


def test_a_geodesic_is_repaired_in_its_own_coordinates():
    a, b = mlp(0, (8,)), mlp(1, (8,))
    pair = data()
    path = paths.geodesic(a, b, pair[0])
    ends = [bn_statistics(path.at(s), pair[0]) for s in (0.0, 1.0)]
    got = bn_statistics(repair(path, pair, 0.5), pair[0])
    assert_statistics(got, interpolated(*ends, 0.5))


def test_the_profiles_ends_are_the_end_models_own_values():
    a, b = mlp(0), mlp(1)
    pair = data()
    path = paths.linear(a, b)
    prof = paths.profile(path, pair, n=5, batchnorm="repair")
    assert prof.batchnorm == "repair" and "repair" in paths.BATCHNORM_MODES
    assert prof.values["loss"][0] == pytest.approx(evaluate(a, pair).loss[0], rel=1e-12)
    assert prof.values["loss"][-1] == pytest.approx(evaluate(b, pair).loss[0], rel=1e-12)
    with torch.no_grad():
        assert torch.equal(repair(path, pair, 0.0)(pair[0]), path.at(0.0)(pair[0]))
    found = paths.barrier(path, pair, "loss", resolution=1 / 8, batchnorm="repair")
    assert found.batchnorm == "repair" and found.ends[0] == prof.values["loss"][0]


def test_the_interior_points_are_the_repaired_networks():
    a, b = mlp(0), mlp(1)
    pair = data()
    path = paths.linear(a, b)
    ts = [0.25, 0.6]
    prof = paths.profile(path, pair, t=ts, batchnorm="repair")
    for k, t in enumerate(ts):
        assert prof.values["loss"][k] == pytest.approx(
            evaluate(repair(path, pair, t), pair).loss[0], rel=1e-10
        )


def test_between_two_copies_the_repaired_profile_is_flat_and_the_recalibrated_is_not():
    a = mlp(0)  # stale statistics: recalibrating them changes the function, REPAIR keeps it
    pair = data()
    path = paths.linear(a, copy.deepcopy(a))
    repaired = paths.profile(path, pair, n=5, batchnorm="repair").values["loss"]
    np.testing.assert_allclose(repaired, repaired[0], rtol=1e-10)
    recalibrated = paths.profile(path, pair, n=5, batchnorm="recalibrate").values["loss"]
    assert recalibrated[0] == repaired[0] and abs(recalibrated[2] - repaired[2]) > 1e-3


def test_repair_and_recalibration_agree_on_calibrated_ends_and_differ_on_stale_ones():
    # one BatchNorm layer: its input does not depend on any statistics, so with ends
    # calibrated on the data both normalize a channel to mean beta(t) (std |gamma(t)| up to
    # eps and the unbiased running variance); with stale ends REPAIR keeps the ends' shifts
    pair = data()
    x = pair[0]
    for ends_calibrated in (True, False):
        a, b = mlp(0, (12,)), mlp(1, (12,))
        if ends_calibrated:
            a, b = calibrated(a, x), calibrated(b, x)
        path = paths.linear(a, b)
        repaired, honest = repair(path, pair, 0.5), calibrated(path.at(0.5), x)
        got, want = bn_statistics(repaired, x)["layers.2"], bn_statistics(honest, x)["layers.2"]
        beta = path.at(0.5).layers[2].bias.detach()
        torch.testing.assert_close(want[0], beta, rtol=0, atol=1e-12)
        with torch.no_grad():
            apart = float((repaired(x) - honest(x)).abs().max())
        losses = {
            mode: paths.profile(path, pair, t=[0.5], batchnorm=mode).values["loss"][0]
            for mode in ("repair", "recalibrate")
        }
        if ends_calibrated:
            torch.testing.assert_close(got[0], beta, rtol=0, atol=1e-12)
            torch.testing.assert_close(got[1], want[1], rtol=1e-3, atol=0)
            assert apart < 1e-2
            assert losses["repair"] == pytest.approx(losses["recalibrate"], abs=1e-4)
        else:
            assert (got[0] - beta).abs().max() > 0.1 and apart > 0.1
            assert losses["repair"] != pytest.approx(losses["recalibrate"], abs=1e-4)


def test_channels_that_cannot_be_matched_keep_what_they_can(caplog):
    a, b = mlp(0, (12,)), mlp(1, (12,))
    with torch.no_grad():
        for net in (a, b):
            net.layers[2].weight[1] = 0.0  # gamma zero: the output is beta whatever the stats
        b.layers[1].weight[0] = -a.layers[1].weight[0]  # constant input to channel 0 at t=1/2
        b.layers[1].bias[0] = a.layers[1].bias[0]
    pair = data()
    with caplog.at_level(logging.INFO, logger="paths.profile"):
        mid = repair(paths.linear(a, b), pair, 0.5)
    assert "2 of 12 channels" in caplog.text
    got = bn_statistics(mid, pair[0])["layers.2"]
    want = interpolated(bn_statistics(a, pair[0]), bn_statistics(b, pair[0]), 0.5)["layers.2"]
    torch.testing.assert_close(got[0], want[0], rtol=1e-9, atol=1e-10)  # every mean
    torch.testing.assert_close(got[1][1:], want[1][1:], rtol=1e-9, atol=1e-10)
    assert got[1][0] == 0 and want[1][0] > 0.1  # no statistics give a constant a spread


def test_batchnorm_without_affine_parameters():
    def net(seed):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            layers = [nn.Linear(6, 8), nn.BatchNorm1d(8, affine=False), nn.Linear(8, 3)]
            return stale(nn.Sequential(*layers).double(), seed)

    a, b = net(0), net(1)
    pair = data()
    got = bn_statistics(repair(paths.linear(a, b), pair, 0.7), pair[0])
    assert_statistics(got, interpolated(bn_statistics(a, pair[0]), bn_statistics(b, pair[0]), 0.7))


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 6)
        self.norm = nn.BatchNorm1d(6)

    def forward(self, x):
        return self.norm(self.linear(self.norm(x)))


def test_clear_errors():
    a, b = mlp(0), mlp(1)
    pair = data()
    path = paths.linear(a, b)
    with pytest.raises(paths.PathError, match="batchnorm must be one of"):
        paths.profile(path, pair, batchnorm="REPAIR")
    with pytest.raises(paths.PathError, match=r"\[0, 1\]"):
        repair(path, pair, 1.5)
    with pytest.raises(paths.PathError, match="t must be a number"):
        repair(path, pair, [0.5])
    with pytest.raises(paths.PathError, match="settings must be"):
        repair(path, pair, 0.5, settings={"batch_size": 4})
    free = [nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=False))]
    free.append(copy.deepcopy(free[0]))
    with pytest.raises(paths.PathError, match="track_running_stats"):
        repair(paths.linear(*free), pair, 0.5)
    twice = [Twice().double().eval(), Twice().double().eval()]
    with pytest.raises(paths.PathError, match="more than once"):
        paths.profile(paths.linear(*twice), pair, t=[0.5], batchnorm="repair")


def test_a_network_without_batchnorm_has_nothing_to_repair():
    a, b = MLP(6, [8], 3, seed=0).double(), MLP(6, [8], 3, seed=1).double()
    pair = data()
    path = paths.linear(a, b)
    prof = paths.profile(path, pair, n=4, batchnorm="repair")
    assert prof.batchnorm == "none"
    np.testing.assert_array_equal(
        prof.values["loss"], paths.profile(path, pair, n=4).values["loss"]
    )
    with torch.no_grad():
        assert torch.equal(repair(path, pair, 0.5)(pair[0]), path.at(0.5)(pair[0]))
