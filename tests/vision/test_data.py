"""Loading, validation, splitting and storing of labelled images.

Each bad-tree case builds a small ImageFolder in tmp_path with real PIL images and checks that the error
names the offending path and the problem, as a person fixing the folder would need; the real sklearn
digits load as documented.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.vision.data import (
    ImageDataError,
    images_frame,
    load_images,
    per_class_subset,
    split_indices,
)

SIZE = 8  # px: every tree image is SIZE x SIZE unless a test says otherwise


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


def pixels(seed: int, mode: str = "L", size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """Random uint8 pixels, [height, width] or [height, width, 3]; size is (width, height) like PIL."""
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path, image: Image.Image):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def tree(root, per_class: dict[str, int], mode: str = "L"):
    """root/<class>/<i>.png, distinct random images: a valid ImageFolder to break in one place."""
    seed = 0
    for name, count in per_class.items():
        for i in range(count):
            seed += 1
            save(root / name / f"{i}.png", Image.fromarray(pixels(seed, mode)))
    return root


def problems(root, **kwargs) -> list[str]:
    with pytest.raises(ImageDataError) as caught:
        load_images(f"imagefolder:{root}", **kwargs)
    assert isinstance(caught.value, ValueError)
    return caught.value.problems


def only_problem_about(found: list[str], path) -> str:
    """The one problem naming `path` (the tree is otherwise valid, so there must be exactly one)."""
    assert len(found) == 1, found
    assert str(path) in found[0], found
    return found[0]


# --------------------------------------------------------------------------------------- digits


def test_digits_are_the_real_sklearn_digits(digits):
    assert digits.images.shape == (1797, 8, 8)
    assert digits.images.dtype == np.uint8
    assert digits.images.min() == 0 and digits.images.max() == 255
    assert digits.labels.dtype == np.int64 and digits.labels.shape == (1797,)
    assert digits.classes == [str(d) for d in range(10)]
    assert set(np.unique(digits.labels)) == set(range(10))
    assert (digits.source, digits.mode, digits.paths) == ("sklearn-digits", "L", [])
    # round(v * 255 / 16): the half-way count 8 maps to 128, so the grey levels are exactly these 17
    assert set(np.unique(digits.images)) <= {round(v * 255 / 16) for v in range(17)}


def test_digits_hash_is_stable_and_tracks_the_data(digits):
    again = load_images("digits")
    assert again.sha256 == digits.sha256 and len(digits.sha256) == 64
    from pipelines.vision.data import data_sha256

    changed = digits.images.copy()
    changed[0, 0, 0] ^= 1
    assert data_sha256(changed, digits.labels, digits.classes) != digits.sha256
    assert data_sha256(digits.images, digits.labels, [*digits.classes[:-1], "x"]) != digits.sha256


def test_unknown_spec_says_what_is_accepted():
    with pytest.raises(ValueError, match="digits.*imagefolder:PATH"):
        load_images("mnist")


# --------------------------------------------------------------------------------------- ImageFolder: valid


def test_valid_rgb_tree_loads_with_labels_in_sorted_class_order(tmp_path):
    root = tree(tmp_path / "pets", {"dog": 3, "cat": 2}, mode="RGB")
    (root / ".DS_Store").write_bytes(b"\0junk")  # hidden files and folders are ignored, as documented
    (root / "cat" / ".thumb.png").write_bytes(b"not an image")
    save(root / ".cache" / "x.png", Image.new("RGBA", (3, 3)))

    data = load_images(f"imagefolder:{root}")

    assert data.classes == ["cat", "dog"]
    assert data.mode == "RGB" and data.images.shape == (5, SIZE, SIZE, 3) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert data.source == f"imagefolder:{root.resolve()}"
    assert [p.split("/")[-2:] for p in data.paths] == [["cat", "0.png"], ["cat", "1.png"], ["dog", "0.png"],
                                                       ["dog", "1.png"], ["dog", "2.png"]]
    for image, path in zip(data.images, data.paths):
        assert np.array_equal(image, np.asarray(Image.open(path)))


def test_grey_tree_loads_as_n_h_w_and_hash_follows_the_pixels(tmp_path):
    root = tree(tmp_path / "grey", {"a": 2, "b": 2})
    first = load_images(f"imagefolder:{root}")
    assert first.mode == "L" and first.images.shape == (4, SIZE, SIZE)
    assert load_images(f"imagefolder:{root}").sha256 == first.sha256

    save(root / "b" / "1.png", Image.fromarray(pixels(99)))
    assert load_images(f"imagefolder:{root}").sha256 != first.sha256


# --------------------------------------------------------------------------------------- ImageFolder: problems


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    assert "does not exist" in only_problem_about(problems(missing), missing)


def test_folder_without_class_folders(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    assert "no class folders" in only_problem_about(problems(root), root)


def test_empty_class_folder(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    (root / "c").mkdir()
    (root / "c" / ".gitkeep").write_text("")
    assert "empty class folder" in only_problem_about(problems(root), root / "c")


def test_text_file_renamed_png(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    bad = root / "a" / "notes.png"
    bad.write_text("these are my notes, not an image\n")
    assert "not a readable image" in only_problem_about(problems(root), bad)


def test_zero_byte_png(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    bad = root / "b" / "empty.png"
    bad.write_bytes(b"")
    assert "empty file (0 bytes)" in only_problem_about(problems(root), bad)


def test_truncated_png(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    buffer = io.BytesIO()
    Image.fromarray(pixels(7, "RGB", (32, 32))).convert("L").save(buffer, format="PNG")
    bad = root / "a" / "cut.png"
    bad.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    Image.open(bad)  # the header still parses: only a full decode finds the damage
    assert "truncated" in only_problem_about(problems(root), bad)


def test_image_of_another_size_names_the_majority_size(tmp_path):
    root = tree(tmp_path / "t", {"a": 3, "b": 3})
    odd = save(root / "b" / "wide.png", Image.fromarray(pixels(1, size=(12, SIZE))))
    message = only_problem_about(problems(root), odd)
    assert "12x8" in message and "most images (6 of 7) are 8x8" in message


def test_mixed_supported_modes_name_the_majority_mode(tmp_path):
    root = tree(tmp_path / "t", {"a": 3, "b": 3})
    odd = save(root / "a" / "colour.png", Image.fromarray(pixels(1, "RGB")))
    message = only_problem_about(problems(root), odd)
    assert "'RGB'" in message and "most images (6 of 7) are 'L'" in message and 'convert(\'L\')' in message


def test_rgba_image_is_unsupported_with_a_conversion_hint(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2}, mode="RGB")
    odd = save(root / "a" / "alpha.png", Image.new("RGBA", (SIZE, SIZE), (1, 2, 3, 4)))
    message = only_problem_about(problems(root), odd)
    assert "'RGBA' is not supported" in message and 'convert("RGB")' in message


def test_16_bit_image_is_unsupported_with_a_scaling_hint(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    odd = save(root / "b" / "deep.png", Image.fromarray(np.full((SIZE, SIZE), 40000, np.uint16)))
    assert Image.open(odd).mode == "I;16"
    message = only_problem_about(problems(root), odd)
    assert "'I;16' is not supported" in message and ">> 8" in message


def test_class_with_fewer_images_than_min_per_class(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 1})
    message = only_problem_about(problems(root, min_per_class=2), root / "b")
    assert "only 1 readable image(s), fewer than min_per_class=2" in message
    assert load_images(f"imagefolder:{root}", min_per_class=1).labels.tolist() == [0, 0, 1]


def test_files_outside_class_folders_and_nested_folders_are_reported_not_skipped(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    stray = save(root / "stray.png", Image.fromarray(pixels(1)))
    nested = save(root / "a" / "more" / "x.png", Image.fromarray(pixels(2))).parent
    found = problems(root)
    assert len(found) == 2
    assert any(str(stray) in p and "outside any class folder" in p for p in found)
    assert any(str(nested) in p and "inside class folder" in p for p in found)


def test_every_problem_is_listed_together(tmp_path):
    root = tree(tmp_path / "t", {"a": 3, "b": 3, "c": 1})
    (root / "d").mkdir()
    (root / "a" / "zero.png").write_bytes(b"")
    save(root / "b" / "big.png", Image.fromarray(pixels(1, size=(SIZE, 9))))
    save(root / "b" / "alpha.png", Image.new("RGBA", (SIZE, SIZE)))

    with pytest.raises(ImageDataError) as caught:
        load_images(f"imagefolder:{root}")

    message = str(caught.value)
    for path in ("d", "a/zero.png", "b/big.png", "b/alpha.png", "c"):
        assert str(root / path) in message
    assert len(caught.value.problems) == 5


def test_long_lists_of_problems_are_capped_in_the_message(tmp_path):
    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    for i in range(25):
        (root / "a" / f"bad{i:02d}.png").write_bytes(b"")

    with pytest.raises(ImageDataError) as caught:
        load_images(f"imagefolder:{root}", max_listed=20)

    message = str(caught.value)
    assert len(caught.value.problems) == 25
    assert "25 problem(s)" in message and message.endswith("... and 5 more")
    assert str(root / "a" / "bad19.png") in message and str(root / "a" / "bad20.png") not in message


# --------------------------------------------------------------------------------------- splitting


def test_split_is_stratified_disjoint_complete_and_deterministic(digits):
    splits = split_indices(digits.labels, valid_fraction=0.2, test_fraction=0.2, seed=3)
    again = split_indices(digits.labels, valid_fraction=0.2, test_fraction=0.2, seed=3)
    other = split_indices(digits.labels, valid_fraction=0.2, test_fraction=0.2, seed=4)

    assert all(np.array_equal(splits[name], again[name]) for name in splits)
    assert not np.array_equal(splits["test"], other["test"])
    together = np.concatenate(list(splits.values()))
    assert len(together) == len(digits.labels) and set(together) == set(range(len(digits.labels)))
    assert abs(len(splits["test"]) / len(digits.labels) - 0.2) < 0.01
    overall = np.bincount(digits.labels) / len(digits.labels)
    for indices in splits.values():
        share = np.bincount(digits.labels[indices], minlength=10) / len(indices)
        assert np.abs(share - overall).max() < 0.01  # every class, in the same proportion


def test_split_refuses_a_class_too_small_for_three_splits():
    labels = np.array([0] * 20 + [1] * 20 + [2] * 2)
    with pytest.raises(ValueError, match="class 2 has 2"):
        split_indices(labels, valid_fraction=0.2, test_fraction=0.2, seed=0)


def test_split_refuses_when_a_split_would_lose_a_class():
    labels = np.repeat(np.arange(10), 3)  # 30 images, 10 classes: a 10% test split has 3 images
    with pytest.raises(ValueError, match="cannot split 30 images of 10 classes"):
        split_indices(labels, valid_fraction=0.4, test_fraction=0.1, seed=0)


def test_split_refuses_when_rounding_leaves_a_small_class_out():
    labels = np.array([0] * 100 + [k for k in range(1, 10) for _ in range(3)])  # one big class, nine of 3
    with pytest.raises(ValueError, match=r"test has no image of class .*\(3 images in all\)"):
        split_indices(labels, valid_fraction=0.1, test_fraction=0.08, seed=0)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="valid=0.6, test=0.5"):
        split_indices(np.zeros(10, np.int64), valid_fraction=0.6, test_fraction=0.5, seed=0)


# --------------------------------------------------------------------------------------- learning-curve subsets


def test_per_class_subsets_have_the_counts_and_are_nested(digits):
    train = split_indices(digits.labels, valid_fraction=0.2, test_fraction=0.2, seed=0)["train"]
    subsets = {k: per_class_subset(train, digits.labels, k, seed=1) for k in (5, 10, 20)}

    for k, subset in subsets.items():
        assert np.bincount(digits.labels[subset], minlength=10).tolist() == [k] * 10
        assert set(subset) <= set(train)
    assert set(subsets[5]) < set(subsets[10]) < set(subsets[20])
    assert np.array_equal(per_class_subset(train, digits.labels, 10, seed=1), subsets[10])
    assert not np.array_equal(per_class_subset(train, digits.labels, 10, seed=2), subsets[10])
    assert np.array_equal(per_class_subset(train, digits.labels, None, seed=1), np.sort(train))


def test_per_class_subset_refuses_a_class_with_too_few():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match="class 1 has 3"):
        per_class_subset(np.arange(13), labels, 5, seed=0)


# --------------------------------------------------------------------------------------- storing


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_images_frame_round_trips_through_png(tmp_path, digits, mode):
    data = digits if mode == "L" else load_images(f"imagefolder:{tree(tmp_path / 'rgb', {'x': 2, 'y': 2}, 'RGB')}")
    indices = np.array([3, 0, 2]) if mode == "RGB" else np.array([5, 1796, 0])

    frame = images_frame(data, indices)

    assert list(frame.columns) == ["image", "label", "row"]
    assert frame["row"].tolist() == indices.tolist()
    assert frame["label"].tolist() == [data.classes[data.labels[i]] for i in indices]
    for stored, index in zip(frame["image"], indices):
        assert isinstance(stored, bytes) and stored.startswith(b"\x89PNG")
        decoded = Image.open(io.BytesIO(stored))
        assert decoded.mode == mode
        assert np.array_equal(np.asarray(decoded), data.images[index])
