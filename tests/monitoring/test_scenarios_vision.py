"""Vision drift scenarios on real handwritten digits: each edits what it says, through real PNG files, and
keeps everything else (size, mode, the label, the unedited rows); bad parameters fail with their names."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from modelpkg.codecs.image import encode_png, image_descriptors
from monitoring.config import load_monitoring_config
from monitoring.scenarios import NO_DRIFT, get_scenario, scenarios_for
from monitoring.scenarios.vision import SCENARIOS
from pipelines.common.config import ConfigError

POOL_ROWS, ROWS = 300, 200
SIZE = 8  # sklearn's digits: 8x8 grey, 0..16 stored as round(v * 255 / 16)


def open_png(data: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(open_png(data), dtype=np.float32)


def descriptor(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The codec's own descriptor of every image, as the drift tests will read it."""
    return np.array([image_descriptors(open_png(data))[name] for data in frame["image"]])


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    """Real held-out digits as the vision holdout stores them: PNG bytes + label, and the row they are."""
    from sklearn.datasets import load_digits

    data = load_digits()
    grey = np.round(data.images[:POOL_ROWS] * 255 / 16).astype(np.uint8)
    return pd.DataFrame({"image": [encode_png(image) for image in grey], "label": data.target[:POOL_ROWS].astype(str),
                         "row": np.arange(POOL_ROWS)})


def draw(pool: pd.DataFrame, name: str, seed: int = 0, **params) -> pd.DataFrame:
    return get_scenario("vision", name).draw(pool, ROWS, np.random.default_rng(seed), params)


def originals(pool: pd.DataFrame, window: pd.DataFrame) -> pd.DataFrame:
    """The held-out rows each window row was drawn from (by the fixture's `row` column)."""
    return pool.set_index("row").loc[window["row"]].reset_index()


def edited(pool: pd.DataFrame, window: pd.DataFrame) -> np.ndarray:
    return np.array([a != b for a, b in zip(window["image"], originals(pool, window)["image"])])


@pytest.fixture(scope="module")
def configured(config) -> dict[str, dict]:
    """The strengths configs/monitoring.yaml sets (the `config` fixture: the repo's file, validated)."""
    return dict(config.model("vision").scenarios)


def test_vision_registers_its_scenarios_beside_no_drift():
    assert set(scenarios_for("vision")) == {NO_DRIFT, "blur", "noise", "rotation", "brightness_contrast", "inverted",
                                            "thick_strokes"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_keeps_decodable_pngs_of_the_same_size_and_mode_and_the_labels(digits, configured, name):
    window = draw(digits, name, **configured[name])
    assert len(window) == ROWS and list(window.columns) == list(digits.columns)
    assert window["label"].tolist() == originals(digits, window)["label"].tolist()
    for data in window["image"]:
        image = open_png(data)
        assert (image.format, image.size, image.mode) == ("PNG", (SIZE, SIZE), "L")
    assert edited(digits, window).any()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_is_deterministic_for_a_seed(digits, configured, name):
    first, again = draw(digits, name, 3, **configured[name]), draw(digits, name, 3, **configured[name])
    assert first["image"].tolist() == again["image"].tolist()
    assert first["image"].tolist() != draw(digits, name, 4, **configured[name])["image"].tolist()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_keeps_rgb_images_rgb(name):
    """The codec also serves RGB models: an edit keeps three channels and the size."""
    rng = np.random.default_rng(0)
    pool = pd.DataFrame({"image": [encode_png(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)) for _ in range(20)],
                         "label": ["a", "b"] * 10})
    for data in get_scenario("vision", name).draw(pool, 10, rng, {})["image"]:
        image = open_png(data)
        assert (image.size, image.mode) == ((10, 12), "RGB")


def test_share_edits_exactly_that_share_of_the_window(digits):
    for share in (0.0, 0.25, 1.0):
        window = draw(digits, "inverted", share=share)
        assert edited(digits, window).sum() == round(ROWS * share)
    half = draw(digits, "blur", radius=0.5, share=0.5)
    unchanged = ~edited(digits, half)
    assert unchanged.sum() == ROWS // 2  # the other half arrive as they were, byte for byte
    assert (half["image"][unchanged].to_numpy() == originals(digits, half)["image"][unchanged].to_numpy()).all()


def test_blur_lowers_sharpness_and_contrast_and_keeps_brightness(digits):
    window = draw(digits, "blur", radius=0.5)
    before = originals(digits, window)
    assert (descriptor(window, "sharpness") < descriptor(before, "sharpness")).all()
    assert descriptor(window, "sharpness").mean() < 0.85 * descriptor(before, "sharpness").mean()
    assert descriptor(window, "contrast").mean() < descriptor(before, "contrast").mean()
    assert descriptor(window, "brightness").mean() == pytest.approx(descriptor(before, "brightness").mean(), abs=0.01)
    stronger = draw(digits, "blur", radius=1.0)
    assert descriptor(stronger, "sharpness").mean() < descriptor(window, "sharpness").mean()


def test_noise_adds_gaussian_noise_of_sigma_grey_levels(digits):
    window = draw(digits, "noise", sigma=12.0)
    after = np.stack([pixels(data) for data in window["image"]])
    before = np.stack([pixels(data) for data in originals(digits, window)["image"]])
    unclipped = (before > 64) & (before < 191)  # far from 0 and 255: the noise shows in full there
    difference = (after - before)[unclipped]
    assert difference.std() == pytest.approx(12.0, rel=0.1)
    assert abs(difference.mean()) < 1.0


def test_rotation_turns_each_image_by_the_angle_either_way(digits):
    from PIL import Image

    window = draw(digits, "rotation", degrees=15, resample="nearest")
    turned = {+1: 0, -1: 0}
    for data, original in zip(window["image"], originals(digits, window)["image"]):
        image = open_png(original)
        for sign in turned:  # digits have a black border: the uncovered corners are filled black
            if pixels(data).tolist() == np.asarray(image.rotate(sign * 15, resample=Image.Resampling.NEAREST)).tolist():
                turned[sign] += 1
                break
        else:
            pytest.fail("an image is not its original turned by 15 degrees either way")
    assert min(turned.values()) > ROWS // 4  # both directions, about half each


def test_rotation_fills_uncovered_corners_with_the_border_colour():
    """A light page stays light in the corners a rotation uncovers (not a black frame added to every image)."""
    page = np.full((8, 8), 240, np.uint8)
    page[2:6, 3:5] = 20
    pool = pd.DataFrame({"image": [encode_png(page)], "label": ["1"]})
    rotated = pixels(get_scenario("vision", "rotation").draw(pool, 1, np.random.default_rng(0), {"degrees": 45})
                     ["image"][0])
    assert rotated[0, 0] == rotated[-1, -1] == 240


def test_brightness_and_contrast_factors_move_their_descriptors(digits):
    darker = draw(digits, "brightness_contrast", brightness=0.5, contrast=1.0)
    before = originals(digits, darker)
    assert descriptor(darker, "brightness") == pytest.approx(0.5 * descriptor(before, "brightness"), abs=0.01)
    flatter = draw(digits, "brightness_contrast", brightness=1.0, contrast=0.5)
    before = originals(digits, flatter)
    assert descriptor(flatter, "contrast") == pytest.approx(0.5 * descriptor(before, "contrast"), abs=0.01)
    assert min(pixels(data).min() for data in flatter["image"]) > 0  # the black page is lifted towards grey


def test_inverted_flips_brightness(digits):
    window = draw(digits, "inverted", share=1.0)
    before = originals(digits, window)
    assert descriptor(window, "brightness") == pytest.approx(1 - descriptor(before, "brightness"), abs=1e-6)
    assert descriptor(window, "contrast") == pytest.approx(descriptor(before, "contrast"), abs=1e-6)
    assert descriptor(window, "brightness").mean() > 0.6 > 0.4 > descriptor(before, "brightness").mean()


def test_thick_strokes_spread_ink_and_full_strength_is_grey_dilation(digits):
    from scipy.ndimage import grey_dilation

    window = draw(digits, "thick_strokes", size=3, strength=1.0, share=1.0)
    for data, original in zip(window["image"], originals(digits, window)["image"]):
        expected = grey_dilation(pixels(original), size=(3, 3), mode="nearest")
        assert pixels(data).tolist() == expected.tolist()
    half = draw(digits, "thick_strokes", size=3, strength=0.5, share=1.0)
    before = originals(digits, half)
    after, was = np.stack([pixels(d) for d in half["image"]]), np.stack([pixels(d) for d in before["image"]])
    assert (after >= was).all()  # a broader pen never removes ink
    assert descriptor(half, "brightness").mean() > descriptor(before, "brightness").mean() + 0.05
    assert descriptor(half, "sharpness").mean() < descriptor(before, "sharpness").mean()


def test_unknown_parameters_and_bad_values_fail_with_their_names(digits):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sigma'\] \(accepts: radius, share\)"):
        draw(digits, "blur", sigma=1.0)
    with pytest.raises(ValueError, match="'inverted': share must be in \\[0.0, 1.0\\], got 1.5"):
        draw(digits, "inverted", share=1.5)
    with pytest.raises(ValueError, match="'thick_strokes': size must be an odd number >= 3.*got 4"):
        draw(digits, "thick_strokes", size=4)
    with pytest.raises(ValueError, match="'rotation': resample must be one of nearest, bilinear, bicubic, got 'lanc"):
        draw(digits, "rotation", resample="lanczos")
    with pytest.raises(ValueError, match="'noise': sigma must be >= 0.0, got -1"):
        draw(digits, "noise", sigma=-1)


def test_missing_image_column_and_unsupported_mode_are_named(digits):
    with pytest.raises(ValueError, match="'blur' needs an `image` column.*has: label, row"):
        draw(digits.drop(columns=["image"]), "blur")
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("LA", (8, 8)).save(buffer, format="PNG")
    pool = pd.DataFrame({"image": [buffer.getvalue()], "label": ["0"]})
    with pytest.raises(ValueError, match="cannot edit a LA image: scenarios edit modes L, RGB"):
        get_scenario("vision", "blur").draw(pool, 1, np.random.default_rng(0), {})


def test_repo_config_has_a_vision_entry_of_known_scenarios_and_parameters(config, configured):
    vision = config.model("vision")
    assert vision.experiment == "vision-monitoring"
    assert set(configured) == set(SCENARIOS)  # every vision scenario has its strength set in the config
    assert set(vision.plan) <= set(scenarios_for("vision")) and set(vision.plan) > {NO_DRIFT}


def test_config_rejects_a_misspelt_scenario_parameter_or_plan_entry(tmp_path):
    """Without this, a typo would be ignored and the scenario's default strength used in silence."""
    path = tmp_path / "monitoring.yaml"
    model = "vision: {experiment: e, train_config: c, train_label_column: label"
    path.write_text(f"models: {{{model}, scenarios: {{blurr: {{radius: 1}}}}}}}}\n")
    with pytest.raises(ConfigError, match="models.vision.scenarios.blurr: unknown scenario for vision"):
        load_monitoring_config(path)
    path.write_text(f"models: {{{model}, scenarios: {{blur: {{radius: 1, sigma: 2}}}}}}}}\n")
    with pytest.raises(ConfigError, match=r"models.vision.scenarios.blur: unknown parameter\(s\) \['sigma'\]"):
        load_monitoring_config(path)
    path.write_text(f"models: {{{model}, plan: [no_drift, rotate]}}}}\n")
    with pytest.raises(ConfigError, match="models.vision.plan: unknown scenario 'rotate'"):
        load_monitoring_config(path)
