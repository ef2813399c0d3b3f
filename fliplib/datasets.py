"""The four data sets of the papers: MNIST, CIFAR-10 airplanes vs ships, UCI Adult and WBCD.

Each loader returns a :class:`Dataset`: plain NumPy arrays for the training and test splits,
the class names, per-feature bounds in the returned encoding (the box constraints of eq. 5),
the one-hot groups of categorical variables and a :meth:`Dataset.decode` back to original
units.  The encodings of Adult and of the Wisconsin breast cancer data follow sec. 5.2 and
5.3 of Yousefzadeh & O'Leary, *Interpreting Neural Networks Using Flip Points* (2019).

Where the files come from
-------------------------
* If ``data_dir=`` is given, or else the environment variable ``FLIPLIB_DATA`` is set, the
  loaders read only from that directory, laid out like the project's shared data folder::

      mnist.npz  or  mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
      cifar10_airplane_ship.npz          (or the full cifar-10-python.tar.gz, see load_cifar10)
      adult/adult.data, adult/adult.test

  Nothing is downloaded and nothing is written there.
* Otherwise they use the user cache (:func:`data_dir`) and download the canonical files into
  it on first use, with ``urllib.request`` and a progress bar.  A download goes to a temporary
  file in the cache and is moved into place only after its checksum has passed.

Every file is checked against the constant tables :data:`SHA256` and :data:`MD5` before use; a
file that fails is refused with a :class:`ChecksumError` and never read.  Parsed arrays are
kept in memory (keyed by path, modification time and size), so loading again is fast; the
loaders return fresh copies, never the cached arrays.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

__all__ = [
    "ADULT_UPPER",
    "CIFAR10_CLASSES",
    "MD5",
    "SHA256",
    "ChecksumError",
    "DataError",
    "DataFileNotFoundError",
    "Dataset",
    "DownloadError",
    "data_dir",
    "load_adult",
    "load_cifar10",
    "load_mnist",
    "load_wbcd",
]

#: sha256 of every data file a loader reads, by path relative to the data directory.  The MNIST
#: IDX files and the Adult files are byte-identical to the canonical distributions.
SHA256: dict[str, str] = {
    "mnist.npz": "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64",
    "mnist/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "cifar10_airplane_ship.npz": "237518bb81c54f9c0e48cabfdc03e847031deeef8788fa1e70f4e6e4efca9376",
    "adult/adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult/adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}

#: md5 of files whose publisher gives only an md5 (the CIFAR-10 python tarball).
MD5: dict[str, str] = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
}

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
ADULT_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

#: Where each downloadable file comes from.
URLS: dict[str, str] = {
    "mnist/train-images-idx3-ubyte.gz": MNIST_URL + "train-images-idx3-ubyte.gz",
    "mnist/train-labels-idx1-ubyte.gz": MNIST_URL + "train-labels-idx1-ubyte.gz",
    "mnist/t10k-images-idx3-ubyte.gz": MNIST_URL + "t10k-images-idx3-ubyte.gz",
    "mnist/t10k-labels-idx1-ubyte.gz": MNIST_URL + "t10k-labels-idx1-ubyte.gz",
    "adult/adult.data": ADULT_URL + "adult.data",
    "adult/adult.test": ADULT_URL + "adult.test",
    "cifar-10-python.tar.gz": CIFAR10_URL,
}

MNIST_NPZ = "mnist.npz"
#: The four IDX files as ``(x_train, y_train, x_test, y_test)``.
MNIST_IDX = (
    "mnist/train-images-idx3-ubyte.gz",
    "mnist/train-labels-idx1-ubyte.gz",
    "mnist/t10k-images-idx3-ubyte.gz",
    "mnist/t10k-labels-idx1-ubyte.gz",
)
CIFAR10_NPZ = "cifar10_airplane_ship.npz"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
#: CIFAR-10 class names in label order.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
ADULT_FILES = ("adult/adult.data", "adult/adult.test")
ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
)
#: Upper bounds of Adult's continuous variables (sec. 5.2); each is scaled to 0-100 by them.
ADULT_UPPER: dict[str, float] = {
    "age": 100.0,
    "fnlwgt": 2e6,
    "education-num": 20.0,
    "capital-gain": 2e5,
    "capital-loss": 1e4,
    "hours-per-week": 120.0,
}

_CHUNK = 1 << 20


class DataError(Exception):
    """A data file is missing, corrupt, or cannot give what was asked for."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file (or the data directory) does not exist and may not be downloaded."""


class ChecksumError(DataError):
    """A file's checksum differs from the table; the file was not used."""


class DownloadError(DataError):
    """A download failed (network or HTTP error); nothing was stored."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split as plain arrays, with what is needed to constrain and read flip points.

    Attributes
    ----------
    name : str
        ``"mnist"``, ``"cifar10"``, ``"adult"`` or ``"wbcd"``.
    x_train, y_train, x_test, y_test : ndarray
        Inputs (samples along axis 0) and integer labels (int64, ``0 .. len(class_names) - 1``).
    class_names : tuple of str
        Name of each label.
    feature_names : tuple of str, optional
        Name of each feature of the (flattened) encoding; None for images.
    lower, upper : ndarray, optional
        Per-feature bounds in the returned encoding, shaped like one sample.
    groups : dict of str to ndarray
        One-hot groups: categorical variable name -> indices of its features.
    extras : dict of str to ndarray
        Per-sample extras, e.g. ``idx_train`` (index in the original data) or ``exact_train``.
    decoder : callable, optional
        Maps a 2-D array of encoded samples to a DataFrame in original units; used by
        :meth:`decode`.  None means the encoding is already in original units.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    decoder: Callable[[np.ndarray], pd.DataFrame] | None = field(default=None, repr=False)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"sample shapes differ: {self.x_train.shape[1:]} (train) vs {self.x_test.shape[1:]} (test)"
            )
        for bound in ("lower", "upper"):
            value = getattr(self, bound)
            if value is not None and value.shape != self.sample_shape:
                raise ValueError(f"{bound} has shape {value.shape}, expected one sample's shape {self.sample_shape}")
        if self.feature_names is not None and len(self.feature_names) != self.n_features:
            raise ValueError(f"{len(self.feature_names)} feature names for {self.n_features} features")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.sample_shape))

    def decode(self, x) -> pd.DataFrame:
        """Encoded samples (one, or a batch along axis 0) as a DataFrame in original units.

        Adult: continuous variables un-scaled, each categorical variable as the category whose
        one-hot feature is largest.  WBCD: the 30 measurements of sklearn's data.  Otherwise
        one column per (flattened) feature, named by ``feature_names`` if there are any.
        """
        x = np.asarray(x)
        if x.shape == self.sample_shape:
            x = x[np.newaxis]
        if x.shape[1:] != self.sample_shape:
            raise ValueError(f"expected samples of shape {self.sample_shape}, got an array of shape {x.shape}")
        if self.decoder is not None:
            return self.decoder(x)
        columns = list(self.feature_names) if self.feature_names is not None else None
        return pd.DataFrame(x.reshape(len(x), -1), columns=columns)


# ---------------------------------------------------------------------------------------------
# Where the files are, and checking them


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fliplib"


def data_dir() -> Path:
    """The default data directory: ``$FLIPLIB_DATA`` if set, else ``$XDG_CACHE_HOME/fliplib``
    (``~/.cache/fliplib`` if ``XDG_CACHE_HOME`` is unset)."""
    env = os.environ.get("FLIPLIB_DATA")
    return Path(env).expanduser() if env else _cache_dir()


@dataclass(frozen=True)
class _Source:
    """A data directory, whether missing files may be downloaded into it, and why it was chosen."""

    root: Path
    download: bool
    origin: str


def _source(directory) -> _Source:
    if directory is not None:
        root, origin = Path(directory).expanduser(), "the data_dir argument"
    elif os.environ.get("FLIPLIB_DATA"):
        root, origin = Path(os.environ["FLIPLIB_DATA"]).expanduser(), "FLIPLIB_DATA"
    else:
        return _Source(_cache_dir(), download=True, origin="the user cache")
    if not root.is_dir():
        raise DataFileNotFoundError(
            f"data directory {root} (from {origin}) {'is a file, not a directory' if root.exists() else 'does not exist'}; "
            f"point {origin} at the folder holding "
            f"the data files, or leave it unset to download them into the user cache {_cache_dir()}"
        )
    return _Source(root, download=False, origin=origin)


def _stamp(path: Path) -> tuple[int, int]:
    """Modification time and size: the key under which parsed contents are cached."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, stamp: tuple[int, int], algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_digest(name: str) -> tuple[str, str]:
    if name in SHA256:
        return "sha256", SHA256[name]
    return "md5", MD5[name]


def _check_digest(path: Path, name: str) -> None:
    algorithm, expected = _expected_digest(name)
    actual = _file_digest(str(path), _stamp(path), algorithm)
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}. The file is "
            "corrupt or not the canonical one and was not used; replace it with a verified copy "
            "(or delete it, if it is in the user cache, to download it again)"
        )


def _missing_file_error(source: _Source, name: str, what: str) -> DataFileNotFoundError:
    return DataFileNotFoundError(
        f"{what}: file {name} not found in {source.root} (the directory given by {source.origin}). "
        f"Copy it there, point {source.origin} at a directory that has it, or leave both data_dir and "
        f"FLIPLIB_DATA unset to download it into the user cache {_cache_dir()}"
    )


def _verified(source: _Source, name: str, what: str) -> Path:
    """Path of data file ``name`` in ``source``, downloaded first if allowed, checksum checked."""
    path = source.root / name
    if not path.is_file():
        if not source.download:
            raise _missing_file_error(source, name, what)
        _download(URLS[name], path, *_expected_digest(name))
    _check_digest(path, name)
    return path


def _download(url: str, target: Path, algorithm: str, expected: str) -> None:
    """Download ``url`` to ``target`` through a temporary file, kept only if its checksum matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    digest = hashlib.new(algorithm)
    try:
        with os.fdopen(handle, "wb") as out:
            with urllib.request.urlopen(url, timeout=60) as response:
                size = response.headers.get("Content-Length")
                with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=f"downloading {target.name}") as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"download of {url} failed its checksum: expected {algorithm} {expected}, got {actual}; "
                f"nothing was stored in {target.parent}. Try again later, or put a verified copy of "
                f"{target.name} in a directory and point FLIPLIB_DATA at it"
            )
        os.replace(temporary, target)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(
            f"could not download {url} to {target}: {error}. Check the network, or put a verified copy "
            f"of {target.name} in a directory and point FLIPLIB_DATA at it"
        ) from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=8)
def _read_npz(path: str, stamp: tuple[int, int]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: _readonly(archive[key]) for key in archive.files}


# ---------------------------------------------------------------------------------------------
# MNIST


@functools.lru_cache(maxsize=8)
def _read_idx(path: str, stamp: tuple[int, int]) -> np.ndarray:
    """An unsigned-byte IDX array (LeCun's format: zero, zero, type 0x08, ndim, big-endian sizes)."""
    with gzip.open(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an unsigned-byte IDX file (header {raw[:4]!r})")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header announces shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def _mnist_arrays(source: _Source) -> dict[str, np.ndarray]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    have_idx = all((source.root / name).is_file() for name in MNIST_IDX)
    if not have_idx and (source.root / MNIST_NPZ).is_file():
        path = _verified(source, MNIST_NPZ, "MNIST")
        arrays = _read_npz(str(path), _stamp(path))
        return {key: arrays[key] for key in keys}
    if not have_idx and not source.download:
        missing = [name for name in MNIST_IDX if not (source.root / name).is_file()]
        raise DataFileNotFoundError(
            f"MNIST: neither {MNIST_NPZ} nor all four IDX files found in {source.root} (the directory given "
            f"by {source.origin}); missing {', '.join(missing)}. Copy {MNIST_NPZ} or the IDX files there, or "
            f"leave both data_dir and FLIPLIB_DATA unset to download them into the user cache {_cache_dir()}"
        )
    paths = [_verified(source, name, "MNIST") for name in MNIST_IDX]
    return {key: _read_idx(str(path), _stamp(path)) for key, path in zip(keys, paths)}


def load_mnist(*, data_dir=None) -> Dataset:
    """MNIST handwritten digits: 60,000 training and 10,000 test images.

    Reads the four canonical IDX files (``mnist/*.gz``) if present, else ``mnist.npz``; in the
    user cache, downloads the IDX files from Google's CVDF mirror of LeCun's site.

    Parameters
    ----------
    data_dir : str or path, optional
        Directory to read from instead of ``$FLIPLIB_DATA`` or the user cache.

    Returns
    -------
    Dataset
        ``x_*`` of shape ``(n, 28, 28)``, float32 in [0, 1] (pixel / 255); ``y_*`` int64;
        class names ``"0"`` to ``"9"``; ``lower`` 0 and ``upper`` 1 for every pixel.
    """
    arrays = _mnist_arrays(_source(data_dir))
    x_train, x_test = (np.divide(arrays[key], np.float32(255), dtype=np.float32) for key in ("x_train", "x_test"))
    return Dataset(
        name="mnist",
        x_train=x_train,
        y_train=arrays["y_train"].astype(np.int64),
        x_test=x_test,
        y_test=arrays["y_test"].astype(np.int64),
        class_names=tuple(str(digit) for digit in range(10)),
        lower=np.zeros((28, 28), np.float32),
        upper=np.ones((28, 28), np.float32),
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar10_labels(classes: Sequence[str]) -> tuple[int, ...]:
    """CIFAR-10 label of each requested class name, checking the request."""
    if isinstance(classes, str) or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty sequence of CIFAR-10 class names, got {classes!r}")
    unknown = [name for name in classes if name not in CIFAR10_CLASSES]
    if unknown:
        raise ValueError(f"unknown CIFAR-10 classes {unknown}; the classes are {', '.join(CIFAR10_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes repeat a name: {tuple(classes)}")
    return tuple(CIFAR10_CLASSES.index(name) for name in classes)


@functools.lru_cache(maxsize=4)
def _cifar10_from_tarball(path: str, stamp: tuple[int, int], labels: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Images of the classes ``labels`` (sorted) from the python tarball, HWC, all exact."""
    batches = {"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]}
    arrays = {}
    with tarfile.open(path, "r:gz") as tar:
        for split, names in batches.items():
            images, targets, indices, offset = [], [], [], 0
            for name in names:
                with tar.extractfile(f"cifar-10-batches-py/{name}") as file:
                    batch = pickle.load(file, encoding="bytes")  # the md5 of the tarball was checked
                data, batch_labels = np.asarray(batch[b"data"], np.uint8), np.asarray(batch[b"labels"], np.int64)
                keep = np.flatnonzero(np.isin(batch_labels, labels))
                images.append(data[keep].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                targets.append(batch_labels[keep])
                indices.append(offset + keep)
                offset += len(batch_labels)
            arrays[f"x_{split}"] = _readonly(np.ascontiguousarray(np.concatenate(images)))
            arrays[f"y_{split}"] = _readonly(np.concatenate(targets))
            arrays[f"idx_{split}"] = _readonly(np.concatenate(indices))
            arrays[f"exact_{split}"] = _readonly(np.ones(len(arrays[f"y_{split}"]), bool))
    return arrays


def _save_npz_with_digest(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (compressed npz) and its sha256 to ``path.sha256``, each atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    content = buffer.getvalue()
    _write_atomic(path, content)
    _write_atomic(path.with_name(path.name + ".sha256"), hashlib.sha256(content).hexdigest().encode())


def _write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _read_npz_with_digest(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays of a cache file written by :func:`_save_npz_with_digest`; None if it is not (fully) there."""
    digest_path = path.with_name(path.name + ".sha256")
    if not (path.is_file() and digest_path.is_file()):
        return None
    expected = digest_path.read_text().strip()
    actual = _file_digest(str(path), _stamp(path), "sha256")
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for the cached file {path}: expected sha256 {expected} (from {digest_path.name}), "
            f"got {actual}. Delete both files to rebuild them from {CIFAR10_TARBALL}"
        )
    return _read_npz(str(path), _stamp(path))


def _cifar10_arrays(source: _Source, labels: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The images of ``labels`` with their original labels, indices and exactness flags."""
    labels = tuple(sorted(labels))
    names = [CIFAR10_CLASSES[label] for label in labels]
    if source.download:
        cached = source.root / "cifar10" / f"{'_'.join(names)}.npz"
        arrays = _read_npz_with_digest(cached)
        if arrays is None:
            tarball = _verified(source, CIFAR10_TARBALL, "CIFAR-10")
            arrays = _cifar10_from_tarball(str(tarball), _stamp(tarball), labels)
            _save_npz_with_digest(cached, arrays)
        return arrays
    if (source.root / CIFAR10_TARBALL).is_file():
        tarball = _verified(source, CIFAR10_TARBALL, "CIFAR-10")
        return _cifar10_from_tarball(str(tarball), _stamp(tarball), labels)
    if not set(names) <= {"airplane", "ship"}:
        raise DataFileNotFoundError(
            f"CIFAR-10 classes {names} need the full python tarball {CIFAR10_TARBALL}, which is not in "
            f"{source.root} (the directory given by {source.origin}); {CIFAR10_NPZ} holds only airplanes and "
            f"ships. Put {CIFAR10_TARBALL} there, or leave both data_dir and FLIPLIB_DATA unset to download it "
            f"into the user cache {_cache_dir()}"
        )
    path = _verified(source, CIFAR10_NPZ, "CIFAR-10 airplanes and ships")
    arrays = _read_npz(str(path), _stamp(path))
    keep = {split: np.isin(arrays[f"y_{split}"], labels) for split in ("train", "test")}
    return {key: arrays[key][keep[key.rsplit("_", 1)[1]]] for key in arrays}


def load_cifar10(*, classes: Sequence[str] = ("airplane", "ship"), dtype: str = "uint8", data_dir=None) -> Dataset:
    """CIFAR-10 images of some classes (by default airplanes and ships, as in the papers).

    From a data directory (``data_dir=`` or ``$FLIPLIB_DATA``) the images come from the full
    python tarball ``cifar-10-python.tar.gz`` if it is there (exact pixels), else from
    ``cifar10_airplane_ship.npz``: all 10,000 + 2,000 airplane and ship images, of which only
    1,645 + 215 have the exact canonical pixels and the rest are JPEG-decoded approximations
    (``extras["exact_*"]`` says which); other classes then raise :class:`DataFileNotFoundError`.
    In the user cache, the tarball is downloaded (md5-checked) and the subset, all exact, is
    cached as ``cifar10/<classes>.npz``.

    Parameters
    ----------
    classes : sequence of str
        CIFAR-10 class names; label ``k`` is ``classes[k]``.
    dtype : {"uint8", "float32"}
        Pixels as stored (0-255) or scaled to [0, 1].
    data_dir : str or path, optional
        Directory to read from instead of ``$FLIPLIB_DATA`` or the user cache.

    Returns
    -------
    Dataset
        ``x_*`` of shape ``(n, 32, 32, 3)`` (HWC) in the original CIFAR-10 order; ``y_*`` int64;
        ``class_names = classes``; ``lower`` 0 and ``upper`` 255 (uint8) or 1 (float32);
        ``extras``: ``idx_train``/``idx_test`` (index in the original 50,000 / 10,000 images)
        and ``exact_train``/``exact_test`` (bool).
    """
    labels = _cifar10_labels(classes)
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"dtype must be 'uint8' or 'float32', got {dtype!r}")
    arrays = _cifar10_arrays(_source(data_dir), labels)
    new_label = np.zeros(len(CIFAR10_CLASSES), np.int64)
    new_label[list(labels)] = np.arange(len(labels))

    def pixels(x: np.ndarray) -> np.ndarray:
        return np.divide(x, np.float32(255), dtype=np.float32) if dtype == "float32" else x.copy()

    top = 1 if dtype == "float32" else 255
    return Dataset(
        name="cifar10",
        x_train=pixels(arrays["x_train"]),
        y_train=new_label[arrays["y_train"]],
        x_test=pixels(arrays["x_test"]),
        y_test=new_label[arrays["y_test"]],
        class_names=tuple(classes),
        lower=np.zeros((32, 32, 3), dtype),
        upper=np.full((32, 32, 3), top, dtype),
        extras={key: arrays[key].copy() for key in ("idx_train", "idx_test", "exact_train", "exact_test")},
    )


# ---------------------------------------------------------------------------------------------
# UCI Adult (sec. 5.2)


@functools.lru_cache(maxsize=4)
def _read_adult_table(path: str, stamp: tuple[int, int], skip_first_line: bool) -> pd.DataFrame:
    """All records of an Adult file, missing values ('?') as NaN, labels without the trailing '.'."""
    table = pd.read_csv(
        path, header=None, names=list(ADULT_COLUMNS), skipinitialspace=True, skiprows=int(skip_first_line),
        na_values=["?"], keep_default_na=False,
    )
    table["income"] = table["income"].str.rstrip(".")
    unknown = set(table["income"]) - {"<=50K", ">50K"}
    if unknown:
        raise DataError(f"{path}: unexpected income labels {sorted(unknown)}")
    return table


def _adult_layout(train: pd.DataFrame) -> tuple[tuple[str, ...], dict[str, np.ndarray], dict[str, list[str]]]:
    """Feature names, one-hot groups and categories (sorted, from the training data)."""
    names, groups, categories = [], {}, {}
    for column in ADULT_COLUMNS[:-1]:
        if column in ADULT_UPPER:
            names.append(column)
            continue
        categories[column] = sorted(train[column].unique())
        groups[column] = np.arange(len(names), len(names) + len(categories[column]))
        names.extend(f"{column}={category}" for category in categories[column])
    return tuple(names), groups, categories


def _encode_adult(table: pd.DataFrame, categories: dict[str, list[str]]) -> np.ndarray:
    """Continuous variables as ``100 * value / upper`` (clipped to [0, 100]), categorical one-hot."""
    blocks = []
    for column in ADULT_COLUMNS[:-1]:
        if column in ADULT_UPPER:
            scaled = 100.0 * table[column].to_numpy(np.float64) / ADULT_UPPER[column]
            blocks.append(np.clip(scaled, 0.0, 100.0)[:, np.newaxis])
            continue
        codes = pd.Categorical(table[column], categories=categories[column]).codes
        if np.any(codes < 0):
            unseen = sorted(set(table[column][codes < 0]))
            raise DataError(f"Adult: {column} values {unseen} do not occur in the training data")
        blocks.append(np.eye(len(categories[column]))[codes])
    return np.hstack(blocks)


def _adult_decoder(feature_names: tuple[str, ...], groups: dict[str, np.ndarray],
                   categories: dict[str, list[str]]) -> Callable[[np.ndarray], pd.DataFrame]:
    def decode(x: np.ndarray) -> pd.DataFrame:
        columns = {}
        for column in ADULT_COLUMNS[:-1]:
            if column in ADULT_UPPER:
                columns[column] = x[:, feature_names.index(column)] * ADULT_UPPER[column] / 100.0
            else:
                codes = np.argmax(x[:, groups[column]], axis=1)
                columns[column] = np.asarray(categories[column], dtype=object)[codes]
        return pd.DataFrame(columns)

    return decode


def load_adult(*, data_dir=None) -> Dataset:
    """UCI Adult income, encoded as in sec. 5.2 of the paper.

    ``adult.data`` is the training split and ``adult.test`` the test split (its first line is
    skipped and the '.' after its labels removed).  Records with a missing value ('?') are
    dropped: 30,162 of 32,561 training and 15,060 of 16,281 test records remain.

    The six continuous variables (age, fnlwgt, education-num, capital-gain, capital-loss,
    hours-per-week) are scaled to 0-100 by the upper bounds 100, 2e6, 20, 2e5, 1e4 and 120
    (:data:`ADULT_UPPER`), and clipped to [0, 100]; in the canonical files no value exceeds its
    bound, so nothing is clipped.  Each of the eight categorical variables (workclass,
    education, marital-status, occupation, relationship, race, sex, native-country) is one-hot
    encoded, with its categories taken from the training data in sorted order.  Features keep
    the order of the columns in the file, each categorical variable expanded in place.

    This gives **104 features**: 6 continuous plus 7 + 16 + 7 + 14 + 6 + 5 + 2 + 41 = 98 one-hot.
    The paper's network has 107 inputs (Table B1), and the paper does not say how it got them.
    Keeping '?' as a category of its own instead of dropping records would give 108 (workclass
    9: '?' and 'Never-worked', whose records all lack the occupation; occupation 15;
    native-country 42).  'education' and 'education-num' carry the same information.

    Parameters
    ----------
    data_dir : str or path, optional
        Directory to read from instead of ``$FLIPLIB_DATA`` or the user cache.

    Returns
    -------
    Dataset
        ``x_*`` float64 of shape ``(n, 104)``; ``y_*`` 1 for '>50K'; class names
        ``('<=50K', '>50K')``; ``lower`` 0 everywhere, ``upper`` 100 for continuous and 1 for
        one-hot features; ``groups``: variable -> indices of its one-hot features;
        ``feature_names`` like ``'age'`` or ``'race=White'``; ``extras``: ``idx_train`` /
        ``idx_test``, the 0-based record number in the file (before dropping).
        :meth:`Dataset.decode` gives original units and category names.
    """
    source = _source(data_dir)
    paths = [_verified(source, name, "UCI Adult") for name in ADULT_FILES]
    train = _read_adult_table(str(paths[0]), _stamp(paths[0]), skip_first_line=False).dropna()
    test = _read_adult_table(str(paths[1]), _stamp(paths[1]), skip_first_line=True).dropna()
    feature_names, groups, categories = _adult_layout(train)
    is_continuous = np.array([name in ADULT_UPPER for name in feature_names])
    return Dataset(
        name="adult",
        x_train=_encode_adult(train, categories),
        y_train=(train["income"] == ">50K").to_numpy(np.int64),
        x_test=_encode_adult(test, categories),
        y_test=(test["income"] == ">50K").to_numpy(np.int64),
        class_names=("<=50K", ">50K"),
        feature_names=feature_names,
        lower=np.zeros(len(feature_names)),
        upper=np.where(is_continuous, 100.0, 1.0),
        groups=groups,
        extras={"idx_train": train.index.to_numpy(np.int64), "idx_test": test.index.to_numpy(np.int64)},
        decoder=_adult_decoder(feature_names, groups, categories),
    )


# ---------------------------------------------------------------------------------------------
# Wisconsin breast cancer (sec. 5.3)

_WBCD_MEAN = slice(0, 10)
_WBCD_ERROR = slice(10, 20)
_WBCD_WORST = slice(20, 30)


def _wbcd_ratios(raw: np.ndarray) -> np.ndarray:
    """Each standard-error feature divided by its mean feature (0 where both are 0)."""
    mean, error = raw[:, _WBCD_MEAN], raw[:, _WBCD_ERROR]
    if np.any((mean == 0) & (error != 0)):
        raise DataError("WBCD: a standard error is nonzero where its mean feature is zero")
    return np.divide(error, mean, out=np.zeros_like(error), where=mean != 0)


def _wbcd_decoder(feature_names: tuple[str, ...], low: np.ndarray, high: np.ndarray
                  ) -> Callable[[np.ndarray], pd.DataFrame]:
    def decode(x: np.ndarray) -> pd.DataFrame:
        raw = low + x * (high - low)
        raw[:, _WBCD_ERROR] = x[:, _WBCD_ERROR] * raw[:, _WBCD_MEAN]
        return pd.DataFrame(raw, columns=list(feature_names))

    return decode


def load_wbcd(*, test_size: float = 0.2, seed: int = 0) -> Dataset:
    """Wisconsin diagnostic breast cancer data (sklearn's copy), encoded as in sec. 5.3.

    569 samples, 30 features: 10 means, their 10 standard errors and the 10 worst values.
    Each standard error is divided by its mean feature (the 13 samples with a mean concavity or
    mean concave points of 0 have a standard error of 0 there too; their ratio is set to 0).
    The mean and worst features are min-max normalised to [0, 1] over the whole data set,
    before the split.  The split is stratified, ``test_size`` of the data for testing, drawn
    with ``seed``; both splits are kept in the original order.

    Bounds: ``lower`` 0 for every feature (all measurements are nonnegative); ``upper`` 1 for
    the mean and worst features and ``inf`` for the ratios, which have no natural upper bound
    (the largest in the data is 1.0, for concavity and concave points).

    Parameters
    ----------
    test_size : float
        Fraction of the samples in the test split.
    seed : int
        Seed of the random split.

    Returns
    -------
    Dataset
        ``x_*`` float64 of shape ``(n, 30)`` (455 + 114 samples by default); ``y_*`` int64 with
        sklearn's coding, ``class_names = ('malignant', 'benign')``; ``feature_names``
        sklearn's names; ``extras``: ``idx_train`` / ``idx_test``, the row in sklearn's data.
        :meth:`Dataset.decode` gives back sklearn's measurements.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    raw, y = data.data.astype(np.float64), data.target.astype(np.int64)
    feature_names = tuple(str(name) for name in data.feature_names)
    low, high = np.zeros(raw.shape[1]), np.ones(raw.shape[1])
    for part in (_WBCD_MEAN, _WBCD_WORST):
        low[part], high[part] = raw[:, part].min(axis=0), raw[:, part].max(axis=0)
    x = (raw - low) / (high - low)
    x[:, _WBCD_ERROR] = _wbcd_ratios(raw)
    split = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)
    idx_train, idx_test = (np.sort(part) for part in split)
    upper = np.ones(raw.shape[1])
    upper[_WBCD_ERROR] = np.inf
    return Dataset(
        name="wbcd",
        x_train=x[idx_train],
        y_train=y[idx_train],
        x_test=x[idx_test],
        y_test=y[idx_test],
        class_names=tuple(str(name) for name in data.target_names),
        feature_names=feature_names,
        lower=np.zeros(raw.shape[1]),
        upper=upper,
        extras={"idx_train": idx_train, "idx_test": idx_test},
        decoder=_wbcd_decoder(feature_names, low, high),
    )
