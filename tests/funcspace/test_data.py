"""Tests for funcspace.data: embedded sets, file loaders on small files written here, controls."""

import gzip
import json
import random
import struct
import sys

import numpy as np
import pytest
import torch

from funcspace.data import (
    Dataset,
    as_pair,
    available,
    from_tensors,
    hidden_manifold_model,
    label_noise,
    load,
    read_idx,
    subset,
    teacher_network,
)
from funcspace.errors import DataError

# (name, options, train input shape, test input shape, n_classes), all small and fast.
EMBEDDED = [
    ("digits", {}, (1438, 64), (359, 64), 10),
    ("digits", {"flat": False}, (1438, 1, 8, 8), (359, 1, 8, 8), 10),
    ("digits", {"flat": False, "flatten": True, "test_fraction": 0.5}, (899, 64), (898, 64), 10),
    ("mnist1d", {"n_samples": 200}, (160, 40), (40, 40), 10),
    ("mnist1d", {"n_samples": 100, "flat": False, "final_seq_length": 30},
     (80, 1, 30), (20, 1, 30), 10),
    ("teacher_student", {"input_dim": 6, "hidden": (8, 5), "n_classes": 4, "n_samples": 300},
     (240, 6), (60, 6), 4),
    ("hidden_manifold", {"latent_dim": 4, "input_dim": 30, "n_samples": 200},
     (160, 30), (40, 30), 2),
    ("hidden_manifold", {"D": 3, "N": 12, "n_samples": 100, "n_classes": 3}, (80, 12), (20, 12), 3),
]  # fmt: skip


def _same(a: Dataset, b: Dataset) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip((*a.train, *a.test), (*b.train, *b.test), strict=True)
    )


@pytest.mark.parametrize(("name", "options", "train_shape", "test_shape", "n_classes"), EMBEDDED)
def test_embedded_shapes_dtypes_determinism(name, options, train_shape, test_shape, n_classes):
    data = load(name, seed=3, **options)
    (xtr, ytr), (xte, yte) = data.train, data.test
    assert (tuple(xtr.shape), tuple(xte.shape)) == (train_shape, test_shape)
    assert xtr.dtype == xte.dtype == torch.float32
    assert ytr.dtype == yte.dtype == torch.int64
    assert data.n_classes == n_classes and data.name == name
    assert int(ytr.min()) >= 0 and int(max(ytr.max(), yte.max())) < n_classes
    assert torch.isfinite(xtr).all() and torch.isfinite(xte).all()
    assert _same(data, load(name, seed=3, **options))
    assert not _same(data, load(name, seed=4, **options))
    json.dumps(data.meta)  # plain data only
    assert data.meta["seed"] == 3 and data.meta["dtype"] == "float32"


def test_digits_standardized_with_training_statistics():
    data = load("digits", dtype=torch.float64)
    x = data.train[0]
    moving = x.std(0) > 0
    assert torch.allclose(x.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        x.std(0, unbiased=False)[moving], torch.ones(int(moving.sum()), dtype=torch.float64)
    )
    assert len(data.meta["mean"]) == 64


def test_mnist1d_leaves_global_random_state():
    np.random.seed(123)  # noqa: NPY002 (the generator uses the legacy global state)
    random.seed(123)
    before = (np.random.random(), random.random())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    load("mnist1d", n_samples=100)
    assert (np.random.random(), random.random()) == before  # noqa: NPY002


def test_mnist1d_is_the_package_generator_output():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 200, 42
    reference = make_dataset(args)
    data = load("mnist1d", n_samples=200, seed=42, dtype=torch.float64)
    assert np.array_equal(data.train[0].numpy(), reference["x"])
    assert np.array_equal(data.test[0].numpy(), reference["x_test"])
    assert np.array_equal(data.test[1].numpy(), reference["y_test"])


def test_mnist1d_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DataError, match=r"pip install 'funcspace\[data\]'"):
        load("mnist1d", n_samples=100)


# --------------------------------------------------------------------------- controls


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37])
def test_label_noise_exact_fraction_test_untouched(fraction):
    clean = load("teacher_student", input_dim=5, hidden=(), n_classes=3, n_samples=500, seed=1)
    noisy = load(
        "teacher_student",
        input_dim=5,
        hidden=(),
        n_classes=3,
        n_samples=500,
        seed=1,
        label_noise=fraction,
    )
    changed = torch.nonzero(noisy.train[1] != clean.train[1]).flatten().tolist()
    assert len(changed) == round(fraction * 400)
    assert changed == noisy.meta["noisy_indices"]
    assert noisy.meta["label_noise"] == fraction
    assert torch.equal(noisy.train[0], clean.train[0])
    assert torch.equal(noisy.test[1], clean.test[1]) and torch.equal(noisy.test[0], clean.test[0])
    assert int(noisy.train[1].max()) < 3


def test_label_noise_function_is_pure_and_seeded():
    data = from_tensors(torch.randn(100, 2), torch.arange(100) % 5)
    before = data.train[1].clone()
    a, b = label_noise(data, 0.2, seed=7), label_noise(data, 0.2, seed=7)
    assert torch.equal(data.train[1], before)
    assert (
        torch.equal(a.train[1], b.train[1]) and a.meta["noisy_indices"] == b.meta["noisy_indices"]
    )
    assert a.meta["noisy_indices"] != label_noise(data, 0.2, seed=8).meta["noisy_indices"]
    with pytest.raises(DataError, match="label_noise"):
        label_noise(data, 1.0)


def test_subset_count_and_fraction():
    full = load("digits", seed=2)
    small = load("digits", seed=2, subset=100)
    assert len(small.train[0]) == 100 and small.meta["subset_size"] == 100
    assert torch.equal(small.test[0], full.test[0]) and torch.equal(small.test[1], full.test[1])
    # every kept example is a training example of the full set, with its label
    rows = (small.train[0][:, None, :] == full.train[0][None]).all(-1)
    assert (rows.sum(1) >= 1).all()
    first = rows.float().argmax(1)
    assert torch.equal(full.train[1][first], small.train[1])
    assert len(load("digits", seed=2, subset=0.25).train[0]) == round(0.25 * 1438)
    assert torch.equal(small.train[0], load("digits", seed=2, subset=100).train[0])
    with pytest.raises(DataError, match="larger than"):
        subset(full, 5000)
    with pytest.raises(DataError, match=r"\(0, 1\]"):
        load("digits", subset=1.5)


def test_subset_then_noise_indices_refer_to_the_subset():
    data = load("digits", subset=50, label_noise=0.2, seed=5)
    assert len(data.meta["noisy_indices"]) == 10
    assert max(data.meta["noisy_indices"]) < 50


def test_dtype_device_flatten():
    data = load("digits", flat=False, dtype=torch.float64, device="cpu", flatten=True)
    assert data.train[0].dtype == torch.float64 and data.input_shape == (64,)
    assert data.meta["device"] == "cpu" and data.meta["flatten"] is True
    with pytest.raises(DataError, match="dtype"):
        load("digits", dtype=torch.int32)
    with pytest.raises(DataError, match="device"):
        load("digits", device="nowhere")


def test_load_errors_name_what_is_wrong():
    with pytest.raises(DataError, match="known data sets are digits, mnist1d"):
        load("imagenet")
    with pytest.raises(DataError, match="'colour'.*its options are flat"):
        load("digits", colour=True)
    with pytest.raises(DataError, match="natural train/test split"):
        load("mnist", root=".", test_fraction=0.1)
    with pytest.raises(DataError, match="root="):
        load("cifar10")
    with pytest.raises(DataError, match="not both"):
        load("hidden_manifold", D=3, latent_dim=3)
    with pytest.raises(DataError, match="seed"):
        load("digits", seed=-1)
    assert set(available()) == {
        "digits", "mnist1d", "teacher_student", "hidden_manifold",
        "mnist", "fashion_mnist", "cifar10",
    }  # fmt: skip


# --------------------------------------------------------------------------- generated sets


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_teacher_student_labels_are_teacher_argmax(activation):
    options = {"input_dim": 7, "hidden": (16, 9), "n_classes": 5, "activation": activation}
    data = load("teacher_student", n_samples=400, seed=11, **options)
    teacher = teacher_network(7, (16, 9), 5, activation=activation, seed=11).double()
    with torch.no_grad():
        for x, y in (data.train, data.test):
            assert torch.equal(teacher(x.double()).argmax(1), y)
    assert sum(data.meta["class_counts"]) == 400


def test_teacher_network_leaves_torch_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    teacher_network(5, (4,), 3, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_hidden_manifold_projection_fixed_under_seed():
    a = hidden_manifold_model(latent_dim=4, input_dim=25, n_classes=2, seed=9)
    b = hidden_manifold_model(latent_dim=4, input_dim=25, n_classes=5, seed=9)
    assert torch.equal(a.projection, b.projection)
    assert not torch.equal(a.projection, hidden_manifold_model(4, 25, seed=10).projection)
    # with f = identity every input lies in the D-dim column space of the same F
    options = {"latent_dim": 4, "input_dim": 25, "nonlinearity": "identity", "dtype": torch.float64}
    x1 = load("hidden_manifold", n_samples=60, seed=9, **options).train[0]
    x2 = load("hidden_manifold", n_samples=90, n_classes=3, seed=9, **options).train[0]
    x3 = load("hidden_manifold", n_samples=60, seed=10, **options).train[0]
    assert torch.linalg.matrix_rank(torch.cat([x1, x2])) == 4
    assert torch.linalg.matrix_rank(torch.cat([x1, x3])) == 8
    coef = torch.linalg.lstsq(a.projection / 2.0, x2.T).solution
    assert torch.allclose(a.projection / 2.0 @ coef, x2.T, atol=1e-10)


def test_hidden_manifold_sample_is_the_model():
    model = hidden_manifold_model(latent_dim=5, input_dim=20, seed=0)
    c, x, y = model.sample(50, seed=1)
    assert torch.allclose(x, torch.tanh(c @ model.projection.T / 5**0.5))
    assert torch.equal(y, (c @ model.teacher[0] > 0).long())
    multi = hidden_manifold_model(latent_dim=5, input_dim=20, n_classes=4, seed=0)
    c, _, y = multi.sample(50)
    assert torch.equal(y, (c @ multi.teacher.T).argmax(1))
    assert "latent_dim=5" in repr(multi)


# --------------------------------------------------------------------------- IDX files


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(directory, rng, gz: bool, n_train=12, n_test=5, size=4):
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for base, array in arrays.items():
        raw = _idx(array)
        if gz:
            (directory / (base + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / base).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader(tmp_path, name, gz):
    arrays = _write_idx_set(tmp_path, np.random.default_rng(0), gz)
    data = load(name, root=tmp_path)
    assert data.train[0].shape == (12, 1, 4, 4) and data.test[0].shape == (5, 1, 4, 4)
    assert data.train[0].dtype == torch.float32 and data.n_classes == 10
    assert data.train[1].tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.test[1].tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    pixels = arrays["train-images-idx3-ubyte"] / 255
    assert data.meta["mean"][0] == pytest.approx(pixels.mean())
    assert data.meta["std"][0] == pytest.approx(pixels.std())
    expected = (arrays["t10k-images-idx3-ubyte"] / 255 - pixels.mean()) / pixels.std()
    assert np.allclose(data.test[0][:, 0].numpy(), expected, atol=1e-5)
    assert abs(float(data.train[0].mean())) < 1e-5
    assert len(data.meta["files"]) == 4
    json.dumps(data.meta)
    assert load(name, root=tmp_path, flatten=True).input_shape == (16,)


def test_idx_torchvision_layout(tmp_path):
    _write_idx_set(tmp_path / "MNIST" / "raw", np.random.default_rng(1), gz=False)
    assert len(load("mnist", root=tmp_path).train[0]) == 12


def test_idx_missing_file_names_it(tmp_path):
    _write_idx_set(tmp_path, np.random.default_rng(0), gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as error:
        load("mnist", root=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in message
    assert "'t10k-labels-idx1-ubyte.gz'" in message


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_file_says_which_and_sizes(tmp_path, gz):
    arrays = _write_idx_set(tmp_path, np.random.default_rng(0), gz=False)
    raw = _idx(arrays["train-images-idx3-ubyte"])[:-7]
    target = tmp_path / "train-images-idx3-ubyte"
    if gz:
        target.unlink()
        target = tmp_path / "train-images-idx3-ubyte.gz"
        target.write_bytes(gzip.compress(raw))
    else:
        target.write_bytes(raw)
    expected = 16 + 12 * 4 * 4
    match = rf"train-images-idx3-ubyte.*truncated.*expected {expected} bytes.*found {expected - 7}"
    with pytest.raises(DataError, match=match):
        load("mnist", root=tmp_path)


def test_idx_truncated_gzip_stream(tmp_path):
    arrays = _write_idx_set(tmp_path, np.random.default_rng(0), gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx(arrays["train-labels-idx1-ubyte"]))[:-10])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is truncated or corrupt"):
        load("mnist", root=tmp_path)


def test_read_idx_checks_magic_and_types(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="bad is not an IDX file.*0x12340801"):
        read_idx(path)
    path.write_bytes(_idx(np.zeros((2, 3)), code=0x08))
    assert read_idx(path).shape == (2, 3)
    ints = np.array([1, -2, 300], dtype=">i4")
    path.write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + ints.tobytes())
    assert read_idx(path).tolist() == [1, -2, 300]
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nothing")


# --------------------------------------------------------------------------- CIFAR-10 binary


def _write_cifar(directory, rng, records=3):
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for base in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, records).astype(np.uint8)
        pixels = rng.integers(0, 256, (records, 3072)).astype(np.uint8)
        (directory / base).write_bytes(np.concatenate([labels[:, None], pixels], 1).tobytes())
        written[base] = (labels, pixels)
    return written


def test_cifar10_binary(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-bin", np.random.default_rng(0))
    data = load("cifar10", root=tmp_path)
    assert data.train[0].shape == (15, 3, 32, 32) and data.test[0].shape == (3, 3, 32, 32)
    assert data.train[1][:3].tolist() == written["data_batch_1.bin"][0].tolist()
    assert data.test[1].tolist() == written["test_batch.bin"][0].tolist()
    train = np.concatenate([written[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    train = train.reshape(-1, 3, 32, 32) / 255
    mean, std = train.mean((0, 2, 3)), train.std((0, 2, 3))
    assert np.allclose(data.meta["mean"], mean) and np.allclose(data.meta["std"], std)
    # record layout: 1024 red, then green, then blue bytes, row by row
    red = written["test_batch.bin"][1][0, :1024].reshape(32, 32) / 255
    assert np.allclose(data.test[0][0, 0].numpy(), (red - mean[0]) / std[0], atol=1e-5)
    assert data.meta["classes"][0] == "airplane"


def test_cifar10_truncated_says_which_and_sizes(tmp_path):
    _write_cifar(tmp_path, np.random.default_rng(0))
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        DataError, match=r"data_batch_3.bin is truncated.*multiple of 3073 bytes.*found 9119 bytes"
    ):
        load("cifar10", root=tmp_path)


def test_cifar10_missing_file(tmp_path):
    _write_cifar(tmp_path, np.random.default_rng(0))
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"missing file .*test_batch.bin"):
        load("cifar10", root=tmp_path)


def test_cifar10_pickled_version_refused(tmp_path):
    pickled = tmp_path / "cifar-10-batches-py"
    pickled.mkdir()
    (pickled / "data_batch_1").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(DataError, match="pickled.*binary version"):
        load("cifar10", root=tmp_path)
    with pytest.raises(DataError, match="pickled.*binary version"):
        load("cifar10", root=pickled)


def test_cifar10_non_binary_bytes_refused(tmp_path):
    _write_cifar(tmp_path, np.random.default_rng(0))
    path = tmp_path / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    raw[0] = 0x80  # a pickle's first byte where a label should be
    path.write_bytes(bytes(raw))
    with pytest.raises(
        DataError, match="data_batch_1.bin: byte 128 .*not the CIFAR-10 binary version"
    ):
        load("cifar10", root=tmp_path)


# --------------------------------------------------------------------------- as_pair


def test_as_pair_accepts_dataset_and_pairs():
    data = from_tensors(torch.randn(10, 3), torch.arange(10) % 2)
    assert as_pair(data) is data.train and as_pair(data, "test") is data.test
    x, y = torch.randn(4, 2), torch.arange(4)
    assert as_pair((x, y))[0] is x and as_pair([x, y])[1] is y


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (torch.randn(3, 2), "Dataset or an \\(inputs, targets\\) pair"),
        ((torch.randn(3, 2),), "Dataset or an \\(inputs, targets\\) pair"),
        ((np.zeros((3, 2)), torch.arange(3)), "pair of torch tensors"),
        ((torch.randn(3, 2), torch.arange(4)), "3 inputs but 4 targets"),
        ((torch.randn(0, 2), torch.arange(0)), "empty"),
        ((torch.tensor([[1.0], [float("nan")]]), torch.arange(2)), "NaN or inf"),
    ],
)
def test_as_pair_errors(data, match):
    with pytest.raises(DataError, match=match):
        as_pair(data)


def test_as_pair_bad_split():
    with pytest.raises(DataError, match="'train' or 'test'"):
        as_pair(from_tensors(torch.randn(10, 3), torch.arange(10) % 2), "valid")
