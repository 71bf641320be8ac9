"""Image records: `{"image": "<base64 PNG/JPEG/...>"}` -> one normalised [batch, C, H, W] float32 feed.

The contract's `preprocessing` holds everything between the bytes and the graph (size, colour mode,
mean and std), so training, evaluation, serving and monitoring resize and normalise identically. The
prediction log never keeps the image: only its SHA-256, size, format and a few descriptors (brightness,
contrast, sharpness), which is also what the drift tests compare.
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


class ImagePreprocessing(StrictModel):
    """Between the bytes and the graph: read by every caller through the contract."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    mode: Literal["RGB", "L"] = "RGB"  # colour channels the graph takes (3 or 1)
    mean: list[float]  # per channel, on pixels scaled to [0, 1]
    std: list[float]
    max_pixels: int = Field(25_000_000, gt=0)  # larger images are rejected before decoding (bombs)

    @model_validator(mode="after")
    def check_channels(self) -> "ImagePreprocessing":
        channels = len(self.mode)
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(f"mode {self.mode} needs {channels} mean and {channels} positive std values")
        return self


def normalise(image, settings: ImagePreprocessing) -> np.ndarray:
    """A PIL image -> [C, H, W] float32, resized and normalised as the contract says. Training uses this
    same function (through the codec), so there is one preprocessing, not two that agree."""
    from PIL import Image

    resized = image.convert(settings.mode).resize((settings.width, settings.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32).reshape(settings.height, settings.width, -1) / 255.0
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
        super().__init__(contract, *args, **kwargs)
        self.input_name = contract.inputs[0].name

    def record_type(self) -> type:
        fields: dict[str, Any] = {IMAGE_FIELD: Annotated[str, Field(strict=True, min_length=1,
                                                                    description="the image file, base64-encoded")]}
        if self.contract.id_field:
            fields[self.contract.id_field] = NotRequired[Annotated[str, Field(strict=True)]]
        record = TypedDict(f"{self.contract.name.capitalize()}Record", fields)  # type: ignore[misc]
        return with_config(ConfigDict(extra="forbid"))(record)

    def synthetic_example(self) -> dict:
        """A mid-grey PNG of the model's input size."""
        shape = (self.settings.height, self.settings.width) + ((3,) if self.settings.mode == "RGB" else ())
        return {IMAGE_FIELD: base64.b64encode(encode_png(np.full(shape, 128, np.uint8))).decode()}

    def decode(self, index: int, record: dict) -> ImageRecord:
        from PIL import Image, UnidentifiedImageError

        try:
            data = base64.b64decode(record[IMAGE_FIELD], validate=True)
        except (binascii.Error, ValueError):
            raise self.field_error(index, IMAGE_FIELD, "invalid_base64", "not valid base64") from None
        unreadable = self.field_error(index, IMAGE_FIELD, "invalid_image",
                                      "not a readable image file (PNG, JPEG, BMP, GIF, TIFF, WebP)")
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise unreadable from None
        width, height = image.size
        if width * height > self.settings.max_pixels:  # before decoding: a 40 kB PNG can hold 1 GB of pixels
            raise self.field_error(index, IMAGE_FIELD, "image_too_large",
                                   f"{width}x{height} pixels is over the limit of {self.settings.max_pixels}")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise unreadable from None
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "width": width, "height": height,
                 "format": image.format or "unknown", "mode": image.mode, **image_descriptors(image)}
        if self.contract.id_field and self.contract.id_field in record:
            entry[self.contract.id_field] = record[self.contract.id_field]
        return ImageRecord(normalise(image, self.settings), entry)

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
