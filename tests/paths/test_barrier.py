"""Barriers: the adaptive search finds the grid's maximum (hypothesis over random profiles),
a real path's barrier equals the dense profile's, definitions relate as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import paths
from funcspace.models import MLP


def bumps(centers, widths, heights, trend):
    def g(t):
        t = np.asarray(t, dtype=np.float64)[:, None]
        c, w, a = (np.asarray(v)[None, :] for v in (centers, widths, heights))
        return (a * np.exp(-(((t - c) / w) ** 2))).sum(1) + trend * t[:, 0]

    return g


profiles = st.integers(1, 4).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(0, 1), min_size=k, max_size=k),
        st.lists(st.floats(1 / 16, 1 / 3), min_size=k, max_size=k),
        st.lists(st.floats(-2, 2), min_size=k, max_size=k),
        st.floats(-1, 1),
    )
)


@given(profiles)
def test_adaptive_max_finds_the_grids_maximum_on_profiles_wider_than_its_coarse_grid(spec):
    g = bumps(*spec)
    found, bound = paths.adaptive_max(g, 1 / 256)
    dense = g(np.arange(257) / 256)
    assert max(found.values()) == pytest.approx(dense.max(), abs=1e-12)
    assert bound >= dense.max() - 1e-12
    assert all(found[k] == pytest.approx(dense[k], abs=1e-12) for k in found)


def test_adaptive_max_evaluates_a_fraction_of_the_grid_on_a_single_peak():
    found, bound = paths.adaptive_max(bumps([0.37], [0.1], [1.0], 0.0), 1 / 256)
    assert max(found, key=found.get) == round(0.37 * 256)
    assert len(found) < 257 / 4 and bound == pytest.approx(max(found.values()), rel=0.05)


def test_a_real_paths_barrier_equals_the_dense_profiles():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    a, b = MLP(6, [16], 3, seed=0).double(), MLP(6, [16], 3, seed=1).double()
    path = paths.linear(a, b)
    found = paths.barrier(path, (x, y), "loss", resolution=1 / 64)
    grid = np.arange(65) / 64
    dense = paths.profile(path, (x, y), t=grid).values["loss"]
    chord = (1 - grid) * dense[0] + grid * dense[-1]
    assert found.height == pytest.approx((dense - chord).max(), rel=1e-10)
    assert found.t == grid[np.argmax(dense - chord)]
    assert found.ends == pytest.approx((dense[0], dense[-1]))
    assert found.above_mean == pytest.approx(found.peak - (dense[0] + dense[-1]) / 2)
    assert found.evaluations <= 65 and found.resolution == 1 / 64
    assert set(found.to_dict()) >= {"height", "t", "peak", "above_mean", "evaluations"}


def test_the_barrier_between_two_copies_is_zero_and_bad_resolutions_are_refused():
    a = MLP(6, [8], 3, seed=0).double()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=g)
    flat = paths.barrier(paths.linear(a, MLP(6, [8], 3, seed=0).double()), (x, y))
    assert flat.height == 0.0 and flat.peak == flat.ends[0]
    assert flat.evaluations == 33  # the coarse grid: a flat profile leaves nothing to refine
    with pytest.raises(paths.PathError, match="power of one half"):
        paths.barrier(paths.linear(a, a), (x, y), resolution=0.3)
