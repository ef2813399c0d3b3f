"""The four data sets of the papers: MNIST, CIFAR-10 airplanes vs ships, UCI Adult and WBCD.

Each loader returns a :class:`Dataset`: NumPy arrays for the training and test splits, the class
names, per-feature bounds in the returned encoding (the box constraints of eq. 5), the one-hot
groups of categorical variables and :meth:`Dataset.decode` back to original units.  Adult and
WBCD are encoded as in sec. 5.2 and 5.3 of Yousefzadeh & O'Leary, *Interpreting Neural Networks
Using Flip Points* (2019).

Where the files come from:

* ``data_dir=`` or else the environment variable ``FLIPLIB_DATA`` names a directory laid out
  like the project's shared data folder (``mnist.npz`` or ``mnist/*-ubyte.gz``,
  ``cifar10_airplane_ship.npz`` or ``cifar-10-python.tar.gz``, ``adult/adult.{data,test}``).
  The loaders only read there: a missing file is an error, never a download.
* Otherwise the user cache (``$XDG_CACHE_HOME/fliplib``, default ``~/.cache/fliplib``), into
  which `pooch <https://www.fatiando.org/pooch>`_ downloads the canonical files on first use.

Every file is checked against :data:`SHA256` (or :data:`MD5`, for files published with an md5
only) before it is read, and a file that fails is never read.  Digests and parsed arrays stay in
memory while the file's modification time and size are unchanged; the loaders return copies.
"""

from __future__ import annotations

import functools
import gzip
import math
import numbers
import os
import pickle
import struct
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "ADULT_UPPER", "CIFAR10_CLASSES", "MD5", "SHA256", "ChecksumError", "DataError",
    "DataFileNotFoundError", "Dataset", "DownloadError", "data_dir", "load_adult", "load_cifar10",
    "load_mnist", "load_wbcd",
]  # fmt: skip

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
ADULT_FILES = ("adult/adult.data", "adult/adult.test")

#: Where each downloadable file comes from.
URLS: dict[str, str] = {
    **{name: MNIST_URL + PurePosixPath(name).name for name in MNIST_IDX},
    **{name: ADULT_URL + PurePosixPath(name).name for name in ADULT_FILES},
    CIFAR10_TARBALL: CIFAR10_URL,
}

#: How many times a failed download is tried again (after 1 s, then 2 s).
DOWNLOAD_RETRIES = 2

#: CIFAR-10 class names in label order.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
)
#: Upper bounds of Adult's continuous variables (sec. 5.2); each is scaled to 0-100 by them.
ADULT_UPPER: dict[str, float] = {
    "age": 100.0, "fnlwgt": 2e6, "education-num": 20.0, "capital-gain": 2e5, "capital-loss": 1e4,
    "hours-per-week": 120.0,
}  # fmt: skip


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
    x_train : ndarray
        Training inputs, samples along axis 0.
    y_train : ndarray
        Training labels (int64, ``0 .. len(class_names) - 1``).
    x_test : ndarray
        Test inputs, samples along axis 0.
    y_test : ndarray
        Test labels (int64).
    class_names : tuple of str
        Name of each label.
    feature_names : tuple of str, optional
        Name of each feature of the (flattened) encoding; None for images.
    lower : ndarray, optional
        Per-feature lower bounds in the returned encoding, shaped like one sample.
    upper : ndarray, optional
        Per-feature upper bounds, likewise.
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
        for x, y, split in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        if self.x_test.shape[1:] != self.sample_shape:
            raise ValueError(f"sample shapes differ: {self.sample_shape} (train) vs {self.x_test.shape[1:]} (test)")
        for bound, value in (("lower", self.lower), ("upper", self.upper)):
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
# Finding, downloading and checking the files


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fliplib"


def data_dir() -> Path:
    """The default data directory: ``$FLIPLIB_DATA`` if set, else ``$XDG_CACHE_HOME/fliplib``
    (``~/.cache/fliplib`` if ``XDG_CACHE_HOME`` is unset)."""
    env = os.environ.get("FLIPLIB_DATA")
    return Path(env).expanduser() if env else _cache_dir()


class _Source(NamedTuple):
    """A data directory, whether missing files may be downloaded into it, and why it was chosen."""

    root: Path
    download: bool
    origin: str


def _source(directory) -> _Source:
    """The directory to read: ``directory``, else ``$FLIPLIB_DATA`` (either must exist), else the
    user cache, the only one into which files are downloaded."""
    if directory is None and not os.environ.get("FLIPLIB_DATA"):
        return _Source(_cache_dir(), download=True, origin="the user cache")
    origin = "the data_dir argument" if directory is not None else "FLIPLIB_DATA"
    root = Path(directory if directory is not None else os.environ["FLIPLIB_DATA"]).expanduser()
    if not root.is_dir():
        raise DataFileNotFoundError(
            f"data directory {root} (from {origin}) "
            f"{'is a file, not a directory' if root.exists() else 'does not exist'}; point {origin} "
            f"at the folder holding the data files, or leave it unset to download them into the "
            f"user cache {_cache_dir()}"
        )
    return _Source(root, download=False, origin=origin)


def _not_found(source: _Source, problem: str, files: str) -> DataFileNotFoundError:
    return DataFileNotFoundError(
        f"{problem} in {source.root} (the directory given by {source.origin}). Copy {files} there, "
        f"point {source.origin} at a directory that has them, or leave both data_dir and "
        f"FLIPLIB_DATA unset to download the files into the user cache {_cache_dir()}"
    )


def _cached_by_file(function):
    """Memoise ``function(path, *args)`` for as long as the file at ``path`` is unchanged."""
    cached = functools.lru_cache(maxsize=8)(lambda path, stamp, *args: function(path, *args))

    @functools.wraps(function)
    def wrapper(path, *args):
        stat = os.stat(path)
        return cached(str(path), (stat.st_mtime_ns, stat.st_size), *args)

    return wrapper


@_cached_by_file
def _file_hash(path: str, algorithm: str) -> str:
    import pooch  # here and in _download, so that importing fliplib does not import pooch

    return pooch.file_hash(path, alg=algorithm)


def _known_hash(name: str) -> tuple[str, str]:
    """The checksum algorithm and digest of data file ``name``, from :data:`SHA256` or :data:`MD5`."""
    return ("sha256", SHA256[name]) if name in SHA256 else ("md5", MD5[name])


def _verify(path: Path, algorithm: str, expected: str, remedy: str) -> Path:
    """``path``, after checking that its digest is ``expected``; a :class:`ChecksumError` if not."""
    actual = _file_hash(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}. "
            f"The file was not used; {remedy}"
        )
    return path


def _fetch(source: _Source, name: str, what: str) -> Path:
    """Path of data file ``name`` in ``source``, checksum verified; downloaded if allowed and missing."""
    path = source.root / name
    if path.is_file():
        remedy = ("it is corrupt or not the canonical file: replace it with a verified copy (or "
                  "delete it, if it is in the user cache, to download it again)")
        return _verify(path, *_known_hash(name), remedy)
    if not source.download:
        raise _not_found(source, f"{what}: file {name} not found", name)
    return _download(source.root, name)


def _download(root: Path, name: str) -> Path:
    """Download data file ``name`` into ``root`` with pooch.

    Pooch writes to a temporary file beside the target, checks its checksum, and only then moves
    it into place; a failed attempt is retried :data:`DOWNLOAD_RETRIES` times.
    """
    import pooch
    import requests  # pooch's HTTP client

    url, (algorithm, digest) = URLS[name], _known_hash(name)
    fetcher = pooch.create(path=root, base_url="", registry={name: f"{algorithm}:{digest}"},
                           urls={name: url}, retry_if_failed=DOWNLOAD_RETRIES)
    advice = (f"put a verified copy of {PurePosixPath(name).name} in a directory and point "
              f"FLIPLIB_DATA at it")
    try:
        return Path(fetcher.fetch(name, progressbar=True))
    except (OSError, requests.RequestException) as error:
        raise DownloadError(
            f"could not download {url} to {root / name}: {error}. Check the network, or {advice}"
        ) from error
    except ValueError as error:  # pooch's report of a checksum mismatch
        raise ChecksumError(
            f"download of {url} failed its checksum ({error}); nothing was stored in "
            f"{(root / name).parent}. Try again later, or {advice}"
        ) from error


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@_cached_by_file
def _read_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: _readonly(archive[key]) for key in archive.files}


# ---------------------------------------------------------------------------------------------
# MNIST (LeCun, Bottou, Bengio & Haffner, Proc. IEEE 86(11), 1998)


@_cached_by_file
def _read_idx(path: str) -> np.ndarray:
    """An unsigned-byte IDX array (LeCun's format: zero, zero, type 0x08, ndim, big-endian sizes)."""
    with gzip.open(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an unsigned-byte IDX file (header {raw[:4]!r})")
    shape = struct.unpack(f">{raw[3]}I", raw[4 : 4 + 4 * raw[3]])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * raw[3])
    if data.size != math.prod(shape):
        raise DataError(f"{path}: header announces shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def _mnist_arrays(source: _Source) -> dict[str, np.ndarray]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    missing = [name for name in MNIST_IDX if not (source.root / name).is_file()]
    if missing and (source.root / MNIST_NPZ).is_file():
        arrays = _read_npz(_fetch(source, MNIST_NPZ, "MNIST"))
        return {key: arrays[key] for key in keys}
    if missing and not source.download:
        problem = (f"MNIST: neither {MNIST_NPZ} nor all four IDX files (missing "
                   f"{', '.join(missing)}) found")
        raise _not_found(source, problem, f"{MNIST_NPZ} or the IDX files")
    return {key: _read_idx(_fetch(source, name, "MNIST")) for key, name in zip(keys, MNIST_IDX)}


def load_mnist(*, data_dir=None) -> Dataset:
    """MNIST handwritten digits (LeCun et al., 1998): 60,000 training and 10,000 test images.

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
    y_train, y_test = (arrays[key].astype(np.int64) for key in ("y_train", "y_test"))
    return Dataset("mnist", x_train, y_train, x_test, y_test, class_names=tuple("0123456789"),
                   lower=np.zeros((28, 28), np.float32), upper=np.ones((28, 28), np.float32))


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009)


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


@_cached_by_file
def _cifar10_from_tarball(path: str, labels: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Images of the classes ``labels`` from the verified python tarball, converted to HWC."""
    arrays = {}
    with tarfile.open(path, "r:gz") as tar:
        for split, names in (("train", [f"data_batch_{k}" for k in range(1, 6)]), ("test", ["test_batch"])):
            # pickle is safe here: the tarball's md5 has passed
            batches = [pickle.load(tar.extractfile(f"cifar-10-batches-py/{name}"), encoding="bytes")
                       for name in names]
            y = np.concatenate([batch[b"labels"] for batch in batches]).astype(np.int64)
            keep = np.flatnonzero(np.isin(y, labels))
            x = np.concatenate([batch[b"data"] for batch in batches])[keep].astype(np.uint8)
            arrays |= {f"x_{split}": x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(),
                       f"y_{split}": y[keep], f"idx_{split}": keep, f"exact_{split}": np.ones(len(keep), bool)}
    return {key: _readonly(value) for key, value in arrays.items()}


def _cifar10_arrays(source: _Source, labels: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The images of ``labels`` with their original labels, indices and exactness flags."""
    labels = tuple(sorted(labels))
    if source.download or (source.root / CIFAR10_TARBALL).is_file():
        return _cifar10_from_tarball(_fetch(source, CIFAR10_TARBALL, "CIFAR-10"), labels)
    names = [CIFAR10_CLASSES[label] for label in labels]
    if not set(names) <= {"airplane", "ship"}:
        problem = (f"CIFAR-10 classes {names} need {CIFAR10_TARBALL} ({CIFAR10_NPZ} holds only "
                   f"airplanes and ships); it is not")
        raise _not_found(source, problem, CIFAR10_TARBALL)
    arrays = _read_npz(_fetch(source, CIFAR10_NPZ, "CIFAR-10 airplanes and ships"))
    keep = {split: np.isin(arrays[f"y_{split}"], labels) for split in ("train", "test")}
    return {key: arrays[key][keep[key.rsplit("_", 1)[1]]] for key in arrays}


def load_cifar10(
    *, classes: Sequence[str] = ("airplane", "ship"), dtype: str = "uint8", data_dir=None
) -> Dataset:
    """CIFAR-10 images (Krizhevsky, 2009) of some classes; by default airplanes and ships, as in the papers.

    The images come from the python tarball ``cifar-10-python.tar.gz`` (exact pixels), which is
    downloaded into the user cache.  A data directory (``data_dir=`` or ``$FLIPLIB_DATA``)
    without the tarball must hold ``cifar10_airplane_ship.npz``, in which only some images have
    the exact canonical pixels and the rest are JPEG-decoded approximations (``extras["exact_*"]``
    says which; see the data folder's README); other classes then raise
    :class:`DataFileNotFoundError`.

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

    return Dataset(
        "cifar10", pixels(arrays["x_train"]), new_label[arrays["y_train"]], pixels(arrays["x_test"]),
        new_label[arrays["y_test"]], class_names=tuple(classes), lower=np.zeros((32, 32, 3), dtype),
        upper=np.full((32, 32, 3), 1 if dtype == "float32" else 255, dtype),
        extras={key: arrays[key].copy() for key in ("idx_train", "idx_test", "exact_train", "exact_test")},
    )


# ---------------------------------------------------------------------------------------------
# UCI Adult (Becker & Kohavi, UCI repository, 1996), encoded as in sec. 5.2


@_cached_by_file
def _read_adult_table(path: str, skip_first_line: bool) -> pd.DataFrame:
    """All records of an Adult file, missing values ('?') as NaN, labels without the trailing '.'."""
    table = pd.read_csv(
        path, header=None, names=list(ADULT_COLUMNS), skipinitialspace=True,
        skiprows=int(skip_first_line), na_values=["?"], keep_default_na=False,
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
    """UCI Adult income (Becker & Kohavi, 1996), encoded as in sec. 5.2 of the paper.

    ``adult.data`` is the training split and ``adult.test`` the test split (its first line is
    skipped and the '.' after its labels removed).  Records with a missing value ('?') are
    dropped.  The six continuous variables are scaled to 0-100 by the upper bounds of
    :data:`ADULT_UPPER` and clipped to [0, 100]; each of the eight categorical variables is
    one-hot encoded, with its categories taken from the training data in sorted order.  Features
    keep the order of the columns in the file, each categorical variable expanded in place.
    This gives 104 features; the paper's network has 107 inputs (Table B1) and the paper does
    not say how it encoded them.

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
    paths = [_fetch(source, name, "UCI Adult") for name in ADULT_FILES]
    train = _read_adult_table(paths[0], False).dropna()
    test = _read_adult_table(paths[1], True).dropna()
    feature_names, groups, categories = _adult_layout(train)
    x_train, x_test = (_encode_adult(table, categories) for table in (train, test))
    y_train, y_test = ((table["income"] == ">50K").to_numpy(np.int64) for table in (train, test))
    return Dataset(
        "adult", x_train, y_train, x_test, y_test, class_names=("<=50K", ">50K"),
        feature_names=feature_names, lower=np.zeros(len(feature_names)),
        upper=np.array([100.0 if name in ADULT_UPPER else 1.0 for name in feature_names]), groups=groups,
        extras={"idx_train": train.index.to_numpy(np.int64), "idx_test": test.index.to_numpy(np.int64)},
        decoder=_adult_decoder(feature_names, groups, categories),
    )


# ---------------------------------------------------------------------------------------------
# Wisconsin diagnostic breast cancer (Street, Wolberg & Mangasarian, 1993), encoded as in sec. 5.3

_WBCD_MEAN, _WBCD_ERROR, _WBCD_WORST = slice(0, 10), slice(10, 20), slice(20, 30)


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


def _check_test_size(test_size, y: np.ndarray) -> None:
    """A ValueError unless ``test_size`` is a fraction giving both splits every class (as sklearn counts)."""
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not 0 < test_size < 1:
        raise ValueError(f"test_size of load_wbcd must be a fraction strictly between 0 and 1, got {test_size!r}")
    n_classes, n_test = len(np.unique(y)), math.ceil(test_size * len(y))
    n_train = math.floor((1 - test_size) * len(y))
    if min(n_test, n_train) < n_classes:
        raise ValueError(
            f"test_size of load_wbcd must leave at least {n_classes} samples (one per class) in each "
            f"split of the {len(y)} samples; {test_size!r} gives {n_train} training and {n_test} test samples"
        )


def load_wbcd(*, test_size: float = 0.2, seed: int = 0) -> Dataset:
    """Wisconsin diagnostic breast cancer data (sklearn's copy of the UCI data), encoded as in sec. 5.3.

    569 samples, 30 features: 10 means, their 10 standard errors and the 10 worst values.
    Each standard error is divided by its mean feature (0 where the mean, and so the error, is
    0).  The mean and worst features are min-max normalised to [0, 1] over the whole data set,
    before the split.  The split is stratified, ``test_size`` of the data for testing, drawn
    with ``seed``; both splits are kept in the original order.

    Bounds: ``lower`` 0 for every feature (all measurements are nonnegative); ``upper`` 1 for
    the mean and worst features and ``inf`` for the ratios, which have no natural upper bound.

    Parameters
    ----------
    test_size : float
        Fraction of the samples in the test split, strictly between 0 and 1.
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
    _check_test_size(test_size, y)
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
        "wbcd", x[idx_train], y[idx_train], x[idx_test], y[idx_test],
        class_names=tuple(str(name) for name in data.target_names), feature_names=feature_names,
        lower=np.zeros(raw.shape[1]), upper=upper, extras={"idx_train": idx_train, "idx_test": idx_test},
        decoder=_wbcd_decoder(feature_names, low, high),
    )
