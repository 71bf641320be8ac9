"""Load labelled images (sklearn's handwritten digits, or an ImageFolder tree), validate them, split them.

Two sources, named by a spec string so a config line picks one:

- `digits`: the 1,797 real 8x8 handwritten digits scikit-learn ships (UCI optdigits, values 0..16), stored
  as uint8 grey images by round(v * 255 / 16), the same scaling `pipelines/vision/source.py` uses.
- `imagefolder:PATH`: PATH/<class>/<image files>, one class per sub-folder, classes in sorted name order.
  Every image must be readable by PIL, the same size and the same mode, "L" (grey) or "RGB": the model
  takes one input shape, and converting silently would hide a broken export or a mislabelled scan.
  Hidden files and folders (names starting with '.', e.g. .DS_Store, .ipynb_checkpoints) are ignored;
  any other file is read as an image, so a stray notes.txt is reported, never skipped. Every problem is
  collected before one ImageDataError lists them, each naming the path and how to fix it.

Splits are index arrays into the loaded data, so the images are held once; `images_frame` turns a split
into the stored form (PNG bytes per row) that the model package's image codec reads back.

numpy, pandas and PIL at import time; scikit-learn only inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from modelpkg.codecs.image import encode_png

log = logging.getLogger(__name__)

DIGITS = "digits"
IMAGEFOLDER_PREFIX = "imagefolder:"
DIGITS_MAX_VALUE = 16  # sklearn's digits count ink in 4x4 blocks: 0..16
SUPPORTED_MODES = ("L", "RGB")
MAX_LISTED_PROBLEMS = 20  # the error message lists this many; `ImageDataError.problems` keeps them all

# How to turn an image of an unsupported PIL mode into "L" or "RGB" (p is the path, im the opened image).
CONVERT_HINTS = {
    "1": 'Image.open(p).convert("L") (1-bit black and white to 8-bit grey)',
    "LA": 'Image.open(p).convert("L") (drops the alpha channel)',
    "La": 'Image.open(p).convert("L") (drops the alpha channel)',
    "P": 'Image.open(p).convert("RGB") or .convert("L") (palette to pixels)',
    "PA": 'Image.open(p).convert("RGB") (palette with alpha to pixels)',
    "RGBA": 'Image.open(p).convert("RGB") (drops the alpha channel; composite onto a background first if '
            "transparency matters)",
    "RGBa": 'Image.open(p).convert("RGB")',
    "RGBX": 'Image.open(p).convert("RGB")',
    "CMYK": 'Image.open(p).convert("RGB") (print colours to screen colours)',
    "YCbCr": 'Image.open(p).convert("RGB")',
    "LAB": 'Image.open(p).convert("RGB")',
    "HSV": 'Image.open(p).convert("RGB")',
    "I;16": "scale the 16-bit values to 8 bits, e.g. Image.fromarray((np.asarray(im) >> 8).astype(np.uint8)) "
            '(convert("L") clips everything above 255)',
    "I;16B": "scale the 16-bit values to 8 bits, e.g. Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))",
    "I;16L": "scale the 16-bit values to 8 bits, e.g. Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))",
    "I": "scale the 32-bit integers to 0..255 and save as 8-bit grey (mode L)",
    "F": "scale the floats to 0..255 and save as 8-bit grey (mode L)",
}
DEFAULT_CONVERT_HINT = 'convert it with PIL, e.g. Image.open(p).convert("RGB") or .convert("L")'


class ImageDataError(ValueError):
    """Images that cannot be trusted for training; `.problems` holds one line per problem, each naming a path.

    The message lists the first `max_listed` problems so a tree with thousands of bad files still gives a
    readable error; the full list stays on the exception.
    """

    def __init__(self, problems: list[str], max_listed: int = MAX_LISTED_PROBLEMS):
        self.problems = list(problems)
        shown = self.problems[:max_listed]
        more = len(self.problems) - len(shown)
        lines = [f"image data failed validation with {len(self.problems)} problem(s):", *shown]
        if more:
            lines.append(f"... and {more} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ImageData:
    """Validated images plus where they came from, for run provenance."""

    images: np.ndarray  # uint8, [N, H, W] for grey ("L") or [N, H, W, 3] for "RGB"; every image the same size
    labels: np.ndarray  # int64 class index per image, into `classes`
    classes: list[str]  # class names, index = label
    source: str  # "sklearn-digits" or "imagefolder:<abs path>"
    sha256: str  # of shape, image bytes, labels and classes: logged to MLflow as the data hash
    paths: list[str]  # file path per image for ImageFolder; [] for digits
    mode: str  # "L" or "RGB"


def data_sha256(images: np.ndarray, labels: np.ndarray, classes: list[str]) -> str:
    """One hash for what training sees: the same pixels, labels and class names give the same hash on any
    machine, whichever files or library they came from. The shape is hashed too, so 64 pixels as 8x8 and
    as 4x16 differ."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"shape": list(images.shape), "classes": list(classes)}).encode())
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------- loading


def load_images(spec: str, *, min_per_class: int = 2, max_listed: int = MAX_LISTED_PROBLEMS) -> ImageData:
    """The images a spec names: "digits" or "imagefolder:PATH" (PATH relative to the working directory)."""
    if spec == DIGITS:
        return load_digits_images()
    if spec.startswith(IMAGEFOLDER_PREFIX):
        folder = spec[len(IMAGEFOLDER_PREFIX):]
        if not folder:
            raise ImageDataError([f"image spec {spec!r} names no folder: write imagefolder:PATH"])
        return load_image_folder(Path(folder), min_per_class=min_per_class, max_listed=max_listed)
    raise ImageDataError([f"unknown image spec {spec!r}: use {DIGITS!r} or '{IMAGEFOLDER_PREFIX}PATH'"])


def digits_to_uint8(values: np.ndarray) -> np.ndarray:
    """0..16 block counts -> 0..255 grey, as every vision module stores them."""
    return np.clip(np.round(values * 255.0 / DIGITS_MAX_VALUE), 0, 255).astype(np.uint8)


def load_digits_images() -> ImageData:
    """The real handwritten digits that scikit-learn ships (no download)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits_to_uint8(digits.images)
    labels = np.asarray(digits.target, dtype=np.int64)
    classes = [str(name) for name in digits.target_names]
    log.info("loaded %d sklearn digits, %dx%d grey, %d classes", len(images), *images.shape[1:], len(classes))
    return ImageData(images, labels, classes, "sklearn-digits", data_sha256(images, labels, classes), [], "L")


def visible(path: Path) -> bool:
    return not path.name.startswith(".")


@dataclass
class _Read:
    """One file's outcome: the pixels when PIL could read it, else the problem."""

    path: Path
    label: int
    size: tuple[int, int] | None = None  # (width, height)
    mode: str | None = None
    pixels: np.ndarray | None = None
    problem: str | None = None


def read_image(path: Path, label: int) -> _Read:
    """Open and fully decode one file: a header that parses is not enough (truncated files fail in load)."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return _Read(path, label, problem=f"{path}: empty file (0 bytes), not an image")
        with Image.open(path) as image:
            image.load()
            return _Read(path, label, image.size, image.mode, np.asarray(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return _Read(path, label, problem=f"{path}: not a readable image ({type(error).__name__}: {error})")


def scan_class_folders(root: Path) -> tuple[list[Path], list[str]]:
    """The class folders under root, sorted by name, and the problems with the tree's shape."""
    if not root.exists():
        return [], [f"{root}: image folder does not exist"]
    if not root.is_dir():
        return [], [f"{root}: not a folder (imagefolder:PATH wants PATH/<class>/<images>)"]
    entries = sorted(filter(visible, root.iterdir()))
    folders = [entry for entry in entries if entry.is_dir()]
    problems = [f"{entry}: a file directly in the image folder, outside any class folder; move it into "
                "PATH/<class>/ or delete it" for entry in entries if not entry.is_dir()]
    if not folders:
        problems.append(f"{root}: no class folders (expected PATH/<class>/<images>; hidden folders are ignored)")
    return folders, problems


def class_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The image files of one class folder, sorted by name, and the problems with the folder."""
    entries = sorted(filter(visible, folder.iterdir()))
    files = [entry for entry in entries if not entry.is_dir()]
    problems = [f"{entry}: a folder inside class folder {folder.name!r}; classes are one level deep, so move "
                "its images up or out" for entry in entries if entry.is_dir()]
    if not files:
        problems.append(f"{folder}: empty class folder (no image files; hidden files are ignored)")
    return files, problems


def majority(values: list) -> tuple[object, int]:
    """The most common value (ties: the one met first, i.e. the first path in sorted order) and its count."""
    return Counter(values).most_common(1)[0]


def size_problems(reads: list[_Read]) -> list[str]:
    if not reads:
        return []
    (width, height), count = majority([read.size for read in reads])
    return [f"{read.path}: {read.size[0]}x{read.size[1]} pixels (width x height) but most images "
            f"({count} of {len(reads)}) are {width}x{height}; resize or crop every image to one size"
            for read in reads if read.size != (width, height)]


def mode_problems(reads: list[_Read]) -> list[str]:
    """Unsupported modes each get a conversion hint; supported but mixed modes name the majority mode."""
    problems = [f"{read.path}: mode {read.mode!r} is not supported (only {' and '.join(SUPPORTED_MODES)}); "
                f"to fix: {CONVERT_HINTS.get(read.mode, DEFAULT_CONVERT_HINT)}"
                for read in reads if read.mode not in SUPPORTED_MODES]
    supported = [read for read in reads if read.mode in SUPPORTED_MODES]
    if supported:
        mode, count = majority([read.mode for read in supported])
        problems += [f"{read.path}: mode {read.mode!r} but most images ({count} of {len(supported)}) are "
                     f"{mode!r}; save every image in one mode, e.g. Image.open(p).convert({mode!r})"
                     for read in supported if read.mode != mode]
    return problems


def count_problems(folders: list[Path], reads: list[_Read], min_per_class: int, empty: set[int]) -> list[str]:
    """Classes with too few readable images (`empty` folders are already reported as empty)."""
    counts = Counter(read.label for read in reads)
    return [f"{folder}: only {counts[label]} readable image(s), fewer than min_per_class={min_per_class}"
            for label, folder in enumerate(folders) if label not in empty and counts[label] < min_per_class]


def load_image_folder(root: Path, *, min_per_class: int = 2, max_listed: int = MAX_LISTED_PROBLEMS) -> ImageData:
    """Read and validate PATH/<class>/<images>; raise ImageDataError listing every problem found."""
    if min_per_class < 1:
        raise ValueError(f"min_per_class must be at least 1, not {min_per_class}")
    root = root.expanduser().resolve()
    folders, problems = scan_class_folders(root)
    reads: list[_Read] = []
    empty_labels: set[int] = set()
    for label, folder in enumerate(folders):
        files, folder_problems = class_files(folder)
        problems += folder_problems
        if not files:
            empty_labels.add(label)
        reads += [read_image(path, label) for path in files]
    problems += [read.problem for read in reads if read.problem]
    readable = [read for read in reads if read.problem is None]
    problems += size_problems(readable)
    problems += mode_problems(readable)
    problems += count_problems(folders, readable, min_per_class, empty_labels)
    if problems:
        raise ImageDataError(problems, max_listed)

    images = np.stack([read.pixels for read in readable]).astype(np.uint8, copy=False)
    labels = np.asarray([read.label for read in readable], dtype=np.int64)
    classes = [folder.name for folder in folders]
    mode = readable[0].mode
    log.info("loaded %d images from %s: %dx%d %s, %d classes", len(images), root, images.shape[2],
             images.shape[1], mode, len(classes))
    return ImageData(images, labels, classes, f"{IMAGEFOLDER_PREFIX}{root}", data_sha256(images, labels, classes),
                     [str(read.path) for read in readable], mode)


# --------------------------------------------------------------------------------------- splitting


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"split fractions must be in (0, 1) and sum below 1: valid={valid_fraction}, test={test_fraction}")


def check_every_class_in_every_split(labels: np.ndarray, splits: dict[str, np.ndarray]) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    size = dict(zip(classes.tolist(), counts.tolist()))
    missing = []
    for name, indices in splits.items():
        absent = np.setdiff1d(classes, labels[indices]).tolist()
        if absent:
            missing.append(f"{name} has no image of class "
                           + ", ".join(f"{label} ({size[label]} images in all)" for label in absent))
    if missing:
        raise ValueError("the stratified split left classes out: " + "; ".join(missing)
                         + ". Add images to the small classes or raise the valid/test fractions.")


def split_indices(labels: np.ndarray, *, valid_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, np.ndarray]:
    """Stratified train/valid/test indices into `labels`, the same for the same seed, each sorted.

    Every class must reach every split: a class missing from test would make its accuracy undefined and
    its errors invisible, so that is an error, not a warning.
    """
    from sklearn.model_selection import train_test_split

    check_fractions(valid_fraction, test_fraction)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    small = [f"class {label} has {count}" for label, count in zip(classes, counts) if count < 3]
    if small:
        raise ValueError("every class needs at least 3 images, one per split (train, valid, test): "
                         + ", ".join(small))
    everything = np.arange(len(labels))
    try:
        rest, test = train_test_split(everything, test_size=test_fraction, stratify=labels, random_state=seed)
        train, valid = train_test_split(rest, test_size=valid_fraction / (1 - test_fraction),
                                        stratify=labels[rest], random_state=seed)
    except ValueError as error:  # e.g. a split smaller than the number of classes
        raise ValueError(f"cannot split {len(labels)} images of {len(classes)} classes with valid={valid_fraction}, "
                         f"test={test_fraction}: {error}") from None
    splits = {"train": np.sort(train), "valid": np.sort(valid), "test": np.sort(test)}
    check_every_class_in_every_split(labels, splits)
    return {name: indices.astype(np.int64) for name, indices in splits.items()}


def per_class_subset(indices: np.ndarray, labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """`per_class` indices of each class, for the learning curve (5, 10, 20, all labels per class).

    `labels` holds the labels of the whole data set (labels[indices] are the labels of `indices`), and every
    class in it must be represented. One seeded permutation is walked in order, so for the same seed the 5
    chosen are among the 10 chosen: the curve measures more labels, not different ones. Returned sorted.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if per_class is None:
        return np.sort(indices)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1 (or None for all), not {per_class}")
    labels = np.asarray(labels)
    shuffled = np.random.default_rng(seed).permutation(indices)
    shuffled_labels = labels[shuffled]
    chosen, short = [], []
    for label in np.unique(labels):
        members = shuffled[shuffled_labels == label]
        if len(members) < per_class:
            short.append(f"class {label} has {len(members)}")
        chosen.append(members[:per_class])
    if short:
        raise ValueError(f"per_class={per_class} needs that many images of every class among the "
                         f"{len(indices)} indices: " + ", ".join(short))
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------------------- storing


def images_frame(data: ImageData, indices: np.ndarray) -> pd.DataFrame:
    """A split as a table: `image` (PNG file bytes), `label` (class name), `row` (index into data).

    The model package's monitoring reference and holdout tables hold this, and the image codec's
    `request(row)` reads the `image` column, so the bytes are real image files, encoded by the codec's
    own `encode_png`.
    """
    indices = np.asarray(indices, dtype=np.int64)
    return pd.DataFrame({
        "image": [encode_png(data.images[index]) for index in indices],
        "label": [data.classes[data.labels[index]] for index in indices],
        "row": indices,
    })
