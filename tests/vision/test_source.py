"""The rendered source task: right labels, deterministic for a seed, fonts that draw no Latin letters left out."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.vision.source import (SourceConfig, block_counts, draw, font_folder, render_source, thin, to_bitmap,
                                     usable_fonts)

SMALL = SourceConfig(characters="0178AHX", images_per_class=3)


@pytest.fixture(scope="module")
def rendered():
    return render_source(SMALL, seed=3)


def test_every_class_gets_its_images_in_the_target_format(rendered):
    assert rendered.classes == list("0178AHX")
    assert np.bincount(rendered.labels).tolist() == [3] * 7
    assert rendered.images.shape == (21, 8, 8) and rendered.images.dtype == np.uint8
    assert rendered.images.max() > 200 and (rendered.images == 0).mean() > 0.3  # bright ink on black


def test_the_same_seed_renders_the_same_images_and_another_seed_others(rendered):
    assert np.array_equal(render_source(SMALL, seed=3).images, rendered.images)
    assert not np.array_equal(render_source(SMALL, seed=4).images, rendered.images)


def test_rendering_in_several_processes_gives_the_same_images(rendered):
    parallel = render_source(SMALL, seed=3, workers=2)
    assert np.array_equal(parallel.images, rendered.images) and np.array_equal(parallel.labels, rendered.labels)


def test_labels_match_the_glyphs_drawn(rendered):
    """Without distortion each image is nearest (pixel distance) to a clean rendering of its own class."""
    clean = SourceConfig(characters=SMALL.characters, images_per_class=2, rotation_degrees=0, shear=0,
                         elastic_alpha=0, noise=0, scale_range=(1.0, 1.0), pen_range=(1.5, 1.5),
                         fonts=["DejaVuSans.ttf"])
    reference = render_source(clean, seed=0)
    distorted = render_source(clean.model_copy(update={"fonts": ["DejaVuSans-Bold.ttf"]}), seed=1)
    flat = lambda images: images.reshape(len(images), -1).astype(float)  # noqa: E731
    nearest = np.argmin(((flat(distorted.images)[:, None] - flat(reference.images)[None]) ** 2).sum(-1), axis=1)
    assert (reference.labels[nearest] == distorted.labels).mean() >= 0.85


def test_fonts_without_latin_glyphs_are_left_out():
    fonts = {path.name for path in usable_fonts("0123456789ACDEFHJKLMNPRTUVWXY", (), ("cmex10.ttf", "cmsy10.ttf"))}
    assert "DejaVuSans.ttf" in fonts and len(fonts) >= 15
    assert not {"LastResortHE-Regular.ttf", "STIXSizOneSymReg.ttf", "STIXNonUni.ttf", "cmex10.ttf"} & fonts


def test_an_unknown_font_name_is_an_error_naming_it():
    with pytest.raises(ValueError, match="NoSuchFont.ttf"):
        render_source(SourceConfig(characters="01", images_per_class=2, fonts=["NoSuchFont.ttf"]), seed=0)


def test_thinning_and_block_counts_follow_the_optdigits_recipe():
    bitmap = to_bitmap(draw(font_folder() / "DejaVuSans-Bold.ttf", "7"), 1.0)
    skeleton = thin(bitmap)
    assert skeleton.sum() < bitmap.sum() / 2 and (skeleton <= bitmap).all()
    counts = block_counts(bitmap)
    assert counts.shape == (8, 8) and counts.max() <= 16 and counts.sum() == bitmap.sum()
