"""Vision drift scenarios, from real held-out images: what a new scanner, camera or writer does to the pictures.

Each scenario draws held-out rows, decodes `share` of their PNG files with PIL, edits the pixels and
re-encodes a PNG of the same size and mode, so the codec (and the drift tests, through its descriptors)
sees a real file a client could have sent; the other rows and the `label` column arrive as they were.
Acquisition changes: `blur` (out of focus), `noise` (a noisy sensor), `rotation` (tilted sheets),
`brightness_contrast` (a faded or over-exposed scan); unseen styles: `inverted` (dark ink on a light page)
and `thick_strokes` (a broader pen).

Strength depends on size: on the 8x8 digits one pixel is an eighth of the image, so a radius-1 blur or a
3x3 max filter is a large change, not a subtle one. Defaults here are only fallbacks; configs/monitoring.yaml
sets the strengths used and docs/monitoring.md says why.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
import pandas as pd

from modelpkg.codecs.image import IMAGE_FIELD
from monitoring.scenarios import Scenario, sample_rows

EDITABLE_MODES = ("L", "RGB")  # the colour modes the image codec serves (ImagePreprocessing.mode)
RESAMPLING = ("nearest", "bilinear", "bicubic")  # what PIL's rotate takes

# (PIL image, random generator) -> the edited PIL image, same size and mode
Edit = Callable[..., object]


def check_range(scenario: str, name: str, value: float, low: float, high: float | None = None) -> None:
    """A parameter outside its range is an error naming the scenario, the parameter and the range."""
    if value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"scenario '{scenario}': {name} must be {bounds}, got {value}")


def decode_png(data: bytes):
    """Stored bytes -> a PIL image in one of the modes the codec serves (an edit must not change the mode)."""
    from PIL import Image

    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"`{IMAGE_FIELD}` column must hold image file bytes, got {type(data).__name__}")
    image = Image.open(io.BytesIO(bytes(data)))
    image.load()
    if image.mode not in EDITABLE_MODES:
        raise ValueError(f"cannot edit a {image.mode} image: scenarios edit modes {', '.join(EDITABLE_MODES)}")
    return image


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def from_pixels(pixels: np.ndarray, mode: str):
    """Float pixels (any range) -> a PIL image of `mode`, clipped to 0..255 and rounded as a file stores them."""
    from PIL import Image

    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)).convert(mode)


def edit_share(pool: pd.DataFrame, rows: int, rng: np.random.Generator, share: float, scenario: str,
               edit: Edit) -> pd.DataFrame:
    """`rows` held-out rows, exactly round(rows * share) of them (chosen at random) with their image edited."""
    check_range(scenario, "share", share, 0.0, 1.0)
    if IMAGE_FIELD not in pool.columns:
        raise ValueError(f"scenario '{scenario}' needs an `{IMAGE_FIELD}` column of PNG bytes in the holdout "
                         f"(has: {', '.join(map(str, pool.columns))})")
    window = sample_rows(pool, rows, rng)
    images = window[IMAGE_FIELD].tolist()
    for i in np.sort(rng.choice(rows, size=int(round(rows * share)), replace=False)):
        images[i] = png_bytes(edit(decode_png(images[i]), rng))
    return window.assign(**{IMAGE_FIELD: images})


def blur(pool: pd.DataFrame, rows: int, rng: np.random.Generator, radius: float = 0.5,
         share: float = 1.0) -> pd.DataFrame:
    """Out of focus: a Gaussian blur of `radius` pixels (PIL's radius, about the standard deviation)."""
    from PIL import ImageFilter

    check_range("blur", "radius", radius, 0.0)
    return edit_share(pool, rows, rng, share, "blur", lambda image, _: image.filter(ImageFilter.GaussianBlur(radius)))


def noise(pool: pd.DataFrame, rows: int, rng: np.random.Generator, sigma: float = 12.0,
          share: float = 1.0) -> pd.DataFrame:
    """A noisy sensor: independent Gaussian noise of `sigma` grey levels (of 255) added to every pixel."""
    check_range("noise", "sigma", sigma, 0.0)

    def add_noise(image, rng):
        pixels = np.asarray(image, dtype=np.float32)
        return from_pixels(pixels + rng.normal(0.0, sigma, pixels.shape), image.mode)

    return edit_share(pool, rows, rng, share, "noise", add_noise)


def border_colour(image) -> int | tuple[int, ...]:
    """The median of the outermost pixels: what a rotation fills the uncovered corners with (the page, not a
    black frame that the rotation would otherwise add to every image)."""
    pixels = np.asarray(image).reshape(image.height, image.width, -1)
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    median = [int(v) for v in np.median(edge, axis=0)]
    return median[0] if image.mode == "L" else tuple(median)


def rotation(pool: pd.DataFrame, rows: int, rng: np.random.Generator, degrees: float = 15.0,
             resample: str = "nearest", share: float = 1.0) -> pd.DataFrame:
    """Tilted sheets: each edited image rotated by `degrees` about its centre, either way at random; same
    size (corners cut, uncovered corners filled with the border colour). `nearest` by default: it moves
    pixel values without mixing them, as a tilted page keeps its ink; `bilinear` also blurs an image this
    small (sharpness -17 % at 8x8), which would make rotation look like the blur scenario to the monitor."""
    from PIL import Image

    check_range("rotation", "degrees", degrees, 0.0, 180.0)
    if resample not in RESAMPLING:
        raise ValueError(f"scenario 'rotation': resample must be one of {', '.join(RESAMPLING)}, got {resample!r}")

    def rotate(image, rng):
        angle = degrees * float(rng.choice([-1.0, 1.0]))
        return image.rotate(angle, resample=Image.Resampling[resample.upper()], fillcolor=border_colour(image))

    return edit_share(pool, rows, rng, share, "rotation", rotate)


def brightness_contrast(pool: pd.DataFrame, rows: int, rng: np.random.Generator, brightness: float = 0.9,
                        contrast: float = 0.8, share: float = 1.0) -> pd.DataFrame:
    """A faded or over-exposed scan: PIL's ImageEnhance factors (1 = unchanged). `brightness` scales every
    pixel; `contrast` pulls pixels towards the image's mean grey (0.8: a fifth of the way), which lifts a
    black page to grey."""
    from PIL import ImageEnhance

    check_range("brightness_contrast", "brightness", brightness, 0.0)
    check_range("brightness_contrast", "contrast", contrast, 0.0)

    def enhance(image, _):
        return ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness)).enhance(contrast)

    return edit_share(pool, rows, rng, share, "brightness_contrast", enhance)


def inverted(pool: pd.DataFrame, rows: int, rng: np.random.Generator, share: float = 0.2) -> pd.DataFrame:
    """An unseen style: dark ink on a light page (255 - pixels), e.g. one new client's scanner settings."""
    from PIL import ImageOps

    return edit_share(pool, rows, rng, share, "inverted", lambda image, _: ImageOps.invert(image))


def thick_strokes(pool: pd.DataFrame, rows: int, rng: np.random.Generator, size: int = 3, strength: float = 0.5,
                  share: float = 0.5) -> pd.DataFrame:
    """An unseen style: a broader pen. Grey dilation (PIL's MaxFilter over `size` x `size`) spreads bright ink
    into its neighbours at `strength` of its value (1 = full dilation); ink is the bright value, as in the
    digits (white on black)."""
    from PIL import ImageChops, ImageFilter

    check_range("thick_strokes", "strength", strength, 0.0, 1.0)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"scenario 'thick_strokes': size must be an odd number >= 3 (a MaxFilter window), got {size}")

    def thicken(image, _):
        spread = image.filter(ImageFilter.MaxFilter(int(size))).point(lambda value: round(value * strength))
        return ImageChops.lighter(image, spread)

    return edit_share(pool, rows, rng, share, "thick_strokes", thicken)


SCENARIOS = {
    "blur": Scenario("blur", "images out of focus (Gaussian blur)", blur),
    "noise": Scenario("noise", "a noisy sensor (additive Gaussian noise)", noise),
    "rotation": Scenario("rotation", "tilted images (rotated either way)", rotation),
    "brightness_contrast": Scenario("brightness_contrast", "faded or over-exposed scans", brightness_contrast),
    "inverted": Scenario("inverted", "dark ink on a light background: a style never trained on", inverted),
    "thick_strokes": Scenario("thick_strokes", "a broader pen (grey dilation): a style never trained on",
                              thick_strokes),
}
