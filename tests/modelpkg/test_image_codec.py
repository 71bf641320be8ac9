"""The image codec on real files built with PIL in memory: what it refuses (and how it names it), and what it
does to the files it takes (resize, EXIF orientation, 16-bit, CMYK, transparency), as the module docstring
of modelpkg/codecs/image.py documents."""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image

from modelpkg.codecs import InvalidRequest, codec_for
from modelpkg.codecs.image import ImageCodec, ImagePreprocessing, encode_png, normalise, to_model_mode
from modelpkg.contract import InputSpec
from tests.modelpkg.conftest import image_contract

PIL_DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # as imported, before any codec switched it off


def codec(height: int = 16, width: int = 16, mode: str = "RGB", **settings) -> ImageCodec:
    """A codec whose contract takes `height` x `width` images; mean 0 and std 1 unless given, so a feed
    holds the pixels / 255 the model sees."""
    channels = len(mode)
    preprocessing = {"height": height, "width": width, "mode": mode, "mean": [0.0] * channels,
                     "std": [1.0] * channels} | settings
    return codec_for(image_contract(inputs=[InputSpec(name="image", dtype="float32",
                                                      shape=[None, channels, height, width])],
                                    preprocessing=preprocessing))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def feed(model: ImageCodec, data: bytes) -> np.ndarray:
    """The one image's [C, H, W] input to the graph."""
    return model.feeds(model.validate([{"image": b64(data)}]))["image"][0]


def refusal(model: ImageCodec, value: str) -> dict:
    """The error of a bad record sent second, after a good one."""
    with pytest.raises(InvalidRequest) as caught:
        model.validate([{"image": b64(encode_png(np.zeros((4, 4), np.uint8)))}, {"image": value}])
    [error] = caught.value.errors
    assert error["loc"] == [1, "image"] and error["msg"].startswith("image: ")
    return error


def noise(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def frames(fmt: str, **options) -> bytes:
    """Two different frames in one file (identical ones would be merged by PIL's writers)."""
    first, second = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 255, 0))
    return saved(first, fmt, save_all=True, append_images=[second], **options)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels but holds 16 bytes of them: a decompression
    bomb's shape. Decoding it would fail as corrupt (after allocating width * height * 3 bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(16)))
            + chunk(b"IEND", b""))


def corrupt_png() -> bytes:
    data = bytearray(saved(noise(32, 32), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10:start + 20] = bytes(255 - b for b in data[start + 10:start + 20])
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[:len(data) * 2 // 3]


# ------------------------------------------------------------------------------------- what is refused
@pytest.mark.parametrize("value, kind, says", [
    ("", "empty_file", "empty file"),
    ("not base64!", "invalid_base64", "not valid base64"),
    (b64(b"just some text, not a picture"), "invalid_image", "not a readable image file"),
    (b64(truncated(saved(noise(32, 32), "PNG"))), "corrupt_image", "truncated or corrupt PNG file"),
    (b64(truncated(saved(noise(64, 64), "JPEG"))), "corrupt_image", "truncated or corrupt JPEG file"),
    (b64(corrupt_png()), "corrupt_image", "truncated or corrupt PNG file"),
    (b64(frames("GIF")), "animated_image", "animated or multi-frame images are not accepted"),
    (b64(frames("PNG")), "animated_image", "animated or multi-frame images are not accepted"),  # APNG
    (b64(frames("TIFF")), "animated_image", "animated or multi-frame images are not accepted"),  # multi-page
    (b64(saved(Image.fromarray(np.full((4, 4), 0.5, np.float32)), "TIFF")), "unsupported_mode",
     "mode F"),
], ids=["empty", "base64", "not-an-image", "truncated-png", "truncated-jpeg", "corrupt-png", "gif", "apng",
        "tiff-pages", "float"])
def test_a_bad_file_is_refused_naming_its_record_field_and_problem(value, kind, says):
    error = refusal(codec(), value)
    assert error["type"] == kind and says in error["msg"]


def test_every_bad_record_of_a_batch_is_named_and_good_ones_are_not():
    good = b64(encode_png(np.full((4, 4), 9, np.uint8)))
    with pytest.raises(InvalidRequest) as caught:
        codec().validate([{"image": ""}, {"image": good}, {"image": b64(frames("GIF"))}])
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [([0, "image"], "empty_file"),
                                                                     ([2, "image"], "animated_image")]


@pytest.mark.parametrize("width, height", [(10_000, 10_000), (100_000, 100_000)],
                         ids=["over-pil-warning-limit", "over-pil-error-limit"])
def test_a_decompression_bomb_is_refused_from_its_header_with_the_codecs_own_message(monkeypatch, width, height):
    """10k x 10k is where PIL's default limit would warn, 100k x 100k where it would raise its own error:
    with max_pixels as the one limit, neither happens, and the corrupt data behind the header is never decoded
    (decoding would answer corrupt_image)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PIL_DEFAULT_MAX_PIXELS)  # as in a fresh process
    model = codec()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        error = refusal(model, b64(png_header_only(width, height)))
    assert error["type"] == "image_too_large"
    assert error["msg"] == f"image: {width}x{height} pixels is over the limit of 25000000"


def test_max_pixels_is_checked_before_decoding_even_when_it_is_small():
    error = refusal(codec(max_pixels=99), b64(png_header_only(10, 10)))
    assert error["type"] == "image_too_large" and "10x10 pixels is over the limit of 99" in error["msg"]
    assert refusal(codec(max_pixels=100), b64(png_header_only(10, 10)))["type"] == "corrupt_image"


# ----------------------------------------------------------------------------- what is done to the rest
def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of a bilinear resize on pixel centres ((x + 0.5) * scale), with the
    triangle kernel cut at the border and renormalised (what clamping to the edge pixel gives)."""
    centres = (np.arange(size_out) + 0.5) * size_in / size_out
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(size_in)[None, :] + 0.5 - centres[:, None]))
    return weights / weights.sum(axis=1, keepdims=True)


def test_a_png_is_resized_and_normalised_as_computed_by_hand():
    """An 8x8 grey digit upscaled to 32x32 RGB, the vision model's case. Grey levels are multiples of 64 so
    every bilinear value (weights are multiples of 1/8 per axis) is a whole grey level: PIL rounds its 8-bit
    result, so this is where hand and PIL must agree exactly."""
    grey = np.random.default_rng(3).integers(0, 4, (8, 8)).astype(np.uint8) * 64
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    model = codec(32, 32, mean=mean, std=std)

    resized = bilinear_matrix(8, 32) @ grey.astype(np.float64) @ bilinear_matrix(8, 32).T
    assert np.array_equal(resized, np.round(resized))  # the premise of the exact comparison
    by_hand = (resized[None] / 255.0 - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))

    data = encode_png(grey)
    settings = ImagePreprocessing.model_validate(model.contract.preprocessing)
    np.testing.assert_allclose(normalise(Image.open(io.BytesIO(data)), settings), by_hand, rtol=0, atol=1e-6)
    np.testing.assert_allclose(feed(model, data), by_hand, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt, tolerance", [("PNG", 0.0), ("JPEG", 0.1)])
def test_exif_orientation_is_applied_so_a_sideways_phone_photo_is_seen_upright(fmt, tolerance):
    upright = np.zeros((16, 8, 3), np.uint8)
    upright[:8] = 255  # bright top half
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as the camera wrote it: 16 wide, 8 high
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90 degrees clockwise to view"
    model = codec(16, 8)
    data = saved(stored, fmt, exif=exif.tobytes())

    np.testing.assert_allclose(feed(model, data), upright.transpose(2, 0, 1) / 255.0, rtol=0, atol=tolerance)
    [record] = model.validate([{"image": b64(data)}])
    assert (record.entry["width"], record.entry["height"]) == (16, 8)  # the file's own size is logged


def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped():
    values = np.array([[0, 257 * 100], [30_000, 65_535]], np.uint16)  # 30000 * 255 / 65535 = 116.7
    model = codec(2, 2, mode="L")
    [record] = model.validate([{"image": b64(saved(Image.fromarray(values), "PNG"))}])
    assert record.entry["mode"] == "I;16"  # the log keeps the file's mode
    np.testing.assert_allclose(model.feeds([record])["image"][0, 0], [[0, 100 / 255], [117 / 255, 1]], atol=1e-7)


def test_32_bit_integer_images_are_read_on_the_16_bit_scale_and_clipped_to_it():
    values = np.array([[-5, 0], [65_535, 70_000]], np.int32)
    model = codec(2, 2, mode="L")
    data = saved(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    np.testing.assert_array_equal(feed(model, data)[0], [[0, 0], [1, 1]])


def test_cmyk_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putpixel((0, 0), (255, 0, 0, 0))  # pure cyan ink
    cmyk.putpixel((1, 0), (0, 0, 0, 255))  # pure black ink
    pixels = feed(codec(1, 2), saved(cmyk, "TIFF"))
    np.testing.assert_array_equal(pixels[:, 0, :], [[0, 0], [1, 0], [1, 0]])  # cyan = (0, 255, 255); black


def transparent_file(kind: str) -> bytes:
    """A 2x2 file, fully transparent but with bright colour under alpha 0 (what many editors leave there)."""
    if kind == "RGBA":
        return saved(Image.new("RGBA", (2, 2), (250, 240, 230, 0)), "PNG")
    if kind == "LA":
        return saved(Image.new("LA", (2, 2), (250, 0)), "PNG")
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([250, 240, 230])
    return saved(palette, "PNG", transparency=0)


@pytest.mark.parametrize("kind", ["RGBA", "LA", "P"])
@pytest.mark.parametrize("background", [None, 255, 128])
def test_a_transparent_png_reads_as_the_contracts_background(kind, background):
    settings = {} if background is None else {"background": background}
    model = codec(2, 2, **settings)
    grey = 0 if background is None else background  # 0 (black) by default: the digits' background
    data = transparent_file(kind)
    np.testing.assert_array_equal(feed(model, data), np.full((3, 2, 2), grey / 255, np.float32))
    # training reads the same thing through normalise
    np.testing.assert_array_equal(normalise(Image.open(io.BytesIO(data)), model.settings), feed(model, data))


def test_opaque_pixels_keep_their_colour_and_half_transparent_ones_blend_with_the_background():
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)
    rgba[0, 1] = (200, 100, 50, 128)
    pixels = feed(codec(1, 2, background=255), saved(Image.fromarray(rgba), "PNG")) * 255
    np.testing.assert_array_equal(pixels[:, 0, 0], [200, 100, 50])
    blend = (np.array([200, 100, 50]) * 128 + 255 * 127) / 255
    np.testing.assert_allclose(pixels[:, 0, 1], blend, atol=1)


def test_the_log_describes_the_image_the_model_sees_and_keeps_the_files_mode():
    """White ink under alpha 0 is no white image: descriptors are read after compositing."""
    model = codec(2, 2)
    [record] = model.validate([{"image": b64(transparent_file("RGBA"))}])
    entry = model.log_entry(record)
    assert entry["mode"] == "RGBA" and entry["format"] == "PNG" and (entry["width"], entry["height"]) == (2, 2)
    assert entry["brightness"] == 0.0 and entry["contrast"] == 0.0


def test_an_mpo_is_read_as_its_first_picture():
    """Phones save JPEGs with extra pictures (depth, HDR gain map) as MPO: that is no animation."""
    pixels = feed(codec(8, 8), frames("MPO"))
    assert pixels[0].mean() > 0.95 and pixels[1].mean() < 0.05  # the red first frame, not the green second


def test_to_model_mode_returns_a_converted_image_as_it_is():
    settings = codec(2, 2).settings
    converted = to_model_mode(Image.open(io.BytesIO(transparent_file("LA"))), settings)
    assert converted.mode == "RGB" and to_model_mode(converted, settings) is converted
