"""Image folders, one sub-folder per class: their layout and splits (shared by both readers) and
the reader without TensorFlow, which decodes with Pillow and crops and resizes as
`keras.utils.image_dataset_from_directory(crop_to_aspect_ratio=True, interpolation="area")`.

The TensorFlow path reads folders with Keras itself (`tf_sources.image_folder`). This module's
reader lists the same files in the same order (class folders sorted, files walked and sorted
as Keras does), takes the same centred crop to the square's aspect ratio and the same
area-weighted ("area", `tf.image.resize`'s ResizeArea) resize, computed here in float64 as
one separable matrix product: its pixels equal Keras's but for rare rounding ties (one grey
level). PNG, BMP and GIF decode to the same pixels under Pillow and TensorFlow; JPEG decoders
may differ by a grey level or two.
"""

import os

import numpy as np

from keras_normloss.data.sources import Arrays, DatasetNotPreparedError, MalformedDatasetError

# Sub-folders that hold a folder dataset's test split, when present beside `train/`.
TEST_FOLDERS = ("test", "val", "validation")
# `keras.utils.image_dataset_from_directory`'s formats.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def layout(directory):
    """The folders to read: `(train_dir, test_dir)` for `train/` beside a test folder, else
    `(directory, None)` (the test split is then held out of each class).

    Raises:
        DatasetNotPreparedError: `directory` is not given or does not exist.
        MalformedDatasetError: class folders that hold only sub-folders.

    Example:

    ```python
    train_dir, test_dir = layout("~/photos")
    ```
    """
    if not directory:
        raise DatasetNotPreparedError(
            "--dataset folder needs --data-dir: a directory with one sub-folder of images per "
            "class (or train/ and test/ directories laid out so)"
        )
    if not os.path.isdir(directory):
        raise DatasetNotPreparedError(f"image folder {directory} does not exist")
    train_dir = os.path.join(directory, "train")
    test_dir = next(
        (
            os.path.join(directory, t)
            for t in TEST_FOLDERS
            if os.path.isdir(os.path.join(directory, t))
        ),
        None,
    )
    split_folders = os.path.isdir(train_dir) and test_dir is not None
    for root in (train_dir, test_dir) if split_folders else (directory,):
        _check_class_folders(root)
    return (train_dir, test_dir) if split_folders else (directory, None)


def _check_class_folders(root):
    """Refuses class folders that hold images only in deeper folders: Keras would read them
    recursively, and `data/train/<c>` plus `data/valid/<c>` would become the classes "train"
    and "valid"."""
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        entries = os.listdir(path)
        has_images = any(e.lower().endswith(IMAGE_EXTENSIONS) for e in entries)
        has_folders = any(os.path.isdir(os.path.join(path, e)) for e in entries)
        if has_folders and not has_images:
            raise MalformedDatasetError(
                f"image folder {root}: {name}/ holds folders, not images; give the folder whose "
                f"sub-folders are the classes (train/ with {'/, '.join(TEST_FOLDERS)}/ beside "
                "it are recognised)"
            )


def hold_out(images, labels, num_classes, every):
    """Splits one folder's images: every `every`-th file of each class (in file-name order)
    is a test image. Returns `(train_images, train_labels, test_images, test_labels)`."""
    position = np.zeros(len(labels), np.int64)  # index of each file within its class
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        position[members] = np.arange(len(members))
    test = position % every == every - 1
    return images[~test], labels[~test], images[test], labels[test]


def folder_arrays(directory, classes, arrays, test_dir, held_out_every):
    """The `Arrays` of a folder read as `arrays` (train and test images and labels).

    Raises:
        MalformedDatasetError: fewer than two classes, a class without a training image (an
            empty class folder would silently become an output the network never sees), or no
            test images.
    """
    if len(classes) < 2:
        raise MalformedDatasetError(
            f"image folder {directory}: found {len(classes)} class sub-folder(s); need at least 2"
        )
    counts = np.bincount(np.asarray(arrays[1], np.int64), minlength=len(classes))
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if empty:
        raise MalformedDatasetError(
            f"image folder {directory}: the class folder {empty[0]!r} holds no training image"
            f"{f' (nor do {len(empty) - 1} more)' if len(empty) > 1 else ''}; remove it or "
            "add its images"
        )
    if not len(arrays[3]):
        raise MalformedDatasetError(f"image folder {directory}: no test images")
    if test_dir:
        source = f"{directory} (train/ and {os.path.basename(test_dir)}/"
    else:
        source = f"{directory} (every {held_out_every}th file of each class held out"
    return Arrays(
        *arrays,
        len(classes),
        source=f"{source}; {len(classes)} classes: {', '.join(classes[:5])}"
        f"{', ...' if len(classes) > 5 else ''})",
    )


def class_files(root, class_names=None):
    """The image files of `root/<class>/` as Keras lists them: `(class_names, paths, labels)`.

    Class folders are the sorted sub-folders not starting with "."; each is walked
    recursively, folders in sorted order and files sorted within each.

    Raises:
        ValueError: `class_names` not among the sub-folders, or no image at all.
    """
    subdirs = [
        d
        for d in sorted(os.listdir(root))
        if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
    ]
    if class_names is not None:
        if not set(class_names) <= set(subdirs):
            raise ValueError(
                f"the class folders of {root} ({subdirs}) lack some of {list(class_names)}"
            )
        subdirs = list(class_names)
    paths, labels = [], []
    for label, name in enumerate(subdirs):
        for folder, _, files in sorted(os.walk(os.path.join(root, name)), key=lambda w: w[0]):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(folder, file))
                    labels.append(label)
    if not paths:
        raise ValueError(
            f"No images found in directory {root}. Allowed formats: {IMAGE_EXTENSIONS}"
        )
    return subdirs, paths, np.asarray(labels, np.int64)


def area_weights(size_in, size_out):
    """The (size_out, size_in) matrix of area resizing along one axis: output pixel `y` is
    the mean of the input over `[y * s, (y + 1) * s)`, `s = size_in / size_out`, each input
    pixel weighted by its overlap (TensorFlow's ResizeArea, which Keras's "area" uses)."""
    scale = size_in / size_out
    start = np.arange(size_out)[:, None] * scale
    pixel = np.arange(size_in)[None, :]
    overlap = np.minimum(pixel + 1, start + scale) - np.maximum(pixel, start)
    return np.clip(overlap, 0.0, None) / scale


def crop_and_resize(image, size):
    """`image` (H, W, C) uint8 cropped to a centred square and area-resized to `size`, as
    `keras.utils.image_dataset_from_directory(crop_to_aspect_ratio=True,
    interpolation="area")` then rounding to uint8 do."""
    height, width = image.shape[:2]
    # smart_resize's box, with its float32 arithmetic (the crop is square: size / size).
    crop_h = max(min(height, int(np.float32(width * size) / np.float32(size))), 1)
    crop_w = max(min(width, int(np.float32(height * size) / np.float32(size))), 1)
    top = int(np.float32(height - crop_h) / np.float32(2))
    left = int(np.float32(width - crop_w) / np.float32(2))
    crop = image[top : top + crop_h, left : left + crop_w].astype(np.float64)
    rows, cols = area_weights(crop_h, size), area_weights(crop_w, size)
    resized = np.einsum("yi,ijc,xj->yxc", rows, crop, cols, optimize=True)
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def load_image(path, size):
    """One image file as RGB uint8 (size, size, 3), read with Pillow.

    Raises:
        MalformedDatasetError: the file cannot be decoded.
    """
    try:
        from PIL import Image
    except ImportError:
        raise DatasetNotPreparedError(
            "reading an image folder without TensorFlow needs Pillow: pip install pillow"
        ) from None
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # 16-bit grey: TensorFlow keeps the high byte
                grey = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
                pixels = np.repeat(grey[..., None], 3, axis=-1)
            else:  # the first frame of a GIF, as decode_image(expand_animations=False)
                pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # PIL's decoding errors
        raise MalformedDatasetError(f"{path}: cannot decode its data ({error})") from None
    return crop_and_resize(pixels, size)


def _read(root, size, class_names=None):
    classes, paths, labels = class_files(root, class_names)
    images = np.stack([load_image(p, size) for p in paths])
    return classes, images, labels


def image_folder(directory, image_size, held_out_every=5):
    """Images in `directory/<class>/*.{png,jpg,jpeg,bmp,gif}`, read with Pillow (RGB, cropped
    to a centred square and area-resized to `image_size`): no TensorFlow.

    The splits are `tf_sources.image_folder`'s: `train/` beside `test/`, `val/` or
    `validation/`, else every `held_out_every`-th file of each class held out.

    Args:
        directory: the folder.
        image_size: the side of the images.
        held_out_every: hold out every n-th file of each class when there is no test folder.

    Returns:
        `Arrays`.

    Raises:
        DatasetNotPreparedError: `directory` is not given or does not exist.
        MalformedDatasetError: no class sub-folders, no images, a damaged image, or class
            folders that hold only sub-folders.

    Example:

    ```python
    arrays = image_folder("~/photos", 64)
    ```
    """
    train_dir, test_dir = layout(directory)
    try:
        if test_dir:
            classes, train_images, train_labels = _read(train_dir, image_size)
            _, test_images, test_labels = _read(test_dir, image_size, classes)
            arrays = (train_images, train_labels, test_images, test_labels)
        else:
            classes, images, labels = _read(directory, image_size)
            arrays = hold_out(images, labels, len(classes), held_out_every)
    except ValueError as error:  # no images, class mismatches
        raise MalformedDatasetError(f"image folder {directory}: {error}") from None
    return folder_arrays(directory, classes, arrays, test_dir, held_out_every)
