"""Principal directions of a training trajectory (Li et al. 2018), for a plane that shows it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from funcspace.errors import FuncspaceError
from funcspace.params import Params, check_compatible, parameters_of

from .results import TrajectoryPCA


def _as_point(item: object, index: int, names: Sequence[str] | None) -> Params:
    if isinstance(item, nn.Module):
        point = parameters_of(item)
    elif isinstance(item, dict):
        point = {
            n: t.detach()
            for n, t in item.items()
            if isinstance(t, Tensor) and t.is_floating_point()
        }
    else:
        raise FuncspaceError(
            f"trajectory[{index}] must be an nn.Module or a dict of tensors, "
            f"got {type(item).__name__}"
        )
    if names is not None:
        missing = [n for n in names if n not in point]
        if missing:
            raise FuncspaceError(f"trajectory[{index}] lacks {missing[:5]}")
        point = {n: point[n] for n in names}
    return point


def trajectory_pca(
    trajectory: Sequence[nn.Module | Params],
    center: nn.Module | Params | None = None,
    *,
    names: Sequence[str] | None = None,
) -> TrajectoryPCA:
    """The top two principal directions of a trajectory and its coordinates on them.

    As Li et al. (2018): the points ``w_i`` (all parameters flattened together) are centered on
    their mean and decomposed; the two leading directions span the plane on which an
    optimization path is best drawn, and ``coordinates`` are ``(w_i - center)`` projected on
    them (``center`` defaults to the last point, the trained network, so
    :func:`~funcspace.landscape.plane` around it with ``directions=pca`` shows the path ending
    at the origin). The decomposition uses the points' Gram matrix (points x points), never a
    parameters x parameters matrix.

    Parameters
    ----------
    trajectory : sequence of nn.Module or dict[str, Tensor]
        At least three points of one architecture (modules give their parameters; dicts give
        their floating-point tensors, or ``names``).
    center : nn.Module, dict or None
        The origin of the coordinates; None for the last point.
    names : sequence of str or None
        Restrict to these tensor names (for state dicts that also hold buffers).

    Returns
    -------
    TrajectoryPCA

    Raises
    ------
    FuncspaceError
        For fewer than three points, points of different shapes, or a trajectory that spans
        fewer than two dimensions.

    Examples
    --------
    >>> import torch
    >>> path = [{"w": torch.tensor([t, t * t, 1.0], dtype=torch.float64)} for t in range(4)]
    >>> pca = trajectory_pca(path)
    >>> round(float(pca.explained_variance_ratio.sum()), 6), pca.coordinates.shape
    (1.0, (4, 2))
    """
    if isinstance(trajectory, (nn.Module, dict)) or not isinstance(trajectory, Sequence):
        raise FuncspaceError("trajectory must be a list of modules or of parameter dicts")
    if len(trajectory) < 3:
        raise FuncspaceError(f"trajectory_pca needs at least 3 points, got {len(trajectory)}")
    points = [_as_point(item, i, names) for i, item in enumerate(trajectory)]
    first = points[0]
    if not first:
        raise FuncspaceError("trajectory points hold no floating-point tensors")
    check_compatible(points, "trajectory point")
    origin = points[-1] if center is None else _as_point(center, -1, list(first))
    if origin.keys() != first.keys():
        raise FuncspaceError("center must have the trajectory's tensor names")

    n = len(points)
    device = next(iter(first.values())).device
    gram = torch.zeros(n, n, dtype=torch.float64, device=device)
    for name in first:
        rows = torch.stack([p[name].reshape(-1).to(device, torch.float64) for p in points])
        rows = rows - rows.mean(0)
        gram += rows @ rows.T
    eigenvalues, vectors = torch.linalg.eigh(gram)
    eigenvalues, vectors = eigenvalues.flip(0).clamp_min(0), vectors.flip(1)
    total = float(eigenvalues.sum())
    if total <= 0 or float(eigenvalues[1]) <= 1e-12 * total:
        raise FuncspaceError(
            "the trajectory spans fewer than two dimensions (its points lie on a line or "
            "coincide); a PCA plane needs points that spread in two directions"
        )
    top = vectors[:, :2] / eigenvalues[:2].sqrt()
    alongs = {}
    coordinates = torch.zeros(n, 2, dtype=torch.float64, device=device)
    for name in first:
        rows = torch.stack([p[name].reshape(-1).to(device, torch.float64) for p in points])
        alongs[name] = (rows - rows.mean(0)).T @ top  # (entries, 2), orthonormal over all
        coordinates += (rows - origin[name].reshape(-1).to(device, torch.float64)) @ alongs[name]
    # An eigenvector's sign is arbitrary: fix it so the first point has coordinates >= 0.
    signs = torch.where(coordinates[0] < 0, -1.0, 1.0).to(coordinates)
    coordinates = coordinates * signs
    directions: tuple[Params, Params] = tuple(
        {
            name: (alongs[name][:, k] * signs[k]).reshape(like.shape).to(like.dtype)
            for name, like in first.items()
        }
        for k in range(2)
    )  # type: ignore[assignment]
    variance = eigenvalues[:2] / (n - 1)
    return TrajectoryPCA(
        directions=directions,
        coordinates=coordinates.cpu().numpy(),
        explained_variance=variance.cpu().numpy(),
        explained_variance_ratio=(eigenvalues[:2] / total).cpu().numpy(),
        center={k: v.clone() for k, v in origin.items()},
    )
