"""Tests of fliplib.datasets on the real data (through FLIPLIB_DATA) and on fakes in tmp dirs.

The real data are read from ``$FLIPLIB_DATA``, or, if that is unset, from ``../shared/data``
next to the repository; the tests that need them are skipped if neither exists.  Downloads
never leave the machine: the download URLs are pointed at a local HTTP server that serves
given bytes, so pooch's real download path (temporary file, checksum, retries) runs offline.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import math
import os
import pickle
import tarfile
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fliplib import datasets
from fliplib.datasets import (
    ChecksumError,
    DataError,
    DataFileNotFoundError,
    Dataset,
    DownloadError,
    load_adult,
    load_cifar10,
    load_mnist,
    load_wbcd,
)

SHARED = Path(os.environ.get("FLIPLIB_DATA") or Path(__file__).parents[1].parent / "shared" / "data").resolve()

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def shared():
    """Points FLIPLIB_DATA at the real data for the module's lifetime."""
    if not SHARED.is_dir():
        pytest.skip(f"real data not found: set FLIPLIB_DATA or put the data set files in {SHARED}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLIPLIB_DATA", str(SHARED))
        yield SHARED


@pytest.fixture(scope="module")
def mnist(shared):
    return load_mnist()


@pytest.fixture(scope="module")
def cifar(shared):
    return load_cifar10()


@pytest.fixture(scope="module")
def adult(shared):
    return load_adult()


@pytest.fixture(scope="module")
def wbcd():
    return load_wbcd()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty user cache: FLIPLIB_DATA unset, XDG_CACHE_HOME in a tmp dir, no retries."""
    monkeypatch.delenv("FLIPLIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(datasets, "DOWNLOAD_RETRIES", 0)
    return tmp_path / "xdg" / "fliplib"


class Publisher(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (URL path -> bytes) and logs every request in ``server.requested``;
    the first ``server.failures`` requests of each path get a 503."""

    def do_GET(self):
        server = self.server
        server.requested.append(self.path)
        content = server.files.get(self.path)
        if content is None or server.requested.count(self.path) <= server.failures:
            self.send_error(404 if content is None else 503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def local_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Publisher)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(local_server, monkeypatch):
    """The local server, serving nothing yet; every download URL of the loaders points at it."""
    local_server.files, local_server.requested, local_server.failures = {}, [], 0
    for name in datasets.URLS:
        monkeypatch.setitem(datasets.URLS, name, f"http://127.0.0.1:{local_server.server_port}/{name}")
    for variable in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    return local_server


def serve(server, files: dict[str, bytes]) -> None:
    """Publish ``files`` (data-file name -> bytes) on the local server."""
    server.files.update({f"/{name}": content for name, content in files.items()})


def adult_files(source: Path) -> dict[str, bytes]:
    return {name: (source / name).read_bytes() for name in datasets.ADULT_FILES}


def regular_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()] if directory.exists() else []


def link_files(source: Path, target: Path, names) -> None:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).symlink_to(source / name)


# ---------------------------------------------------------------------------------------------
# Data directory


def test_data_dir_prefers_fliplib_data_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIPLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_dir() == tmp_path / "data"
    monkeypatch.delenv("FLIPLIB_DATA")
    assert datasets.data_dir() == tmp_path / "xdg" / "fliplib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.data_dir() == tmp_path / "home" / ".cache" / "fliplib"


def test_missing_data_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIPLIB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataFileNotFoundError, match="nowhere.*FLIPLIB_DATA.*does not exist"):
        load_adult()
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("FLIPLIB_DATA", str(tmp_path / "a-file"))
    with pytest.raises(DataFileNotFoundError, match="a-file.*is a file, not a directory"):
        load_adult()


# ---------------------------------------------------------------------------------------------
# MNIST


def test_mnist_shapes_ranges_and_labels(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    assert mnist.x_train.min() == 0 and mnist.x_train.max() == 1
    assert np.all(mnist.lower == 0) and np.all(mnist.upper == 1) and mnist.lower.shape == (28, 28)
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.class_names == tuple("0123456789")
    # pixels are multiples of 1/255
    np.testing.assert_array_equal(np.round(mnist.x_test[:100] * 255) / 255, mnist.x_test[:100])


def test_mnist_npz_and_idx_files_agree(mnist, tmp_path):
    link_files(SHARED, tmp_path, ["mnist.npz"])
    from_npz = load_mnist(data_dir=tmp_path)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(from_npz, key), getattr(mnist, key)), key


def test_mnist_decode_without_decoder_flattens(mnist):
    frame = mnist.decode(mnist.x_test[3])
    assert frame.shape == (1, 784)
    np.testing.assert_array_equal(frame.to_numpy()[0], mnist.x_test[3].ravel())
    with pytest.raises(ValueError, match="shape"):
        mnist.decode(np.zeros((2, 27, 28)))


def test_mnist_missing_files_are_listed(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DataFileNotFoundError) as error:
        load_mnist(data_dir=tmp_path)
    message = str(error.value)
    assert "mnist.npz" in message and "train-images-idx3-ubyte.gz" in message and str(tmp_path) in message


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_airplane_ship_counts_and_flags(cifar):
    assert cifar.x_train.shape == (10000, 32, 32, 3) and cifar.x_test.shape == (2000, 32, 32, 3)
    assert cifar.x_train.dtype == np.uint8 and cifar.upper.max() == 255 and cifar.lower.max() == 0
    assert cifar.class_names == ("airplane", "ship")
    assert np.bincount(cifar.y_train).tolist() == [5000, 5000]
    assert np.bincount(cifar.y_test).tolist() == [1000, 1000]
    assert cifar.extras["exact_train"].sum() == 1645 and cifar.extras["exact_test"].sum() == 215
    for split, size in (("train", 50000), ("test", 10000)):
        idx = cifar.extras[f"idx_{split}"]
        assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < size


def test_cifar_float32_and_class_order(cifar, shared):
    flipped = load_cifar10(classes=("ship", "airplane"), dtype="float32")
    assert flipped.x_train.dtype == np.float32 and flipped.upper.max() == 1
    assert np.array_equal(flipped.x_test * np.float32(255), cifar.x_test.astype(np.float32))
    np.testing.assert_array_equal(flipped.y_train, 1 - cifar.y_train)
    assert flipped.class_names == ("ship", "airplane")
    ships = load_cifar10(classes=("ship",))
    assert len(ships.x_train) == 5000 and np.all(ships.y_train == 0)
    np.testing.assert_array_equal(ships.extras["idx_train"], cifar.extras["idx_train"][cifar.y_train == 1])


def test_cifar_returns_fresh_arrays(cifar, shared):
    first = load_cifar10()
    first.x_train[:] = 0
    first.extras["exact_train"][:] = False
    second = load_cifar10()
    assert np.array_equal(second.x_train, cifar.x_train)
    assert second.extras["exact_train"].sum() == 1645


def test_cifar_other_classes_need_the_tarball(shared):
    with pytest.raises(DataFileNotFoundError, match="cifar-10-python.tar.gz") as error:
        load_cifar10(classes=("cat", "ship"))
    assert str(SHARED) in str(error.value)


@pytest.mark.parametrize("classes", ["ship", (), ("ship", "ship"), ("boat",)])
def test_cifar_rejects_bad_classes(classes):
    with pytest.raises(ValueError):
        load_cifar10(classes=classes)


def fake_cifar_tarball() -> tuple[bytes, dict]:
    """A tiny cifar-10-python.tar.gz: batches of 7 (train) and 5 (test) rows, pixel = index-coded."""
    rng = np.random.default_rng(0)
    buffer, truth = io.BytesIO(), {}
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split, names, rows in (("train", [f"data_batch_{k}" for k in range(1, 6)], 7), ("test", ["test_batch"], 5)):
            labels = rng.integers(0, 10, size=rows * len(names))
            data = rng.integers(0, 256, size=(rows * len(names), 3072), dtype=np.uint8)
            truth[split] = (labels, data)
            for k, name in enumerate(names):
                part = slice(k * rows, (k + 1) * rows)
                batch = {b"labels": labels[part].tolist(), b"data": data[part], b"batch_label": name.encode()}
                content = pickle.dumps(batch, protocol=2)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue(), truth


def check_against_truth(dataset: Dataset, truth: dict, labels: list[int]) -> None:
    for split in ("train", "test"):
        all_labels, data = truth[split]
        idx = np.flatnonzero(np.isin(all_labels, labels))
        np.testing.assert_array_equal(dataset.extras[f"idx_{split}"], idx)
        np.testing.assert_array_equal(dataset.y_train if split == "train" else dataset.y_test,
                                      [labels.index(label) for label in all_labels[idx]])
        x = dataset.x_train if split == "train" else dataset.x_test
        # HWC: x[n, h, w, c] is value c * 1024 + h * 32 + w of the CIFAR row
        np.testing.assert_array_equal(x, data[idx].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert dataset.extras[f"exact_{split}"].all()


def test_cifar_from_downloaded_tarball(cache, server, monkeypatch):
    content, truth = fake_cifar_tarball()
    monkeypatch.setitem(datasets.MD5, "cifar-10-python.tar.gz", hashlib.md5(content).hexdigest())
    serve(server, {"cifar-10-python.tar.gz": content})
    check_against_truth(load_cifar10(classes=("ship", "cat")), truth, [8, 3])
    assert server.requested == ["/cifar-10-python.tar.gz"]
    assert [path.name for path in regular_files(cache)] == ["cifar-10-python.tar.gz"]
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == content

    check_against_truth(load_cifar10(classes=("frog",)), truth, [6])
    assert server.requested == ["/cifar-10-python.tar.gz"]  # the cached tarball serves again


def test_cifar_from_tarball_in_data_dir_writes_nothing(tmp_path, monkeypatch):
    content, truth = fake_cifar_tarball()
    monkeypatch.setitem(datasets.MD5, "cifar-10-python.tar.gz", hashlib.md5(content).hexdigest())
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(content)
    check_against_truth(load_cifar10(classes=("frog",), data_dir=tmp_path), truth, [6])
    assert [path.name for path in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]
    monkeypatch.setitem(datasets.MD5, "cifar-10-python.tar.gz", "0" * 32)
    with pytest.raises(ChecksumError, match="md5"):
        load_cifar10(classes=("frog",), data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Adult


def read_adult_records(path: Path, *, skip_first_line: bool) -> list[list[str]]:
    """Complete records of an Adult file, parsed independently of the loader."""
    lines = path.read_text().splitlines()[int(skip_first_line):]
    records = [[value.strip() for value in line.split(",")] for line in lines if line.strip()]
    return [record for record in records if "?" not in record]


@pytest.fixture(scope="module")
def adult_records(shared):
    return (read_adult_records(shared / "adult" / "adult.data", skip_first_line=False),
            read_adult_records(shared / "adult" / "adult.test", skip_first_line=True))


def test_adult_encoding(adult):
    assert adult.x_train.shape == (30162, 104) and adult.x_test.shape == (15060, 104)
    assert adult.class_names == ("<=50K", ">50K") and adult.y_train.dtype == np.int64
    continuous = [name for name in adult.feature_names if "=" not in name]
    assert continuous == ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    sizes = {name: len(index) for name, index in adult.groups.items()}
    assert sizes == {"workclass": 7, "education": 16, "marital-status": 7, "occupation": 14,
                     "relationship": 6, "race": 5, "sex": 2, "native-country": 41}
    grouped = np.concatenate(list(adult.groups.values()))
    assert sorted(grouped.tolist() + [adult.feature_names.index(name) for name in continuous]) == list(range(104))
    for name, index in adult.groups.items():
        labels = [adult.feature_names[i].split("=", 1)[1] for i in index]
        assert labels == sorted(labels) and all(adult.feature_names[i].startswith(name + "=") for i in index)
        for x in (adult.x_train, adult.x_test):
            np.testing.assert_array_equal(x[:, index].sum(axis=1), 1)
    assert "race=White" in adult.feature_names
    for x in (adult.x_train, adult.x_test):
        assert np.all(adult.lower <= x) and np.all(x <= adult.upper)
    assert adult.upper[adult.feature_names.index("fnlwgt")] == 100 and adult.upper[grouped].max() == 1


def test_adult_decode_round_trip_matches_the_file(adult, adult_records):
    splits = ((adult.x_train, adult.y_train, adult_records[0]), (adult.x_test, adult.y_test, adult_records[1]))
    for x, y, records in splits:
        assert len(records) == len(x)
        frame = adult.decode(x)
        assert list(frame.columns) == list(datasets.ADULT_COLUMNS[:-1])
        for j, column in enumerate(datasets.ADULT_COLUMNS[:-1]):
            values = [record[j] for record in records]
            if column in datasets.ADULT_UPPER:
                np.testing.assert_allclose(frame[column].to_numpy(), np.array(values, float), rtol=1e-12)
            else:
                assert frame[column].tolist() == values
        np.testing.assert_array_equal(y, [record[14].rstrip(".") == ">50K" for record in records])
    assert np.bincount(adult.y_train).tolist() == [22654, 7508]


def test_adult_idx_points_at_file_records(adult, adult_records, shared):
    lines = (shared / "adult" / "adult.data").read_text().splitlines()
    for i in (0, 1000, 30161):
        assert [value.strip() for value in lines[adult.extras["idx_train"][i]].split(",")] == adult_records[0][i]


def test_adult_decode_of_off_grid_points(adult):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(50, 104))
    continuous = [name for name in adult.feature_names if "=" not in name]
    for name in continuous:
        x[:, adult.feature_names.index(name)] *= 100
    frame = adult.decode(x)
    for name in continuous:
        scaled = x[:, adult.feature_names.index(name)]
        np.testing.assert_allclose(frame[name], scaled * datasets.ADULT_UPPER[name] / 100)
    for name, index in adult.groups.items():
        expected = [adult.feature_names[i].split("=", 1)[1] for i in index[np.argmax(x[:, index], axis=1)]]
        assert frame[name].tolist() == expected


def test_adult_missing_file_is_named(tmp_path, shared):
    link_files(shared, tmp_path, ["adult/adult.data"])
    with pytest.raises(DataFileNotFoundError) as error:
        load_adult(data_dir=tmp_path)
    assert "adult/adult.test" in str(error.value) and str(tmp_path) in str(error.value)
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, DataError)


def test_adult_corrupt_file_is_refused_unread(tmp_path, shared, monkeypatch):
    link_files(shared, tmp_path, ["adult/adult.test"])
    content = bytearray((shared / "adult" / "adult.data").read_bytes())
    content[:2] = b"38"  # still a valid record: only the checksum can tell
    (tmp_path / "adult" / "adult.data").write_bytes(bytes(content))
    actual = hashlib.sha256(content).hexdigest()
    parsed = []
    monkeypatch.setattr(datasets, "_read_adult_table", lambda *args, **kwargs: parsed.append(args))
    with pytest.raises(ChecksumError) as error:
        load_adult(data_dir=tmp_path)
    message = str(error.value)
    assert "adult.data" in message and datasets.SHA256["adult/adult.data"] in message and actual in message
    assert parsed == []


@settings(max_examples=20)
@given(data=st.data())
def test_fliplib_data_files_are_verified(shared, data):
    name = data.draw(st.sampled_from(datasets.ADULT_FILES), label="file")
    content = bytearray((shared / name).read_bytes())
    content[data.draw(st.integers(0, len(content) - 1), label="position")] ^= data.draw(st.integers(1, 255))
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as patch:
        root = Path(directory)
        link_files(shared, root, [other for other in datasets.ADULT_FILES if other != name])
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(bytes(content))
        patch.setenv("FLIPLIB_DATA", directory)
        with pytest.raises(ChecksumError) as error:
            load_adult()
        message = str(error.value)
        assert str(root / name) in message and datasets.SHA256[name] in message
        assert hashlib.sha256(content).hexdigest() in message


def test_fliplib_data_is_never_downloaded_into(tmp_path, shared, server, monkeypatch):
    serve(server, adult_files(shared))
    link_files(shared, tmp_path, ["adult/adult.data"])
    monkeypatch.setenv("FLIPLIB_DATA", str(tmp_path))
    with pytest.raises(DataFileNotFoundError, match="adult/adult.test not found.*FLIPLIB_DATA"):
        load_adult()
    assert server.requested == [] and [path.name for path in tmp_path.rglob("*")] == ["adult", "adult.data"]


# ---------------------------------------------------------------------------------------------
# Downloads into the user cache (never real network)


def test_download_stores_verified_files(cache, shared, server):
    serve(server, adult_files(shared))
    dataset = load_adult()
    assert server.requested == ["/adult/adult.data", "/adult/adult.test"]
    assert dataset.x_train.shape == (30162, 104)
    assert sorted(path.relative_to(cache).as_posix() for path in regular_files(cache)) == list(datasets.ADULT_FILES)
    for name in datasets.ADULT_FILES:
        assert (cache / name).read_bytes() == (shared / name).read_bytes()
    load_adult()
    assert len(server.requested) == 2  # nothing downloaded again


def test_corrupt_cached_file_is_refused_not_replaced(cache, shared, server):
    serve(server, adult_files(shared))
    load_adult()
    corrupt = bytearray((cache / "adult" / "adult.test").read_bytes())
    corrupt[-4] ^= 1  # '>50K.' becomes '>51K.'
    (cache / "adult" / "adult.test").write_bytes(bytes(corrupt))
    with pytest.raises(ChecksumError) as error:
        load_adult()
    message = str(error.value)
    assert str(cache / "adult" / "adult.test") in message and datasets.SHA256["adult/adult.test"] in message
    assert hashlib.sha256(corrupt).hexdigest() in message and "delete it" in message
    assert len(server.requested) == 2 and (cache / "adult" / "adult.test").read_bytes() == corrupt


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_download_failing_its_checksum_leaves_nothing(server, monkeypatch, data):
    content, _ = fake_cifar_tarball()
    monkeypatch.setitem(datasets.MD5, "cifar-10-python.tar.gz", hashlib.md5(content).hexdigest())
    monkeypatch.setattr(datasets, "DOWNLOAD_RETRIES", 0)
    monkeypatch.delenv("FLIPLIB_DATA", raising=False)
    # any truncation, or any one byte changed, of the published file
    cut = data.draw(st.integers(0, len(content) - 1), label="cut")
    position = data.draw(st.integers(0, len(content) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(content)
    changed[position] ^= flip
    served = data.draw(st.sampled_from([content[:cut], bytes(changed)]), label="served")
    serve(server, {"cifar-10-python.tar.gz": served})
    with tempfile.TemporaryDirectory() as home, pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", home)
        with pytest.raises(ChecksumError) as error:
            load_cifar10()
        assert datasets.URLS["cifar-10-python.tar.gz"] in str(error.value)
        assert datasets.MD5["cifar-10-python.tar.gz"] in str(error.value)
        assert hashlib.md5(served).hexdigest() in str(error.value)
        assert regular_files(Path(home)) == []


def test_failed_download_is_retried(cache, server, monkeypatch):
    content, truth = fake_cifar_tarball()
    monkeypatch.setitem(datasets.MD5, "cifar-10-python.tar.gz", hashlib.md5(content).hexdigest())
    monkeypatch.setattr(datasets, "DOWNLOAD_RETRIES", 1)
    serve(server, {"cifar-10-python.tar.gz": content})
    server.failures = 1
    check_against_truth(load_cifar10(classes=("ship",)), truth, [8])
    assert server.requested == ["/cifar-10-python.tar.gz"] * 2


def test_download_failure_leaves_nothing(cache, server):
    with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz.*404.*FLIPLIB_DATA"):
        load_mnist()  # the server has no MNIST
    assert regular_files(cache) == []


def test_download_urls_are_canonical():
    assert set(datasets.URLS) == {*datasets.MNIST_IDX, *datasets.ADULT_FILES, "cifar-10-python.tar.gz"}
    assert set(datasets.URLS) <= {*datasets.SHA256, *datasets.MD5}  # every download is checked
    for name in datasets.MNIST_IDX:
        assert datasets.URLS[name] == "https://storage.googleapis.com/cvdf-datasets/mnist/" + name.split("/")[1]
    for name in datasets.ADULT_FILES:
        assert datasets.URLS[name] == "https://archive.ics.uci.edu/ml/machine-learning-databases/" + name
    assert datasets.URLS["cifar-10-python.tar.gz"] == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


# ---------------------------------------------------------------------------------------------
# Wisconsin breast cancer


def test_wbcd_split_and_bounds(wbcd):
    assert wbcd.x_train.shape == (455, 30) and wbcd.x_test.shape == (114, 30)
    assert wbcd.class_names == ("malignant", "benign")
    idx = np.concatenate([wbcd.extras["idx_train"], wbcd.extras["idx_test"]])
    assert sorted(idx.tolist()) == list(range(569))
    # stratified: both splits have the 212/357 class ratio, up to one sample
    assert abs(np.mean(wbcd.y_test == 0) - 212 / 569) < 1 / 114
    for x in (wbcd.x_train, wbcd.x_test):
        assert np.all(wbcd.lower <= x) and np.all(x <= wbcd.upper)
    assert np.all(np.isinf(wbcd.upper[10:20])) and np.all(wbcd.upper[:10] == 1) and np.all(wbcd.upper[20:] == 1)


def test_wbcd_preprocessing_matches_section_5_3(wbcd):
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer().data
    train = wbcd.extras["idx_train"]
    # standard error of texture divided by mean texture
    np.testing.assert_allclose(wbcd.x_train[:, 11], raw[train, 11] / raw[train, 1], rtol=1e-12)
    # mean and worst features are min-max normalised over the whole data set, before the split
    both = np.concatenate([wbcd.x_train, wbcd.x_test])
    for j in [*range(10), *range(20, 30)]:
        assert both[:, j].min() == 0 and both[:, j].max() == 1
    np.testing.assert_allclose(wbcd.x_train[:, 23], (raw[train, 23] - raw[:, 23].min()) / np.ptp(raw[:, 23]))
    for x, idx in ((wbcd.x_train, train), (wbcd.x_test, wbcd.extras["idx_test"])):
        frame = wbcd.decode(x)
        assert list(frame.columns) == list(wbcd.feature_names)
        np.testing.assert_allclose(frame.to_numpy(), raw[idx], rtol=1e-10, atol=1e-14)


def test_wbcd_seed_decides_the_split(wbcd):
    np.testing.assert_array_equal(load_wbcd().extras["idx_test"], wbcd.extras["idx_test"])
    other = load_wbcd(seed=1, test_size=0.25)
    assert len(other.x_test) == 143 and not np.array_equal(other.extras["idx_test"][:114], wbcd.extras["idx_test"])


@pytest.mark.parametrize(
    "test_size", [0, 1, 0.0, 1.0, -0.2, 1.5, math.nan, math.inf, "0.2", None, True, 100, 0.001, 0.9999]
)
def test_wbcd_rejects_a_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size of load_wbcd") as error:
        load_wbcd(test_size=test_size)
    assert repr(test_size) in str(error.value)


@settings(max_examples=30)
@given(st.floats(allow_nan=True).filter(lambda test_size: not 0 < test_size < 1))
def test_wbcd_test_size_outside_0_1_is_refused(test_size):
    with pytest.raises(ValueError, match="test_size of load_wbcd must be a fraction strictly between 0 and 1"):
        load_wbcd(test_size=test_size)


@settings(max_examples=20)
@given(st.floats(0.01, 0.99))
def test_wbcd_test_size_sets_a_stratified_split(test_size):
    data = load_wbcd(test_size=test_size, seed=3)
    n_test = math.ceil(569 * test_size)
    assert len(data.x_test) == n_test and len(data.x_train) == math.floor(569 * (1 - test_size))
    assert not set(data.extras["idx_train"]) & set(data.extras["idx_test"])
    for label, count in ((0, 212), (1, 357)):
        assert abs(np.sum(data.y_test == label) - n_test * count / 569) <= 1


# ---------------------------------------------------------------------------------------------
# Dataset


def test_dataset_checks_its_arrays():
    with pytest.raises(ValueError, match="samples"):
        Dataset("bad", np.zeros((3, 2)), np.zeros(2), np.zeros((1, 2)), np.zeros(1), ("a", "b"))
    with pytest.raises(ValueError, match="lower"):
        Dataset("bad", np.zeros((3, 2)), np.zeros(3), np.zeros((1, 2)), np.zeros(1), ("a", "b"), lower=np.zeros(3))
    plain = Dataset("ok", np.eye(2), np.arange(2), np.eye(2), np.arange(2), ("a", "b"), feature_names=("u", "v"))
    pd.testing.assert_frame_equal(plain.decode(np.eye(2)), pd.DataFrame(np.eye(2), columns=["u", "v"]))
