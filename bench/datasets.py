"""Data sets for the benchmarks: synthetic Gaussian blobs with fixed seeds,
and Fashion-MNIST from Debian's `dataset-fashion-mnist` package."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def blobs(n: int, d: int, k: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """n points around k centres in d dimensions (synthetic)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    x = centres[labels] + rng.normal(size=(n, d))
    return np.ascontiguousarray(x, dtype=dtype)


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(directory: str = FASHION_MNIST_DIR) -> np.ndarray:
    """All 70,000 Fashion-MNIST images as a 70,000 x 784 float32 matrix
    (pixel values 0..255). Raises FileNotFoundError when the Debian package
    is not installed (`apt-get install dataset-fashion-mnist`)."""
    parts = []
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        for name in (stem + ".gz", stem):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                parts.append(_read_idx(path))
                break
        else:
            raise FileNotFoundError(f"{stem}[.gz] not found in {directory}")
    images = np.concatenate(parts)
    return np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.float32)
