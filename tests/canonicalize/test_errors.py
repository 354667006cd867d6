"""Bad input gets a clear SymmetryError that names the problem, and no call mutates its inputs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import canonicalize as C
from canonicalize import SymmetryError

X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))


def mlp(width: int = 4, act: type[nn.Module] = nn.ReLU, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), act(), nn.Linear(width, 2))


def bn_mlp(seed: int = 0) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear with non-trivial running statistics."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 2)
    )
    with torch.no_grad():
        model[1].running_mean.copy_(torch.randn(5))
        model[1].running_var.copy_(torch.rand(5) + 0.5)
        model[1].weight.copy_(torch.randn(5))
        model[1].bias.copy_(torch.randn(5))
    return model


# --- unsupported layers and operations ----------------------------------------------------


class _Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = cell(3, 4, batch_first=True)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        hidden, _ = self.rnn(x)
        return self.out(hidden[:, -1])


@pytest.mark.parametrize("cell, name", [(nn.GRU, "GRU"), (nn.LSTM, "LSTM")])
def test_recurrent_layer_is_named(cell, name):
    with pytest.raises(SymmetryError, match=rf"layer 'rnn' \({name}\) has no supported symmetry"):
        C.symmetries(_Recurrent(cell), torch.randn(2, 5, 3))


@pytest.mark.parametrize(
    "layer, name",
    [(nn.RNNCell(4, 4), "RNNCell"), (nn.GroupNorm(2, 4), "GroupNorm"), (nn.GLU(), "GLU")],
)
def test_unsupported_module_is_named(layer, name):
    model = nn.Sequential(nn.Linear(3, 4), layer, nn.Linear(4 if name != "GLU" else 2, 2))
    with pytest.raises(SymmetryError, match=rf"layer '1' \({name}\) has no supported symmetry"):
        C.symmetries(model, X)


def test_unsupported_module_message_lists_supported_layers():
    model = nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(2, 4), nn.Linear(4, 2))
    with pytest.raises(SymmetryError) as info:
        C.symmetries(model, X)
    assert C.SUPPORTED_LAYERS in str(info.value)


def test_embedding_takes_token_ids_and_refuses_floats():
    # embeddings are supported (tests/canonicalize/test_transformers.py); a float input fails
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4, 2))
    assert [g.size for g in C.symmetries(model, torch.randint(0, 10, (6, 1))).groups] == [4]
    with pytest.raises(SymmetryError, match="failed on the example input"):
        C.symmetries(model, torch.rand(6, 1))


class _Shortcut(nn.Module):
    """A user-defined layer inside a block, holding an operation without a symmetry."""

    def forward(self, x):
        return torch.cumsum(x, dim=1)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)
        self.shortcut = _Shortcut()

    def forward(self, x):
        return self.a(x) + self.shortcut(self.b(x))


class _Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer2 = nn.Sequential(_Block())
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.layer2(x))


def test_refusal_inside_a_submodule_names_its_path():
    with pytest.raises(SymmetryError, match=r"'cumsum'.*in 'layer2\.0\.shortcut' \(_Shortcut\)"):
        C.symmetries(_Unsupported(), X)


class _RawParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(x @ self.w)


def test_parameter_used_directly():
    with pytest.raises(SymmetryError, match="reads the tensor 'w' directly"):
        C.symmetries(_RawParameter(), X)


class _ControlFlow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return -self.a(x)


def test_data_dependent_control_flow():
    with pytest.raises(SymmetryError, match=r"torch.fx could not trace _ControlFlow.*control flow"):
        C.symmetries(_ControlFlow(), X)


class _ReturnsTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x), x


def test_tuple_output():
    with pytest.raises(SymmetryError, match="must return a single tensor"):
        C.symmetries(_ReturnsTuple(), X)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x, y):
        return self.a(x) + self.a(y)


class _OptionalSecondInput(_TwoInputs):
    def forward(self, x, y=None):
        return self.a(x)


def test_two_inputs_are_refused():
    with pytest.raises(SymmetryError, match=r"several inputs"):
        C.symmetries(_TwoInputs(), X)


def test_two_inputs_message_says_several_inputs():
    with pytest.raises(SymmetryError, match="several inputs"):
        C.symmetries(_TwoInputs(), X)


def test_second_input_with_default_is_refused():
    with pytest.raises(SymmetryError, match="several inputs are not supported"):
        C.symmetries(_OptionalSecondInput(), X)


class _AddAlpha(nn.Module):
    def __init__(self, method: bool = False) -> None:
        super().__init__()
        self.a, self.out = nn.Linear(3, 3), nn.Linear(3, 2)
        self.method = method

    def forward(self, x):
        h = self.a(x)
        y = h.add(x, alpha=2) if self.method else torch.add(h, x, alpha=2)
        return self.out(y)


@pytest.mark.parametrize("method", [False, True])
def test_add_with_alpha(method):
    with pytest.raises(SymmetryError, match="alpha is not supported"):
        C.symmetries(_AddAlpha(method), X)


class _Reshape(nn.Module):
    def __init__(self, shape_of) -> None:
        super().__init__()
        self.a, self.out = nn.Linear(3, 4), nn.Linear(2, 2)
        self.shape_of = shape_of

    def forward(self, x):
        return self.out(self.a(x).reshape(*self.shape_of(x)))


@pytest.mark.parametrize(
    "shape_of, message",
    [
        (lambda x: (-1, 2), r"reshapes \(6, 4\) to \(12, 2\)"),
        (lambda x: (x.size(0), 2, 2), r"reshapes \(6, 4\) to \(6, 2, 2\)"),
    ],
)
def test_reshape_that_is_not_a_flatten(shape_of, message):
    with pytest.raises(SymmetryError, match=message + r"; only reshapes that keep the channel"):
        C.symmetries(_Reshape(shape_of), X)


class _SharedLayer(nn.Module):
    """One Linear applied twice (weight sharing): its input and output units are tied."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.out = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.out(F.relu(self.a(F.relu(self.a(x)))))


def test_layer_called_twice_is_named():
    with pytest.raises(SymmetryError, match="'a'"):
        C.symmetries(_SharedLayer(), X)


def test_layer_called_twice_never_returns_a_wrong_model():
    with pytest.raises(SymmetryError):
        C.canonical_form(_SharedLayer(), X)


# --- non-finite weights -------------------------------------------------------------------


def _poison(model: nn.Module, tensor: str, value: float) -> nn.Module:
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.state_dict()[tensor].view(-1)[0] = value
    return model


CALLS = {
    "symmetries": lambda m, good, x: C.symmetries(m, x),
    "canonical_form": lambda m, good, x: C.canonical_form(m, x),
    "normalize": lambda m, good, x: C.normalize(m, x),
    "random_transform": lambda m, good, x: C.random_transform(m, x),
    "to_torus": lambda m, good, x: C.to_torus(m, x),
    "align-model": lambda m, good, x: C.align(m, good, x),
    "align-reference": lambda m, good, x: C.align(good, m, x),
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("tensor", ["0.weight", "1.running_var", "1.running_mean"])
@pytest.mark.parametrize("call", list(CALLS))
def test_non_finite_weights(call, tensor, value):
    good = bn_mlp().eval()
    bad = _poison(good, tensor, value)
    role = "reference" if call == "align-reference" else "model"
    with pytest.raises(
        SymmetryError, match=rf"^{role} tensor '{tensor}' has 1 non-finite value\(s\)"
    ):
        CALLS[call](bad, good, X)


# --- bad example inputs -------------------------------------------------------------------


def test_wrong_feature_size_mentions_shape():
    with pytest.raises(
        SymmetryError, match=r"Sequential failed on the example input of shape \(6, 7\)"
    ):
        C.symmetries(mlp(), torch.randn(6, 7))


def test_wrong_feature_size_says_why():
    with pytest.raises(SymmetryError, match="mat1 and mat2 shapes cannot be multiplied"):
        C.symmetries(mlp(), torch.randn(6, 7))


@pytest.mark.parametrize(
    "example, message",
    [
        (torch.ones(6, 3, dtype=torch.long), "must be floating point, got torch.int64"),
        (torch.full((6, 3), float("nan")), r"has non-finite values \(NaN or inf\)"),
        (torch.tensor([[0.0, 1.0, float("inf")]]), r"has non-finite values \(NaN or inf\)"),
        ([[0.0, 1.0, 2.0]], "must be a torch.Tensor .* got list"),
        (torch.randn(0, 3), r"must have a non-empty batch axis first, got shape \(0, 3\)"),
        (torch.tensor(1.0), r"must have a non-empty batch axis first, got shape \(\)"),
    ],
)
@pytest.mark.parametrize("call", list(CALLS))
def test_bad_example_input(call, example, message):
    with pytest.raises(SymmetryError, match="example_input " + message):
        CALLS[call](mlp(), mlp(seed=1), example)


def test_bad_activation_data():
    with pytest.raises(SymmetryError, match=r"non-finite values"):
        C.align(mlp(), mlp(seed=1), X, method="activations", data=torch.full((4, 3), float("nan")))


# --- align: mismatched architectures and bad options --------------------------------------


def test_align_different_widths_names_tensor_and_shapes():
    with pytest.raises(
        SymmetryError,
        match=r"'0.weight' has shape \(4, 3\) in model and \(5, 3\) in reference",
    ):
        C.align(mlp(4), mlp(5), X)


class _Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_align_different_keys():
    with pytest.raises(
        SymmetryError,
        match=r"different architectures: tensors only in reference: \['fc1.weight'.*"
        r"only in model: \['0.weight'",
    ):
        C.align(mlp(), _Named(), X)


def test_align_different_activations():
    with pytest.raises(SymmetryError, match="different symmetry groups"):
        C.align(mlp(act=nn.Tanh), mlp(act=nn.ReLU), X)


@pytest.mark.parametrize("method", ["bogus", "Cosine", None])
def test_align_unknown_method(method):
    with pytest.raises(SymmetryError, match=r"method must be one of \('cosine', 'weights'"):
        C.align(mlp(), mlp(seed=1), X, method=method)


@pytest.mark.parametrize("max_iter", [0, -1, 1.5])
def test_align_bad_max_iter(max_iter):
    with pytest.raises(SymmetryError, match="max_iter must be a positive integer"):
        C.align(mlp(), mlp(seed=1), X, method="weights", max_iter=max_iter)


def test_align_non_module():
    with pytest.raises(SymmetryError, match="reference must be a torch.nn.Module, got list"):
        C.align(mlp(), [mlp()], X)


# --- canonical_form output modes ----------------------------------------------------------


@pytest.mark.parametrize(
    "call", [C.canonical_form, C.normalize, C.to_torus], ids=lambda f: f.__name__
)
def test_unknown_output_mode(call):
    with pytest.raises(
        SymmetryError, match=r"output must be 'preserve' or 'normalize', got 'bogus'"
    ):
        call(mlp(), X, output="bogus")


def _tanh_output() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh())


@pytest.mark.parametrize(
    "call", [C.canonical_form, C.normalize, C.to_torus], ids=lambda f: f.__name__
)
def test_normalize_output_without_global_factor(call):
    with pytest.raises(SymmetryError, match=r"output='normalize' needs .* Use output='preserve'"):
        call(_tanh_output(), X, output="normalize")
    call(_tanh_output(), X, output="preserve")


# --- torus, group ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["point", None, 0])
def test_geodesic_distance_needs_torus_points(bad):
    point = C.to_torus(mlp(), X)
    with pytest.raises(SymmetryError, match="takes two TorusPoint"):
        C.geodesic_distance(point, bad)
    with pytest.raises(SymmetryError, match="takes two TorusPoint"):
        C.geodesic_distance(bad, point)


def test_geodesic_distance_needs_torus_points_not_models():
    with pytest.raises(SymmetryError, match="takes two TorusPoint"):
        C.geodesic_distance(mlp(), mlp(seed=1))


def test_geodesic_distance_different_architectures():
    a, b = C.to_torus(mlp(4), X), C.to_torus(mlp(5), X)
    with pytest.raises(SymmetryError, match="different architectures"):
        C.geodesic_distance(a, b)


def test_geodesic_distance_different_output_modes():
    a = C.to_torus(mlp(), X, output="normalize")
    b = C.to_torus(mlp(seed=1), X, output="preserve")
    with pytest.raises(SymmetryError, match="different architectures or output modes"):
        C.geodesic_distance(a, b)


@pytest.mark.parametrize("log_scale", [-1.0, -1e-9, float("nan"), float("inf")])
def test_random_transform_bad_log_scale(log_scale):
    with pytest.raises(SymmetryError, match="log_scale must be a finite non-negative number"):
        C.random_transform(mlp(), X, log_scale=log_scale)


def test_not_a_module():
    with pytest.raises(SymmetryError, match="model must be a torch.nn.Module, got function"):
        C.symmetries(lambda x: x, X)


# --- no public call mutates its inputs ----------------------------------------------------


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, {name: m.training for name, m in model.named_modules()}


def _assert_unchanged(model: nn.Module, snapshot) -> None:
    state, modes = snapshot
    now = model.state_dict()
    assert now.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(now[key], value), key
    assert {name: m.training for name, m in model.named_modules()} == modes


PUBLIC_CALLS = {
    "symmetries": lambda m, r, x: C.symmetries(m, x),
    "canonical_form": lambda m, r, x: C.canonical_form(m, x),
    "canonical_form-normalize": lambda m, r, x: C.canonical_form(m, x, output="normalize"),
    "normalize": lambda m, r, x: C.normalize(m, x, output="normalize"),
    "random_transform": lambda m, r, x: C.random_transform(m, x, seed=3),
    "to_torus": lambda m, r, x: C.to_torus(m, x),
    "align-cosine": lambda m, r, x: C.align(m, r, x),
    "align-weights": lambda m, r, x: C.align(m, r, x, method="weights"),
    "align-activations": lambda m, r, x: C.align(m, r, x, method="activations"),
    "geodesic_distance": lambda m, r, x: C.geodesic_distance(C.to_torus(m, x), C.to_torus(r, x)),
}


@pytest.mark.parametrize("call", list(PUBLIC_CALLS))
def test_no_call_mutates_its_inputs(call):
    model, reference = bn_mlp(0).train(), bn_mlp(1).train()
    model[3].eval()  # a mixed train/eval state must survive too
    x = X.clone()
    before_model, before_reference = _snapshot(model), _snapshot(reference)
    PUBLIC_CALLS[call](model, reference, x)
    _assert_unchanged(model, before_model)
    _assert_unchanged(reference, before_reference)
    assert torch.equal(x, X)


def test_geodesic_distance_leaves_points_unchanged():
    a, b = C.to_torus(bn_mlp(0).train(), X), C.to_torus(bn_mlp(1).train(), X)
    saved = [
        {k: v.clone() for k, v in {**p.spheres, **p.free, **p.buffers}.items()} for p in (a, b)
    ]
    C.geodesic_distance(a, b)
    for point, before in zip((a, b), saved, strict=True):
        now = {**point.spheres, **point.free, **point.buffers}
        assert now.keys() == before.keys()
        assert all(torch.equal(now[k], before[k]) for k in before)
    assert a.template.training and b.template.training


def test_returned_models_are_new_objects():
    model = bn_mlp().train()
    for new in (C.canonical_form(model, X), C.random_transform(model, X), C.align(model, model, X)):
        assert new is not model
        assert all(
            p.data_ptr() != q.data_ptr()
            for p, q in zip(new.parameters(), model.parameters(), strict=True)
        )


def test_functional_model_is_not_mutated_by_symmetries():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(F.relu(self.a(x)))

    model = Functional().train()
    before = _snapshot(model)
    C.canonical_form(model, X)
    _assert_unchanged(model, before)
