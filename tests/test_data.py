"""Data: bundled digits, .npz files and the on-disk MNIST/CIFAR formats, read without
downloading."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from landscape.data import Batches, Split, augment, load_data, subsample
from landscape.errors import LandscapeError


def test_digits_split_is_deterministic_and_standardised():
    a, b = load_data("digits"), load_data("digits")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert abs(float(a.train.x.mean())) < 1e-5 and abs(float(a.train.x.std()) - 1) < 1e-2


def test_npz_with_and_without_test(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 3, 4, 4)).astype(np.float32), rng.integers(0, 3, 50)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    np.savez(tmp_path / "b.npz", x_train=x.transpose(0, 2, 3, 1), y_train=y)
    a = load_data(str(tmp_path / "a.npz"))
    assert len(a.test) == 10 and a.input_shape == (3, 4, 4) and a.num_classes == 3
    b = load_data(str(tmp_path / "b.npz"))
    assert b.input_shape == (3, 4, 4) and len(b.test) == 10  # NHWC converted, 20% held out


def test_home_directory_is_expanded(tmp_path, monkeypatch):
    """`cifar10:~/data` reaches us unexpanded (the shell expands ~ only at the start of a word)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "a.npz",
        x_train=rng.random((20, 4)).astype(np.float32),
        y_train=rng.integers(0, 2, 20),
    )
    assert len(load_data("~/a.npz").train) + len(load_data("~/a.npz").val) == 16
    with pytest.raises(LandscapeError, match="not found"):
        load_data("mnist:~/missing")


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    xtr, ytr = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 10, 30)
    _idx(raw / "train-images-idx3-ubyte.gz", xtr)
    _idx(raw / "train-labels-idx1-ubyte.gz", ytr)
    _idx(raw / "t10k-images-idx3-ubyte.gz", xtr[:5])
    _idx(raw / "t10k-labels-idx1-ubyte.gz", ytr[:5])
    ds = load_data(f"mnist:{tmp_path}")
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and len(ds.test) == 5
    assert torch.equal(ds.test.y, torch.from_numpy(ytr[:5]).long())


def _cifar_batch(path, n, rng, key=b"labels", classes=10):
    with open(path, "wb") as fh:
        pickle.dump(
            {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                key: list(rng.integers(0, classes, n)),
            },
            fh,
        )


def test_cifar10_and_cifar100_python_batches(tmp_path):
    rng = np.random.default_rng(2)
    d10 = tmp_path / "c10" / "cifar-10-batches-py"
    d10.mkdir(parents=True)
    for i in range(1, 6):
        _cifar_batch(d10 / f"data_batch_{i}", 4, rng)
    _cifar_batch(d10 / "test_batch", 3, rng)
    ds = load_data(f"cifar10:{tmp_path / 'c10'}")
    assert ds.input_shape == (3, 32, 32) and len(ds.train) + len(ds.val) == 20 and ds.augment
    d100 = tmp_path / "c100" / "cifar-100-python"
    d100.mkdir(parents=True)
    _cifar_batch(d100 / "train", 10, rng, b"fine_labels", 100)
    _cifar_batch(d100 / "test", 4, rng, b"fine_labels", 100)
    assert load_data(f"cifar100:{tmp_path / 'c100'}").num_classes == 100


@pytest.mark.parametrize(
    "spec,match",
    [
        ("imagenet", "unknown dataset"),
        ("mnist:/no/such/dir", "not found"),
        ("/no/file.npz", "not found"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(LandscapeError, match=match):
        load_data(spec)


def test_negative_labels_rejected(tmp_path):
    np.savez(tmp_path / "n.npz", x_train=np.zeros((10, 4), np.float32), y_train=np.arange(10) - 1)
    with pytest.raises(LandscapeError, match="labels out of range"):
        load_data(str(tmp_path / "n.npz"))


def test_subsample_and_batches_cover_each_example_once():
    s = Split(torch.arange(100.0)[:, None], torch.arange(100))
    sub = subsample(s, 30, seed=5)
    assert len(sub) == 30 and len(set(sub.y.tolist())) == 30
    assert torch.equal(sub.y, subsample(s, 30, seed=5).y)
    seen = torch.cat([y for _, y in Batches(s, 7)])
    assert torch.equal(seen, s.y)


def test_augment_crops_and_flips_within_bounds():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = augment(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    zero_shift = augment(x, torch.Generator().manual_seed(0), pad=0)
    assert all(
        torch.equal(zero_shift[i], x[i]) or torch.equal(zero_shift[i], x[i].flip(-1))
        for i in range(2)
    )
