"""Image records: `{"image": "<base64 PNG/JPEG/...>"}` -> one normalised [batch, C, H, W] float32 feed.

The contract's `preprocessing` holds everything between the bytes and the graph (size, colour mode,
mean and std, background), so training, evaluation, serving and monitoring resize and normalise
identically. The prediction log never keeps the image: only its SHA-256, size, format, original mode and
a few descriptors (brightness, contrast, sharpness), which is also what the drift tests compare.

What a file goes through before it is resized (`to_model_mode`, called by `normalise`, so training and
serving share it):
  - EXIF orientation is applied (`ImageOps.exif_transpose`): a phone photo taken sideways is seen upright.
  - 16-bit images (modes I;16*, and I, as which Pillow has opened 16-bit PNGs) are converted to 8 bits by
    a fixed linear scale: 0..65535 -> 0..255 (value * 255 / 65535, rounded; I is clipped to 0..65535
    first). Fixed, not stretched per image, so brightness means the same in every file. A 16-bit file's
    single transparent grey (PNG tRNS) is ignored.
  - 32-bit float images (mode F) are refused: their values have no agreed range (0..1? 0..65535?).
  - Transparency (RGBA, LA, PA, premultiplied RGBa, P or L/RGB with a transparent colour) is composited
    over a uniform grey `background` (0..255, from the contract; 0 = black, the digits' background), so a
    transparent pixel reads as background and a half-transparent one as the blend of ink and background.
  - Every other mode (CMYK, YCbCr, LAB, HSV, P, 1) is converted to RGB by Pillow's formulas (CMYK without
    colour profiles), then to the model's mode.

What the codec refuses, each as an InvalidRequest naming the record's index and the field (a 422): invalid
base64, an empty file, bytes that are no image, a truncated or corrupt file, an image over `max_pixels`
(checked from the header, before any pixel is decoded), an animated or multi-frame file (GIF, APNG,
multi-page TIFF; an MPO, a JPEG carrying extra pictures such as a phone's depth or gain map, is read as its
first picture, the photo), and mode F. `max_pixels` is the one pixel limit: Pillow's own
(`Image.MAX_IMAGE_PIXELS`) is switched off when a codec is built, because it runs inside `Image.open`,
before the codec's check, and answers with its own warning or error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping

import numpy as np
from pydantic import ConfigDict, Field, model_validator, with_config
from typing_extensions import NotRequired, TypedDict

from modelpkg.codecs import Codec, Descriptor, InvalidRequest
from modelpkg.contract import StrictModel

IMAGE_FIELD = "image"
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # read as 0..65535 (see the module docstring)
SIXTEEN_BIT_FULL_SCALE = 65535
EIGHT_BIT_FULL_SCALE = 255
REFUSED_MODES = {"F": "32-bit float images (mode F) are not accepted: their values have no agreed range"}
EXIF_ORIENTATIONS_TO_UNDO = range(2, 9)  # 1 is upright; 2..8 are the flips and rotations exif_transpose undoes
STILL_MULTI_PICTURE_FORMATS = ("MPO",)  # JPEGs with extra pictures (depth, gain map, stereo): the first is the photo


class ImagePreprocessing(StrictModel):
    """Between the bytes and the graph: read by every caller through the contract."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    mode: Literal["RGB", "L"] = "RGB"  # colour channels the graph takes (3 or 1)
    mean: list[float]  # per channel, on pixels scaled to [0, 1]
    std: list[float]
    max_pixels: int = Field(25_000_000, gt=0)  # larger images are rejected before decoding (bombs)
    background: int = Field(0, ge=0, le=255)  # grey that transparent pixels are composited over (0: black)

    @model_validator(mode="after")
    def check_channels(self) -> "ImagePreprocessing":
        channels = len(self.mode)
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(f"mode {self.mode} needs {channels} mean and {channels} positive std values")
        return self


def upright(image):
    """The image as its EXIF orientation says it was seen (a phone stores a sideways shot unrotated). Returns
    the image itself when there is nothing to undo, so calling it twice costs nothing."""
    from PIL import ExifTags, ImageOps

    if image.getexif().get(ExifTags.Base.Orientation, 1) not in EXIF_ORIENTATIONS_TO_UNDO:
        return image
    return ImageOps.exif_transpose(image)


def to_eight_bits(image):
    """A 16-bit grey image on the fixed 0..65535 -> 0..255 scale; Pillow's own convert would clip at 255."""
    from PIL import Image

    values = np.clip(np.asarray(image, dtype=np.float64), 0, SIXTEEN_BIT_FULL_SCALE)
    scaled = np.rint(values * (EIGHT_BIT_FULL_SCALE / SIXTEEN_BIT_FULL_SCALE)).astype(np.uint8)
    return Image.fromarray(scaled)


def over_background(image, background: int):
    """Transparent pixels become the contract's background grey, half-transparent ones a blend: a model never
    sees the colour hidden under alpha 0 (often black, white or noise, depending on the program that saved it)."""
    from PIL import Image

    rgba = image.convert("RGBA")
    backdrop = Image.new("RGBA", rgba.size, (background, background, background, EIGHT_BIT_FULL_SCALE))
    return Image.alpha_composite(backdrop, rgba).convert("RGB")


def to_model_mode(image, settings: ImagePreprocessing):
    """A PIL image -> upright, 8-bit, opaque, in the model's colour mode (see the module docstring for each
    step). Idempotent: an image already converted is returned as it is. Raises ValueError for a mode the
    model cannot take."""
    image = upright(image)
    if image.mode in REFUSED_MODES:
        raise ValueError(REFUSED_MODES[image.mode])
    if image.mode in SIXTEEN_BIT_MODES:
        image = to_eight_bits(image)
    if image.has_transparency_data:
        image = over_background(image, settings.background)
    if image.mode not in ("L", "RGB"):  # CMYK, YCbCr, LAB, HSV, P, 1: Pillow converts each of them to RGB
        image = image.convert("RGB")
    return image if image.mode == settings.mode else image.convert(settings.mode)


def normalise(image, settings: ImagePreprocessing) -> np.ndarray:
    """A PIL image -> [C, H, W] float32, resized and normalised as the contract says. Training uses this
    same function (through the codec), so there is one preprocessing, not two that agree."""
    from PIL import Image

    converted = to_model_mode(image, settings)
    resized = converted.resize((settings.width, settings.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32).reshape(settings.height, settings.width, -1) / EIGHT_BIT_FULL_SCALE
    pixels = (pixels - np.asarray(settings.mean, np.float32)) / np.asarray(settings.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def image_descriptors(image) -> dict[str, float]:
    """Brightness, contrast and sharpness of the grey image in [0, 1]: cheap, and they move when cameras,
    lighting or scanning change."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    sharpness = (float(np.abs(np.diff(grey, axis=0)).mean()) if grey.shape[0] > 1 else 0.0) + (
        float(np.abs(np.diff(grey, axis=1)).mean()) if grey.shape[1] > 1 else 0.0)
    return {"brightness": float(grey.mean()), "contrast": float(grey.std()), "sharpness": sharpness}


@dataclass(frozen=True, slots=True)
class ImageRecord:
    pixels: np.ndarray  # [C, H, W] float32, ready for the graph
    entry: dict  # what the log keeps


def leave_the_pixel_limit_to_codecs() -> None:
    """Switch off Pillow's MAX_IMAGE_PIXELS (a warning over ~89 MP, an error over twice that): it runs inside
    Image.open, before a codec can check its contract's `max_pixels`, and would answer first with another
    message, or warn about an image the codec is about to refuse anyway. Process-wide, once a codec is
    built: a serving process opens client images only through codecs, which check `max_pixels` themselves."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None


def encode_png(array: np.ndarray) -> bytes:
    """An [H, W] or [H, W, 3] uint8 array as PNG bytes (how tables store images)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class ImageCodec(Codec):
    kind = "image_classifier"

    def __init__(self, contract, *args, **kwargs):
        self.settings = ImagePreprocessing.model_validate(contract.preprocessing)
        leave_the_pixel_limit_to_codecs()
        super().__init__(contract, *args, **kwargs)
        self.input_name = contract.inputs[0].name

    def record_type(self) -> type:
        fields: dict[str, Any] = {IMAGE_FIELD: Annotated[str, Field(  # "" is refused by decode, as an empty file
            strict=True, description="the image file, base64-encoded")]}
        if self.contract.id_field:
            fields[self.contract.id_field] = NotRequired[Annotated[str, Field(
                strict=True, max_length=self.contract.id_max_length)]]
        record = TypedDict(f"{self.contract.name.capitalize()}Record", fields)  # type: ignore[misc]
        return with_config(ConfigDict(extra="forbid"))(record)

    def synthetic_example(self) -> dict:
        """A mid-grey PNG of the model's input size."""
        shape = (self.settings.height, self.settings.width) + ((3,) if self.settings.mode == "RGB" else ())
        return {IMAGE_FIELD: base64.b64encode(encode_png(np.full(shape, 128, np.uint8))).decode()}

    def decode(self, index: int, record: dict) -> ImageRecord:
        data = self.file_bytes(index, record[IMAGE_FIELD])
        image = self.still_image(index, data)
        try:
            model_image = to_model_mode(image, self.settings)
        except ValueError as error:
            raise self.field_error(index, IMAGE_FIELD, "unsupported_mode", str(error)) from None
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "width": image.width,
                 "height": image.height, "format": image.format or "unknown", "mode": image.mode,
                 **image_descriptors(model_image)}
        if self.contract.id_field and self.contract.id_field in record:
            entry[self.contract.id_field] = record[self.contract.id_field]
        return ImageRecord(normalise(model_image, self.settings), entry)

    def file_bytes(self, index: int, value: str) -> bytes:
        """The base64 field -> the file's bytes, refusing what cannot be a file before PIL sees it."""
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self.field_error(index, IMAGE_FIELD, "invalid_base64", "not valid base64") from None
        if not data:
            raise self.field_error(index, IMAGE_FIELD, "empty_file", "empty file (0 bytes)")
        return data

    def still_image(self, index: int, data: bytes):
        """The file's bytes -> one decoded PIL image, checking size and frames from the header before any pixel
        is decoded. Malformed files make Pillow raise almost anything (OSError, SyntaxError, struct.error,
        IndexError, EOFError...): every one of them is this client's file's problem, never the server's."""
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except Exception:
            raise self.field_error(index, IMAGE_FIELD, "invalid_image",
                                   "not a readable image file (PNG, JPEG, BMP, GIF, TIFF, WebP)") from None
        width, height = image.size
        if width * height > self.settings.max_pixels:  # before decoding: a 40 kB PNG can hold 1 GB of pixels
            raise self.field_error(index, IMAGE_FIELD, "image_too_large",
                                   f"{width}x{height} pixels is over the limit of {self.settings.max_pixels}")
        corrupt = self.field_error(index, IMAGE_FIELD, "corrupt_image",
                                   f"a truncated or corrupt {image.format or 'image'} file: it cannot be decoded")
        try:
            animated = getattr(image, "is_animated", False) and image.format not in STILL_MULTI_PICTURE_FORMATS
        except Exception:
            raise corrupt from None
        if animated:
            raise self.field_error(index, IMAGE_FIELD, "animated_image",
                                   "animated or multi-frame images are not accepted: send one still image")
        try:
            image.load()
            image.getexif()  # parsed here, so malformed metadata is refused as the file's problem
        except Exception:
            raise corrupt from None
        return image

    def feeds(self, records: list[ImageRecord]) -> dict[str, np.ndarray]:
        return {self.input_name: np.stack([record.pixels for record in records])}

    def log_entry(self, record: ImageRecord) -> dict:
        return record.entry

    @property
    def descriptors(self) -> list[Descriptor]:
        return [Descriptor("width", True), Descriptor("height", True), Descriptor("brightness", True),
                Descriptor("contrast", True), Descriptor("sharpness", True), Descriptor("format", False),
                Descriptor("mode", False)]

    def request(self, row: Mapping[str, Any]) -> dict:
        """Tables hold the image file's bytes in an `image` column."""
        value = row[IMAGE_FIELD]
        if not isinstance(value, (bytes, bytearray)):
            raise InvalidRequest([{"type": "bytes_type", "loc": [IMAGE_FIELD],
                                   "msg": f"{IMAGE_FIELD}: a stored row must hold the image file's bytes"}])
        record = {IMAGE_FIELD: base64.b64encode(bytes(value)).decode()}
        if self.contract.id_field and self.contract.id_field in row:
            record[self.contract.id_field] = str(row[self.contract.id_field])
        return record
