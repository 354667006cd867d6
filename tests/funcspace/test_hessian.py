"""HessianOperator and its estimators against exact answers.

Every operator check compares with the exact Hessian of tiny float64 networks computed by
``torch.autograd.functional.hessian`` over one flat parameter vector; estimator checks use
matrices of known spectrum.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from funcspace.errors import FuncspaceError
from funcspace.flatness import hessian_eigenvalues, hessian_spectrum, hessian_trace
from funcspace.hessian import (
    HessianOperator,
    hutchinson_trace,
    hutchpp_trace,
    krylov_trace,
    lanczos,
    spectral_density,
)

N_EXAMPLES, BATCH = 23, 7  # four batches, the last one short


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tensors here are tiny: a second intra-op thread only adds waiting (badly so on a busy
    machine), so this module runs on one and gives the setting back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- tiny problems


def _mlp(activation: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 5), activation(), nn.Linear(5, 4), activation(), nn.Linear(4, 3)
    ).double()


def _conv(batchnorm: bool) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Conv2d(1, 2, 3)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(2))
    layers += [nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)]
    model = nn.Sequential(*layers).double()
    if batchnorm:  # non-trivial running statistics, then back to train mode
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(8, 1, 6, 6, dtype=torch.float64) * 2 + 0.5)
        model.train()
    return model


def _data(model_kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    shape = (N_EXAMPLES, 3) if model_kind.startswith("mlp") else (N_EXAMPLES, 1, 6, 6)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N_EXAMPLES,), generator=g)
    return x, y


MODELS = {
    "mlp_tanh": lambda: _mlp(nn.Tanh),
    "mlp_relu": lambda: _mlp(nn.ReLU),
    "conv": lambda: _conv(False),
    "conv_bn": lambda: _conv(True),
}


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names=None) -> torch.Tensor:
    """Hessian of the mean cross-entropy over all examples, eval mode, flat parameters."""
    named = dict(model.named_parameters())
    names = list(named) if names is None else names
    fixed = {n: p.detach() for n, p in named.items() if n not in names}
    fixed.update(dict(model.named_buffers()))
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    flat = torch.cat([named[n].detach().reshape(-1) for n in names])
    training = model.training
    model.eval()

    def f(w: torch.Tensor) -> torch.Tensor:
        chunks = [c.view(s) for c, s in zip(torch.split(w, sizes), shapes, strict=True)]
        out = functional_call(model, {**fixed, **dict(zip(names, chunks, strict=True))}, (x,))
        return F.cross_entropy(out, y)

    H = torch.autograd.functional.hessian(f, flat)
    model.train(training)
    return H


@pytest.fixture(scope="module", params=list(MODELS))
def problem(request):
    model = MODELS[request.param]()
    x, y = _data(request.param)
    return request.param, model, x, y, exact_hessian(model, x, y)


@pytest.fixture(scope="module")
def tanh_problem():
    model = MODELS["mlp_tanh"]()
    x, y = _data("mlp_tanh")
    H = exact_hessian(model, x, y)
    return model, x, y, H, np.linalg.eigvalsh(H.numpy())


# --------------------------------------------------------------------------- the operator


@pytest.mark.parametrize("batch_size", [None, BATCH])
def test_matvec_equals_exact_hessian(problem, batch_size):
    name, model, x, y, H = problem
    op = HessianOperator(model, (x, y), batch_size=batch_size)
    assert op.shape == H.shape
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(op.shape[0], generator=g, dtype=torch.float64)
        torch.testing.assert_close(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
    assert op.hvps == 3
    V = torch.randn(op.shape[0], 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)


def test_matvec_under_no_grad(tanh_problem):
    model, x, y, H, _ = tanh_problem
    v = torch.ones(H.shape[0], dtype=torch.float64)
    for batch_size in (None, BATCH):
        op = HessianOperator(model, (x, y), batch_size=batch_size)
        with torch.no_grad():
            torch.testing.assert_close(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)


def test_dense_and_scipy_bridge(tanh_problem):
    model, x, y, H, eig = tanh_problem
    op = HessianOperator(model, (x, y), batch_size=BATCH)
    torch.testing.assert_close(op.dense(), H, rtol=1e-10, atol=1e-12)
    assert op.hvps == op.shape[0]
    top = scipy.sparse.linalg.eigsh(op.to_scipy(), k=2, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), eig[-2:], atol=1e-8)


def test_model_is_not_mutated():
    model = _conv(True)
    model[0].train()
    model[1].eval()  # mixed flags must come back exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    x, y = _data("conv")
    op = HessianOperator(model, (x, y), batch_size=BATCH)
    op.matvec(torch.ones(op.shape[0], dtype=torch.float64))
    hessian_eigenvalues(model, (x, y), k=1, max_iter=5)
    assert [m.training for m in model.modules()] == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_snapshot_ignores_later_changes(tanh_problem):
    _, x, y, H, _ = tanh_problem
    model = MODELS["mlp_tanh"]()
    op = HessianOperator(model, (x, y))
    v = torch.ones(op.shape[0], dtype=torch.float64)
    first = op.matvec(v)
    torch.testing.assert_close(first, H @ v)
    with torch.no_grad():  # the user keeps training the model in place
        for p in model.parameters():
            p.mul_(3.0)
    torch.testing.assert_close(op.matvec(v), first)
    assert not torch.allclose(HessianOperator(model, (x, y)).matvec(v), first)


@pytest.mark.parametrize(
    "params",
    [["2"], ["0.weight", "4.bias"], lambda name: name.endswith("bias"), "4"],
    ids=["module", "names", "predicate", "string"],
)
def test_parameter_subset_is_block_of_exact_hessian(tanh_problem, params):
    model, x, y, H, _ = tanh_problem
    op = HessianOperator(model, (x, y), batch_size=BATCH, params=params)
    named = list(dict(model.named_parameters()))
    sizes = [p.numel() for p in model.parameters()]
    starts = np.cumsum([0, *sizes])
    idx = torch.cat(
        [torch.arange(starts[named.index(n)], starts[named.index(n) + 1]) for n in op.names]
    )
    torch.testing.assert_close(op.dense(), H[idx][:, idx], rtol=1e-10, atol=1e-12)
    # the same block from the exact Hessian of the subset alone
    torch.testing.assert_close(op.dense(), exact_hessian(model, x, y, list(op.names)))


# --------------------------------------------------------------------------- lanczos


def test_lanczos_largest_smallest_both_match_eigh(tanh_problem):
    model, x, y, H, eig = tanh_problem
    op = HessianOperator(model, (x, y))
    n = op.shape[0]
    top = lanczos(op, k=3, which="largest", tol=1e-10, max_iter=n, seed=1)
    np.testing.assert_allclose(top.values.numpy(), eig[::-1][:3], atol=1e-8)
    assert top.converged and top.hvps == top.iterations <= n
    assert torch.all(top.residuals <= 1e-10 * top.values.abs())
    # the vectors are eigenvectors: ||H v - theta v|| is the reported residual
    for j in range(3):
        v = top.vectors[:, j]
        assert abs(float(v.norm()) - 1) < 1e-10
        assert float((H @ v - top.values[j] * v).norm()) < 1e-8
    low = lanczos(op, k=2, which="smallest", tol=1e-10, max_iter=n, seed=2)
    np.testing.assert_allclose(low.values.numpy(), eig[:2], atol=1e-8)
    both = lanczos(op, k=2, which="both", tol=1e-10, max_iter=n, seed=3)
    np.testing.assert_allclose(both.values.numpy(), [*eig[::-1][:2], *eig[:2][::-1]], atol=1e-8)
    assert np.all(np.diff(both.values.numpy()) <= 0)


def test_lanczos_on_batched_conv_with_batchnorm():
    model = _conv(True)
    x, y = _data("conv")
    eig = np.linalg.eigvalsh(exact_hessian(model, x, y).numpy())
    res = hessian_eigenvalues(model, (x, y), k=2, batch_size=BATCH, tol=1e-10, seed=0)
    np.testing.assert_allclose(res.values.numpy(), eig[::-1][:2], atol=1e-8)


def _clustered_matrix(n: int = 300):
    """Top cluster 1, .995, .99, .985, .98; bulk in [0, 0.6]; an isolated -3 at the bottom."""
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.cat(
        [
            torch.tensor([1.0, 0.995, 0.99, 0.985, 0.98], dtype=torch.float64),
            torch.linspace(0, 0.6, n - 6, dtype=torch.float64),
            torch.tensor([-3.0], dtype=torch.float64),
        ]
    )
    A = U @ torch.diag(lam) @ U.T
    return (A + A.T) / 2, U[:, 0], g


def test_lanczos_k1_does_not_stop_too_early():
    """hessian-eigenthings 1.0 stopped after 2 steps at half the true top eigenvalue for k=1.

    The trap: the start vector has a tiny overlap (1e-3) with the top eigenvector, the top of
    the spectrum is a tight cluster (Ritz values creep, so their change per step is small),
    and the bottom eigenvalue is isolated (it converges first: checking the wrong end of the
    Ritz values would stop at once). Rules that stop on a small change of the Ritz value stop
    here with a value more than 1% off; the residual rule must run on to the true value.
    """
    A, v1, g = _clustered_matrix()
    r = torch.randn(A.shape[0], generator=g, dtype=torch.float64)
    r = r - (r @ v1) * v1
    v0 = 1e-3 * v1 + r / r.norm()
    tol = 1e-6

    # the trap is real: the top Ritz value after j steps (the Krylov sequence is fixed by v0)
    seq = [lanczos(A, k=1, v0=v0, max_iter=j).values[0].item() for j in range(1, 12)]
    naive = next(j for j in range(1, len(seq)) if abs(seq[j] - seq[j - 1]) < 1e-2 * abs(seq[j]))
    assert abs(seq[naive] - 1.0) > 1e-2
    bottom = lanczos(A, k=1, which="smallest", v0=v0, max_iter=8)
    assert bottom.relative_residuals[0] < 1e-3 and abs(seq[7] - 1.0) > 1e-2  # wrong end: stops

    res = lanczos(A, k=1, v0=v0, tol=tol, max_iter=150)
    assert res.converged
    assert res.iterations > 15
    assert abs(res.values[0].item() - 1.0) <= tol
    assert res.residuals[0] <= tol * res.values[0]


def test_lanczos_converged_value_is_within_residual_of_an_eigenvalue():
    A, _, _ = _clustered_matrix()
    eig = torch.linalg.eigvalsh(A).numpy()
    for seed in range(4):
        res = lanczos(A, k=2, tol=1e-3, seed=seed)
        assert res.converged
        for value, r in zip(res.values.numpy(), res.residuals.numpy(), strict=True):
            assert np.min(np.abs(eig - value)) <= r * (1 + 1e-8)


def test_lanczos_breakdown_restarts():
    # two distinct eigenvalues: the Krylov space closes after 2 steps; k=3 needs a restart
    A = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    res = lanczos(A, k=3, tol=1e-10, max_iter=6)
    np.testing.assert_allclose(res.values.numpy(), [2.0, 2.0, 2.0], atol=1e-10)


def test_lanczos_validation(tanh_problem):
    model, x, y, H, _ = tanh_problem
    n = H.shape[0]
    with pytest.raises(FuncspaceError, match="k must be"):
        hessian_eigenvalues(model, (x, y), k=0)
    with pytest.raises(FuncspaceError, match="k < n"):
        lanczos(H, k=n)
    with pytest.raises(FuncspaceError, match="2k <= n"):
        lanczos(H, k=n // 2 + 1, which="both")
    with pytest.raises(FuncspaceError, match="which"):
        lanczos(H, which="top")
    with pytest.raises(FuncspaceError, match="tol"):
        lanczos(H, tol=0)
    with pytest.raises(FuncspaceError, match="v0"):
        lanczos(H, v0=torch.zeros(n))
    with pytest.raises(FuncspaceError, match="square"):
        lanczos(torch.zeros(3, 4))


def test_operator_validation(tanh_problem):
    model, x, y, _, _ = tanh_problem
    bad = MODELS["mlp_tanh"]()
    with torch.no_grad():
        bad[2].weight[0, 0] = float("nan")
    with pytest.raises(FuncspaceError, match="'2.weight' contains NaN"):
        HessianOperator(bad, (x, y))
    with pytest.raises(FuncspaceError, match="neither a parameter nor a module"):
        HessianOperator(model, (x, y), params=["7"])
    with pytest.raises(FuncspaceError, match="no parameter selected"):
        HessianOperator(model, (x, y), params=lambda name: False)
    with pytest.raises(FuncspaceError, match="batch_size"):
        HessianOperator(model, (x, y), batch_size=0)
    with pytest.raises(FuncspaceError):
        HessianOperator(model, (x, y[:5]))
    with pytest.raises(FuncspaceError, match="nn.Module"):
        HessianOperator(lambda t: t, (x, y))
    op = HessianOperator(model, (x, y))
    with pytest.raises(FuncspaceError, match="shape"):
        op.matvec(torch.ones(3))
    with pytest.raises(FuncspaceError, match="max_size"):
        op.dense(max_size=10)
    with pytest.raises(FuncspaceError, match="method"):
        hessian_trace(model, (x, y), method="exact")


# --------------------------------------------------------------------------- trace


def _decaying(n: int = 100) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = 1.0 / torch.arange(1, n + 1, dtype=torch.float64) ** 2
    return U @ torch.diag(lam) @ U.T


def test_trace_estimators_unbiased_and_hutchpp_tighter():
    A = _decaying()
    true = float(torch.trace(A))
    seeds = range(300)
    hutch = np.array([hutchinson_trace(A, hvps=30, seed=s).estimate for s in seeds])
    plus = [hutchpp_trace(A, hvps=30, seed=s) for s in seeds]
    hpp = np.array([r.estimate for r in plus])
    assert all(r.hvps == 30 and r.method == "hutch++" for r in plus)
    for est in (hutch, hpp):
        assert abs(est.mean() - true) < 4 * est.std(ddof=1) / math.sqrt(len(est))
    assert hpp.std() < 0.2 * hutch.std()
    # the reported standard errors match the spread over seeds (within a factor 2)
    se = np.mean([hutchinson_trace(A, hvps=30, seed=s).std_error for s in range(40)])
    assert 0.5 < se / hutch.std() < 2


def test_trace_on_hessian_operator(tanh_problem):
    model, x, y, H, _ = tanh_problem
    n = H.shape[0]
    exact = float(torch.trace(H))
    op = HessianOperator(model, (x, y), batch_size=BATCH)
    full = hutchpp_trace(op, hvps=3 * n)  # the sketch spans everything: exact
    assert abs(full.estimate - exact) < 1e-9 and full.std_error == 0.0 and full.hvps == 2 * n
    res = hessian_trace(model, (x, y), method="hutchinson", hvps=20, seed=4)
    assert res.hvps == 20 and abs(res.estimate - exact) < 5 * res.std_error
    res = hessian_trace(model, (x, y), method="hutch++", hvps=30, seed=4)
    assert res.method == "hutch++" and abs(res.estimate - exact) < 5 * res.std_error
    res = hessian_trace(model, (x, y), hvps=30, seed=4)
    assert res.method == "krylov" and abs(res.estimate - exact) < 5 * res.std_error
    full = krylov_trace(op, hvps=n, steps=n)  # the Krylov space is everything: exact
    assert abs(full.estimate - exact) < 1e-9 and full.std_error == 0.0 and full.hvps == n


def _outliers(n: int = 200) -> torch.Tensor:
    """A trained network's Hessian in miniature: ten outliers over a wide bulk of both signs."""
    g = torch.Generator().manual_seed(7)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    bulk = 0.02 * torch.randn(n - 10, generator=g, dtype=torch.float64)
    lam = torch.cat([torch.linspace(1.0, 0.2, 10, dtype=torch.float64), bulk])
    return U @ torch.diag(lam) @ U.T


@pytest.mark.parametrize("matrix", [_decaying, _outliers])
def test_krylov_trace_unbiased_and_tighter_than_hutchinson_and_hutchpp(matrix):
    A = matrix()
    true = float(torch.trace(A))
    seeds = range(300)
    runs = [krylov_trace(A, hvps=30, seed=s) for s in seeds]
    assert all(r.hvps == 30 and r.method == "krylov" for r in runs)
    kry = np.array([r.estimate for r in runs])
    assert abs(kry.mean() - true) < 4 * kry.std(ddof=1) / math.sqrt(len(kry))
    hutch = np.array([hutchinson_trace(A, hvps=30, seed=s).estimate for s in seeds])
    hpp = np.array([hutchpp_trace(A, hvps=30, seed=s).estimate for s in seeds])
    assert kry.std() < 0.5 * hutch.std() and kry.std() < hpp.std()
    se = np.mean([r.std_error for r in runs[:40]])
    assert 0.5 < se / kry.std() < 2


def test_krylov_trace_steps_split_the_budget():
    A = _outliers(60)
    assert krylov_trace(A, hvps=20, steps=5).hvps == 20
    only = krylov_trace(A, hvps=8, steps=8)  # no budget left for the rest: no spread known
    assert only.hvps == 8 and math.isnan(only.std_error)
    exact = krylov_trace(A, hvps=80, steps=70)  # capped at n = 60: exact
    assert exact.hvps == 60 and abs(exact.estimate - float(torch.trace(A))) < 1e-10


def test_trace_validation():
    A = _decaying(10)
    with pytest.raises(FuncspaceError, match="at least 3"):
        hutchpp_trace(A, hvps=2)
    with pytest.raises(FuncspaceError, match="hvps"):
        hutchinson_trace(A, hvps=0)
    with pytest.warns(DeprecationWarning, match=r"samples=\) is deprecated"):
        assert hutchinson_trace(A, samples=3, seed=1) == hutchinson_trace(A, hvps=3, seed=1)
    with pytest.raises(FuncspaceError, match="seed"):
        hutchinson_trace(A, seed=1.5)
    with pytest.raises(FuncspaceError, match="at least 2"):
        krylov_trace(A, hvps=1)
    with pytest.raises(FuncspaceError, match="exceed"):
        krylov_trace(A, hvps=5, steps=6)
    with pytest.raises(FuncspaceError, match="steps"):
        krylov_trace(A, hvps=5, steps=0)


# --------------------------------------------------------------------------- spectral density


def test_spectral_density_integrates_to_one_and_mean_is_trace_over_n():
    A = _decaying(80) + torch.diag(torch.linspace(-0.2, 0.3, 80, dtype=torch.float64))
    n = A.shape[0]
    sd = spectral_density(A, n_vectors=4, steps=30, seed=7)
    assert abs(sd.mass() - 1) < 1e-6
    assert sd.nodes.shape == sd.weights.shape == (4, 30) and sd.hvps == 120
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
    # the quadrature's mean is each probe's Rayleigh quotient: Hutchinson on the same probes
    same = hutchinson_trace(A, hvps=4, seed=7).estimate / n
    assert abs(sd.mean() - same) < 1e-12
    assert abs(np.trapezoid(sd.grid * sd.density, sd.grid) - sd.mean()) < 1e-6
    # and it estimates trace / n
    many = spectral_density(A, n_vectors=200, steps=5, seed=8)
    spread = hutchinson_trace(A, hvps=200, seed=8).std_error / n
    assert abs(many.mean() - float(torch.trace(A)) / n) < 4 * spread
    # with as many steps as n the nodes are the eigenvalues
    full = spectral_density(A, n_vectors=1, steps=n, seed=9)
    np.testing.assert_allclose(np.sort(full.nodes[0]), torch.linalg.eigvalsh(A).numpy(), atol=1e-9)


def test_hessian_spectrum_on_model(tanh_problem):
    model, x, y, H, eig = tanh_problem
    sd = hessian_spectrum(model, (x, y), n_vectors=2, steps=10, seed=0)
    assert abs(sd.mass() - 1) < 1e-6
    assert sd.nodes.max() <= eig[-1] + 1e-9 and sd.nodes.min() >= eig[0] - 1e-9
    grid = np.linspace(eig[0] - 1, eig[-1] + 1, 5001)
    sd = hessian_spectrum(model, (x, y), n_vectors=2, steps=10, seed=0, grid=grid, sigma=0.05)
    assert abs(sd.mass() - 1) < 1e-6 and sd.sigma == 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_follows_model():
    model = MODELS["mlp_tanh"]().cuda()
    x, y = _data("mlp_tanh")
    op = HessianOperator(model, (x, y))
    H = exact_hessian(model.cpu(), x, y)
    model.cuda()
    assert op.device.type == "cuda"
    res = lanczos(op, k=1, tol=1e-10)
    assert res.vectors.device.type == "cuda"
    np.testing.assert_allclose(res.values[0].item(), torch.linalg.eigvalsh(H)[-1].item(), atol=1e-8)


# --------------------------------------------------------------------------- warm start


def _many_examples(n: int = 1200) -> tuple[nn.Module, torch.Tensor, torch.Tensor, np.ndarray]:
    model = MODELS["mlp_tanh"]()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, x, y, np.linalg.eigvalsh(exact_hessian(model, x, y).numpy())


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
def test_warm_start_gives_the_full_hessians_eigenvalues(which):
    """The subsample only chooses the start vector: values and residuals are the full
    operator's, to the tolerance, at any end of the spectrum."""
    model, x, y, lam = _many_examples()
    k = 2
    auto = hessian_eigenvalues(model, (x, y), k=k, which=which, tol=1e-9, seed=3)
    # "auto": a 10% subsample for the top of the spectrum, from 1000 examples on
    assert (auto.warm_hvps > 0) == (which == "largest")
    warm = hessian_eigenvalues(model, (x, y), k=k, which=which, tol=1e-9, seed=3, warm_start=0.1)
    assert warm.warm_hvps > 0 and warm.warm_fraction == pytest.approx(0.1)
    assert warm.cost == pytest.approx(warm.hvps + 0.1 * warm.warm_hvps)
    expected = {"largest": lam[::-1][:k], "smallest": lam[:k], "both": None}[which]
    if expected is None:
        expected = np.concatenate([lam[::-1][:k], lam[:k][::-1]])
    np.testing.assert_allclose(warm.values.numpy(), expected, rtol=1e-7, atol=1e-10)
    cold = hessian_eigenvalues(model, (x, y), k=k, which=which, tol=1e-9, seed=3, warm_start=None)
    assert cold.warm_hvps == 0 and cold.cost == cold.hvps
    np.testing.assert_allclose(warm.values.numpy(), cold.values.numpy(), rtol=1e-7, atol=1e-10)


def test_warm_start_options():
    model, x, y, lam = _many_examples()
    small = hessian_eigenvalues(model, (x[:500], y[:500]), tol=1e-6)  # "auto": too few examples
    assert small.warm_hvps == 0
    half = hessian_eigenvalues(model, (x[:500], y[:500]), tol=1e-6, warm_start=0.5)
    assert half.warm_hvps > 0 and half.warm_fraction == 0.5
    n = sum(p.numel() for p in model.parameters())
    given = hessian_eigenvalues(model, (x, y), tol=1e-6, v0=torch.ones(n, dtype=torch.float64))
    assert given.warm_hvps == 0  # a start vector of the user's wins
    again = hessian_eigenvalues(model, (x, y), tol=1e-6)
    first = hessian_eigenvalues(model, (x, y), tol=1e-6)
    assert again.values.tolist() == first.values.tolist() and again.hvps == first.hvps
    assert abs(first.values[0].item() - lam[-1]) <= 1e-6 * lam[-1]
    for bad in (0, 1, 1.5, -0.1, "half", True):
        with pytest.raises(FuncspaceError, match="warm_start"):
            hessian_eigenvalues(model, (x, y), warm_start=bad)
    with pytest.raises(FuncspaceError, match="seed"):
        hessian_eigenvalues(model, (x, y), seed=0.5)
    assert "warm_hvps" in first.to_dict() and "of the data" in repr(first)
