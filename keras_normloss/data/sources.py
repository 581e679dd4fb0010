"""Where an in-memory dataset's images come from, without TensorFlow: IDX files, Keras's dataset
cache (MNIST, CIFAR), the subsets shipped with the package, and generated data.

The readers that need TensorFlow (tensorflow-datasets, `keras.utils.image_dataset_from_directory`)
are in `tf_sources`; image folders without TensorFlow in `folders`. Every reader returns an
`Arrays` of uint8 images (N, H, W, C) and int labels, or fails at once with
`DatasetNotPreparedError` (nothing there; says where it looked and how to get it) or
`MalformedDatasetError` (something there, but not what it should be). Nothing is downloaded
unless `download=True`.
"""

import dataclasses
import gzip
import importlib.resources
import os
import pickle
import tarfile
import zlib

import numpy as np

from keras_normloss.errors import DatasetNotPreparedError, MalformedDatasetError


@dataclasses.dataclass(frozen=True)
class Arrays:
    """A dataset in memory.

    Attributes:
        train_images, test_images: uint8 arrays (N, H, W, C).
        train_labels, test_labels: int arrays (N,).
        num_classes: the number of labels.
        source: where it was read from, for the user.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    source: str


def keras_cache_dir():
    """Keras's dataset cache: `$KERAS_HOME/datasets` (default `~/.keras/datasets`), as
    `keras.utils.get_file` uses it."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)

# The four files of the MNIST format, as LeCun's and Zalando's sites name them; each may be
# gzipped (`.gz`), as Keras's cache and Debian's dataset-fashion-mnist keep them.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, 3 dims (images) or 1 (labels)
MNIST_LIKE = {
    "fashion_mnist": dict(
        keras_subdir="fashion-mnist",
        system_dir="/usr/share/datasets/fashion-mnist",
        how=(
            "on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (no other download), "
            "or get the four files from https://github.com/zalandoresearch/fashion-mnist "
            "into a directory given as --data-dir, or run again with --download (Keras downloads "
            "them into its cache)"
        ),
    ),
    "mnist": dict(
        keras_subdir="mnist",
        system_dir="/usr/share/datasets/mnist",
        how=(
            "put the four IDX files of https://yann.lecun.com/exdb/mnist/ in a directory given "
            "as --data-dir, or run again with --download (Keras downloads mnist.npz into its "
            "cache)"
        ),
    ),
}


def _idx_path(directory, stem):
    for name in (stem, f"{stem}.gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_idx(path, dims):
    """Reads one IDX file (gzipped or not) of unsigned bytes with `dims` dimensions.

    Raises:
        MalformedDatasetError: if it is not such a file, or is cut short.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise MalformedDatasetError(f"{path}: cannot be read ({error})") from None
    header = 4 + 4 * dims
    if len(raw) < header or int.from_bytes(raw[:4], "big") != _IDX_MAGIC[dims]:
        raise MalformedDatasetError(
            f"{path}: not an IDX file of {dims}-dimensional unsigned bytes (bad header)"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(raw) - header != int(np.prod(shape)):
        raise MalformedDatasetError(
            f"{path}: the header says {shape} but the file holds {len(raw) - header} bytes of "
            "data (truncated?)"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx_dir(directory, num_classes=10):
    """Reads the four IDX files of an MNIST-format dataset from `directory`.

    Returns:
        `Arrays` (images with a channel axis of 1), or None if a file is missing.

    Raises:
        MalformedDatasetError: if a file is damaged or the splits do not fit together.
    """
    paths = {
        split: [_idx_path(directory, stem) for stem in stems] for split, stems in IDX_FILES.items()
    }
    if any(p is None for pair in paths.values() for p in pair):
        return None
    splits = {}
    for split, (images_path, labels_path) in paths.items():
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise MalformedDatasetError(
                f"{directory}: {len(images)} {split} images but {len(labels)} labels"
            )
        if labels.size and labels.max() >= num_classes:
            raise MalformedDatasetError(
                f"{labels_path}: label {labels.max()} outside 0..{num_classes - 1}"
            )
        splits[split] = (images[..., None], labels.astype(np.int64))
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise MalformedDatasetError(f"{directory}: train and test images differ in size")
    return Arrays(*splits["train"], *splits["test"], num_classes, source=directory)


def mnist_like(name, data_dir=None, download=False):
    """MNIST or Fashion-MNIST from IDX files.

    Looks in `data_dir` only if it is given; otherwise in Keras's cache
    (`$KERAS_HOME/datasets/fashion-mnist/`, or `mnist.npz` there) and then where Debian's
    dataset package puts it (`/usr/share/datasets/fashion-mnist/`). With `download`, a dataset
    found nowhere is fetched by `keras.datasets.<name>.load_data()`.

    Raises:
        DatasetNotPreparedError: found nowhere and `download` is False.
        MalformedDatasetError: damaged files.
    """
    spec = MNIST_LIKE[name]
    cache = keras_cache_dir()
    places = (
        [data_dir] if data_dir else [os.path.join(cache, spec["keras_subdir"]), spec["system_dir"]]
    )
    for place in places:
        arrays = read_idx_dir(place) if os.path.isdir(place) else None
        if arrays is not None:
            return arrays
    npz = os.path.join(cache, "mnist.npz")
    if name == "mnist" and not data_dir and os.path.isfile(npz):
        return _read_mnist_npz(npz)
    if download:
        import keras

        (x, y), (xt, yt) = getattr(keras.datasets, name).load_data()
        return Arrays(
            x[..., None],
            y.astype(np.int64),
            xt[..., None],
            yt.astype(np.int64),
            10,
            source=f"keras.datasets.{name} (downloaded into {cache})",
        )
    looked = places + ([npz] if name == "mnist" and not data_dir else [])
    raise DatasetNotPreparedError(
        f"Dataset {name!r} not found: looked for its four IDX files "
        f"({', '.join(s for pair in IDX_FILES.values() for s in pair)}, each maybe .gz) in "
        f"{' and '.join(looked)}. To get it: {spec['how']}."
    )


def _read_mnist_npz(path):
    try:
        with np.load(path) as f:
            x, y, xt, yt = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    except (OSError, KeyError, ValueError) as error:
        raise MalformedDatasetError(f"{path}: not Keras's mnist.npz ({error})") from None
    return Arrays(
        x[..., None], y.astype(np.int64), xt[..., None], yt.astype(np.int64), 10, source=path
    )


def shipped(name):
    """A dataset shipped inside the package (`fashion_mnist_mini`, `fashion_mnist_small`), as IDX files."""
    directory = importlib.resources.files("keras_normloss.data") / name
    arrays = read_idx_dir(str(directory))
    if arrays is None:
        raise DatasetNotPreparedError(
            f"{directory} is missing from this installation of keras-normloss; reinstall it"
        )
    return arrays


# --------------------------------------------------------------------------------------------
# CIFAR from Keras's cache (the "python version" of Krizhevsky's archives)

# Where each CIFAR's pickled batches are: the archive's top folder, the folder Keras 3 extracts
# it into (`keras.datasets.cifar10.load_data` keeps `<target>/<folder>/` and the archive as
# `<target>_archive`), the archive's own name, the batches and the label key.
KERAS_CIFAR = {
    "cifar10": dict(
        folder="cifar-10-batches-py",
        target="cifar-10-batches-py-target",
        archive="cifar-10-python.tar.gz",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        label_key="labels",
        num_classes=10,
    ),
    "cifar100": dict(
        folder="cifar-100-python",
        target="cifar-100-python-target",
        archive="cifar-100-python.tar.gz",
        train=("train",),
        test=("test",),
        label_key="fine_labels",
        num_classes=100,
    ),
}
# The only globals a CIFAR batch's pickle may name (Keras's own list, numpy < 2 and >= 2).
_CIFAR_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _cifar_batch(read, name, spec, where):
    """Images (N, 32, 32, 3) uint8 and labels of one pickled batch; `read(name)` opens it."""
    try:
        with read(name) as f:
            batch = {
                (k.decode() if isinstance(k, bytes) else k): v
                for k, v in _CifarUnpickler(f, encoding="bytes").load().items()
            }
        images = np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[spec["label_key"]], np.int64)
    except (
        OSError,
        EOFError,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
        pickle.UnpicklingError,
        tarfile.TarError,
    ) as error:
        raise MalformedDatasetError(f"{where}: {name} is not a CIFAR batch ({error})") from None
    if len(images) != len(labels) or (labels.size and labels.max() >= spec["num_classes"]):
        raise MalformedDatasetError(f"{where}: {name} has bad labels")
    return images.transpose(0, 2, 3, 1), labels


def _cifar_places(spec, data_dir, cache):
    """The folders and archives looked in, in order, as `(path, is_archive)`: `data_dir` only,
    if given (as for MNIST); else Keras's cache."""
    if data_dir:
        return [
            (os.path.join(data_dir, spec["folder"]), False),
            (data_dir, False),
            (os.path.join(data_dir, spec["archive"]), True),
        ]
    return [
        (os.path.join(cache, spec["target"], spec["folder"]), False),
        (os.path.join(cache, spec["folder"]), False),
        (os.path.join(cache, f"{spec['target']}_archive"), True),
        (os.path.join(cache, spec["archive"]), True),
    ]


def keras_cifar(name, data_dir=None, download=False):
    """CIFAR-10 or CIFAR-100 as `keras.datasets.cifar10/100.load_data` reads it, never
    downloading unless `download` is True.

    Looks for the pickled batches of the "CIFAR-10/100 python version" in `data_dir` only if
    it is given (the extracted folder, or the `.tar.gz` archive); otherwise in Keras's cache
    (`$KERAS_HOME/datasets`, default `~/.keras/datasets`: the folder and archive that
    `load_data` leaves there, or those of older Keras). The images and their order are
    `load_data`'s.

    Args:
        name: `"cifar10"` or `"cifar100"` (its 100 fine labels).
        data_dir: a directory holding the extracted batches or the archive, or None.
        download: let `keras.datasets.<name>.load_data()` download it if found nowhere.

    Returns:
        `Arrays`.

    Raises:
        DatasetNotPreparedError: found nowhere and `download` is False.
        MalformedDatasetError: files there that are not CIFAR batches.

    Example:

    ```python
    arrays = keras_cifar("cifar10")  # after keras.datasets.cifar10.load_data() once
    ```
    """
    spec = KERAS_CIFAR[name]
    cache = keras_cache_dir()
    names = spec["train"] + spec["test"]
    places = _cifar_places(spec, data_dir, cache)
    for path, is_archive in places:
        if is_archive and os.path.isfile(path):
            try:
                archive = tarfile.open(path, "r:gz")
            except (OSError, tarfile.TarError) as error:
                raise MalformedDatasetError(f"{path}: not a readable archive ({error})") from None
            with archive:

                def read(member, archive=archive):
                    found = archive.extractfile(f"{spec['folder']}/{member}")
                    if found is None:
                        raise KeyError(member)
                    return found

                return _cifar_arrays(read, spec, path)
        if not is_archive and all(os.path.isfile(os.path.join(path, n)) for n in names):
            return _cifar_arrays(lambda n, path=path: open(os.path.join(path, n), "rb"), spec, path)
    if download:
        import keras

        loader = getattr(keras.datasets, name)
        (x, y), (xt, yt) = loader.load_data(*(("fine",) if name == "cifar100" else ()))
        return Arrays(
            x,
            y.reshape(-1).astype(np.int64),
            xt,
            yt.reshape(-1).astype(np.int64),
            spec["num_classes"],
            source=f"keras.datasets.{name} (downloaded into {cache})",
        )
    raise DatasetNotPreparedError(
        f"Dataset {name!r} not found: looked for {spec['folder']}/ ({', '.join(names)}) or "
        f"{spec['archive']} in {', '.join(p for p, _ in places)}. To get it: run once with "
        f"--download (Keras downloads it into {cache}), or put {spec['archive']} from "
        "https://www.cs.toronto.edu/~kriz/cifar.html in a directory given as --data-dir."
    )


def _cifar_arrays(read, spec, where):
    parts = {
        split: [_cifar_batch(read, n, spec, where) for n in spec[split]]
        for split in ("train", "test")
    }
    train, test = (
        (np.concatenate([p[0] for p in parts[s]]), np.concatenate([p[1] for p in parts[s]]))
        for s in ("train", "test")
    )
    return Arrays(*train, *test, spec["num_classes"], source=where)


# --------------------------------------------------------------------------------------------
# Generated data


def synthetic_arrays(seed, image_shape, num_classes, train_examples, test_examples):
    """Generated images for smoke runs: each class has a fixed random template (seeded by
    `seed`); an image is its class's template plus twice as much Gaussian noise.

    Args:
        seed: seeds the templates and both splits.
        image_shape: `(H, W, C)`.
        num_classes: the number of labels.
        train_examples, test_examples: split sizes.

    Returns:
        `Arrays` whose images are float32 (already "normalised": nothing to scale).

    Example:

    ```python
    arrays = synthetic_arrays(0, (32, 32, 3), 10, 512, 256)
    ```
    """
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(num_classes, *image_shape)).astype("float32")

    def split(n, offset):
        r = np.random.default_rng(seed + offset)
        labels = r.integers(0, num_classes, size=n)
        images = templates[labels] + 2.0 * r.normal(size=(n, *image_shape)).astype("float32")
        return images, labels

    return Arrays(
        *split(train_examples, 2), *split(test_examples, 1), num_classes, source="generated"
    )
