"""The offline source task: printed characters rendered from the fonts matplotlib ships, made to look handwritten.

No ImageNet weights can be downloaded here, so vision builds its own source for transfer learning. What
makes a source useful is how close its images are to the target's, so each character goes through the
target's own acquisition: the handwritten digits (sklearn's `load_digits`, from UCI optdigits) were
32x32 binary bitmaps, size-normalised, then counted in 4x4 blocks into 8x8 images of 0..16. Here a glyph is
rendered large, given a pen (stroke width), a slant, a random affine and an elastic distortion (the wobble
of a hand), normalised into a 32x32 box, binarised and block-counted the same way. Printed digits are among
the classes: that is synthetic-to-real transfer (printed -> handwritten digits), said so in docs/vision.md.

Classes are characters that stay distinct at 8x8: letters a digit can pass for (O/0, I/1, Z/2, S/5, G/6,
B/8, Q) are left out, so the source's own accuracy measures features, not label noise.

Fonts: matplotlib ships 35; some draw no Latin letters (symbol and size-variant STIX fonts, LastResortHE
draw boxes or nothing). A font is used only if it draws every class as a distinct, non-empty glyph.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache, partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from pydantic import Field
from tqdm.auto import tqdm

from pipelines.common.config import Config

log = logging.getLogger(__name__)
CANVAS = 96  # px: glyphs are drawn big, then distorted and reduced to the 32x32 bitmap
BITMAP, BLOCK = 32, 4  # optdigits: 32x32 bitmaps counted in 4x4 blocks -> 8x8 images of 0..16


class SourceConfig(Config):
    characters: str = "0123456789ACDEFHJKLMNPRTUVWXY"  # classes; see the module docstring for what is left out
    images_per_class: int = Field(400, ge=2)
    rotation_degrees: float = Field(12.0, ge=0)
    shear: float = Field(0.35, ge=0)  # slant, as x-shift per unit of height (both directions)
    scale_range: tuple[float, float] = (0.85, 1.0)  # glyph height as a share of the 32px box
    pen_range: tuple[float, float] = (1.0, 2.2)  # pen radius in bitmap pixels: the glyph's skeleton redrawn
    elastic_alpha: float = Field(6.0, ge=0)  # displacement in canvas pixels ...
    elastic_sigma: float = Field(6.0, gt=0)  # ... smoothed over this many pixels (the hand's wobble)
    noise: float = Field(0.5, ge=0)  # std of additive noise on the 0..16 counts
    fonts: list[str] = []  # file names to use; empty: every matplotlib font that passes the check ...
    exclude_fonts: list[str] = ["cmex10.ttf", "cmsy10.ttf"]  # ... except these: TeX symbol encodings, whose
    # letter codes draw distinct math symbols (the automatic check cannot tell those from letters)


def font_folder() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def draw(font_path: Path, character: str, size: int = CANVAS // 2) -> np.ndarray:
    """One glyph, white on black, on a CANVAS x CANVAS grey canvas (uint8)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), size)
    image = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), character, fill=255, font=font, anchor="mm")
    return np.asarray(image)


def draws_all(font_path: Path, characters: str) -> bool:
    """True when the font draws every character as a non-empty glyph, no two alike: fonts that draw
    nothing for Latin letters (STIXNonUni*, STIXSiz*, *Display) or one box for all (LastResortHE) fail."""
    try:
        glyphs = [draw(font_path, c) > 127 for c in characters]
    except OSError:
        return False
    if any(g.sum() < 20 for g in glyphs):
        return False
    return len({np.packbits(g).tobytes() for g in glyphs}) == len(glyphs)


@lru_cache(maxsize=8)
def usable_fonts(characters: str, names: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> list[Path]:
    candidates = [p for p in sorted(font_folder().glob("*.ttf")) if p.name not in exclude]
    if names:
        wanted = set(names)
        missing = wanted - {p.name for p in candidates}
        if missing:
            raise ValueError(f"source.fonts: {sorted(missing)} not among matplotlib's fonts in {font_folder()}")
        candidates = [p for p in candidates if p.name in wanted]
    fonts = [p for p in candidates if draws_all(p, characters)]
    if not fonts:
        raise ValueError(f"no font in {font_folder()} draws all of {characters!r}")
    log.info("source fonts: %d of %d draw every class (%s left out)", len(fonts), len(candidates),
             ", ".join(p.stem for p in candidates if p not in fonts) or "none")
    return fonts


def elastic(image: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Smooth random displacement: the slow wobble of a pen (Simard et al. 2003)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    if alpha == 0:
        return image
    shape = image.shape
    dy = gaussian_filter(rng.uniform(-1, 1, shape), sigma) * alpha * sigma
    dx = gaussian_filter(rng.uniform(-1, 1, shape), sigma) * alpha * sigma
    y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return map_coordinates(image.astype(np.float32), [y + dy, x + dx], order=1, mode="constant")


def affine(image: np.ndarray, rng: np.random.Generator, settings: SourceConfig) -> np.ndarray:
    """Rotation and slant about the canvas centre."""
    from PIL import Image

    angle = np.deg2rad(rng.uniform(-settings.rotation_degrees, settings.rotation_degrees))
    shear = rng.uniform(-settings.shear, settings.shear)
    cos, sin, c = np.cos(angle), np.sin(angle), CANVAS / 2
    # output (x, y) -> input: rotate, then shear x by y (PIL's affine maps output to input coordinates)
    a, b, d, e = cos, sin + shear * cos, -sin, cos - shear * sin
    matrix = (a, b, c - a * c - b * c, d, e, c - d * c - e * c)
    return np.asarray(Image.fromarray(image.astype(np.uint8)).transform(
        (CANVAS, CANVAS), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR))


def to_bitmap(image: np.ndarray, height_share: float) -> np.ndarray:
    """Crop to the ink, scale it to `height_share` of the 32px box (aspect kept, width capped), centre it,
    binarise: the size normalisation optdigits applied to its scans."""
    from PIL import Image

    ink = np.argwhere(image > 127)
    bitmap = np.zeros((BITMAP, BITMAP), np.uint8)
    if len(ink) == 0:
        return bitmap
    (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
    glyph = image[top:bottom, left:right]
    scale = min(BITMAP * height_share / glyph.shape[0], BITMAP / glyph.shape[1])
    h, w = max(1, round(glyph.shape[0] * scale)), max(1, round(glyph.shape[1] * scale))
    small = np.asarray(Image.fromarray(glyph.astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR))
    y, x = (BITMAP - h) // 2, (BITMAP - w) // 2
    bitmap[y:y + h, x:x + w] = small > 127
    return bitmap


def thin(bitmap: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: a binary glyph -> its one-pixel skeleton (the path of the pen)."""
    image = np.pad(bitmap.astype(bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(image, -dy, 0), -dx, 1) for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]  # P2..P9
            neighbours = sum(q.astype(int) for q in p)
            transitions = sum((~p[i] & p[(i + 1) % 8]).astype(int) for i in range(8))
            if step == 0:
                rule = ~(p[0] & p[2] & p[4]) & ~(p[2] & p[4] & p[6])
            else:
                rule = ~(p[0] & p[2] & p[6]) & ~(p[0] & p[4] & p[6])
            remove = image & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & rule
            if remove.any():
                image &= ~remove
                changed = True
        if not changed:
            return image[1:-1, 1:-1]


def with_pen(skeleton: np.ndarray, radius: float) -> np.ndarray:
    """Redraw a skeleton with a round pen of `radius` pixels: every stroke one even width, as handwriting."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~skeleton) <= radius


def block_counts(bitmap: np.ndarray) -> np.ndarray:
    """32x32 of 0/1 -> 8x8 counts of 0..16."""
    n = BITMAP // BLOCK
    return bitmap.reshape(n, BLOCK, n, BLOCK).sum(axis=(1, 3))


def to_uint8(counts: np.ndarray) -> np.ndarray:
    """0..16 -> 0..255, as the target digits are stored (vision data: round(v * 255 / 16))."""
    return np.clip(np.round(counts * 255.0 / 16.0), 0, 255).astype(np.uint8)


def render_one(font: Path, character: str, rng: np.random.Generator, settings: SourceConfig) -> np.ndarray:
    canvas = affine(draw(font, character), rng, settings)
    canvas = elastic(canvas, rng, settings.elastic_alpha, settings.elastic_sigma)
    skeleton = thin(to_bitmap(canvas, rng.uniform(*settings.scale_range)))
    counts = block_counts(with_pen(skeleton, rng.uniform(*settings.pen_range))).astype(np.float32)
    if settings.noise:
        counts = counts + rng.normal(0, settings.noise, counts.shape) * (counts > 0)
    return to_uint8(np.clip(counts, 0, 16))


@dataclass(frozen=True)
class RenderedSource:
    images: np.ndarray  # uint8 [N, 8, 8], grey, bright ink on black like the target digits
    labels: np.ndarray  # int64 index into classes
    classes: list[str]
    fonts: list[str]


def render_class(settings: SourceConfig, fonts: list[Path], seed: int, label: int) -> np.ndarray:
    """One class's images (fonts in turn) from its own random stream, (seed, label): the classes render in
    any order, in any process, to the same images."""
    rng = np.random.default_rng([seed, label])
    character = settings.characters[label]
    return np.stack([render_one(fonts[(i + label) % len(fonts)], character, rng, settings)
                     for i in range(settings.images_per_class)])


def render_source(settings: SourceConfig, seed: int, workers: int = 1) -> RenderedSource:
    """`images_per_class` images of every class, all randomness from `seed`; `workers` processes render
    classes side by side (the same images for any count: each class has its own stream)."""
    fonts = usable_fonts(settings.characters, tuple(settings.fonts), tuple(settings.exclude_fonts))
    classes = list(settings.characters)
    render = partial(render_class, settings, fonts, seed)
    parts = []
    # spawned, not forked: the parent has torch's thread pools running
    pool = ProcessPoolExecutor(min(workers, len(classes)), mp_context=get_context("spawn")) if workers > 1 else nullcontext()
    with pool, tqdm(total=len(classes) * settings.images_per_class, desc="render source", unit="img", leave=False) as bar:
        for part in (pool.map if workers > 1 else map)(render, range(len(classes))):
            parts.append(part)
            bar.update(len(part))
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), settings.images_per_class)
    return RenderedSource(np.concatenate(parts), labels, classes, [p.name for p in fonts])
