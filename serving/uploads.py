"""File uploads for models whose record is one file (image models): multipart/form-data -> records.

A client with image files should not have to base64 them into JSON: `curl -F image=@cat.png -F
image=@dog.jpg` works too. Each file part named after the record's file field (`image`, repeated) becomes
the record a JSON body would carry (`{"image": "<base64>"}`), and the codec then validates those records
exactly as it validates a JSON body: one validation path and one set of messages, each error naming the
part's index (= the record's index) and the field.

The body is parsed here with python-multipart's streaming parser, straight from the request stream into
memory: the body limit (BodyLimitMiddleware) has already bounded its size, and Starlette's form parser
would spool each file to a temporary file object first. Parts are counted as their headers arrive, so a
body with too many parts is refused before the rest is read.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass, field
from typing import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from modelpkg.codecs import Codec, InvalidRequest

MULTIPART = "multipart/form-data"


def upload_field(codec: Codec) -> str | None:
    """The record field a file part fills, or None when the model's records are not files (tabular, text).
    Looked up, not imported: while no image codec exists, its module is not loaded, and a tabular or text
    server stays without it."""
    image = sys.modules.get("modelpkg.codecs.image")
    return image.IMAGE_FIELD if image is not None and isinstance(codec, image.ImageCodec) else None


def upload_schema(file_field: str, max_files: int) -> dict:
    """The multipart body for the OpenAPI document: the file field, repeated."""
    return {"type": "object", "required": [file_field], "additionalProperties": False, "properties": {file_field: {
        "type": "array", "minItems": 1, "maxItems": max_files,
        "items": {"type": "string", "contentMediaType": "application/octet-stream"},
        "description": f"image files (PNG, JPEG, BMP, GIF, TIFF, WebP), at most {max_files}: "
                       "one prediction per file, in order"}}}


@dataclass
class Part:
    name: str | None = None
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class TooManyParts(Exception):
    pass


class PartCollector:
    """python-multipart's callbacks: every part's form field name, filename and bytes, in order."""

    def __init__(self, max_parts: int):
        self.max_parts = max_parts
        self.parts: list[Part] = []
        self._header_name = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
                "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end}

    def on_part_begin(self) -> None:
        if len(self.parts) == self.max_parts:
            raise TooManyParts()
        self.parts.append(Part())

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].data += data[start:end]

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._header_value))
            part = self.parts[-1]
            part.name = _text(options.get(b"name"))
            part.filename = _text(options.get(b"filename"))
        self._header_name.clear()
        self._header_value.clear()


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", errors="replace") if value is not None else None


def body_error(kind: str, message: str, loc: list | None = None) -> InvalidRequest:
    return InvalidRequest([{"type": kind, "loc": loc or [], "msg": message}])


async def read_parts(content_type: str, stream: AsyncIterator[bytes], max_parts: int) -> list[Part]:
    """A multipart body -> its parts, in order; InvalidRequest for a body that is not one, or has too many."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise body_error("multipart_boundary", f"{MULTIPART} body without a boundary in its Content-Type")
    collector = PartCollector(max_parts)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except TooManyParts:
        raise body_error("too_long", f"too many files: at most {max_parts} images per request") from None
    except FormParserError as error:
        raise body_error("multipart_invalid", f"malformed {MULTIPART} body: {error}") from None
    return collector.parts


def records_from_parts(parts: list[Part], file_field: str) -> list[dict]:
    """One record per file part named `file_field`; InvalidRequest naming each other part by index."""
    if not parts:
        raise body_error("missing", f"no image: send one or more files in form field {file_field!r}")
    errors = []
    for index, part in enumerate(parts):
        if part.name != file_field:
            errors.append({"type": "unknown_part", "loc": [index, part.name or ""],
                           "msg": f"part {index}: unknown form field {part.name!r}: send each image as a file "
                                  f"part named {file_field!r}"})
        elif part.filename is None:
            errors.append({"type": "not_a_file", "loc": [index, file_field],
                           "msg": f"{file_field}: part {index} is a text field: send the image as a file part "
                                  f"(with a filename, as curl -F {file_field}=@cat.png does)"})
    if errors:
        raise InvalidRequest(errors)
    return [{file_field: base64.b64encode(part.data).decode()} for part in parts]


async def read_upload(content_type: str, stream: AsyncIterator[bytes], file_field: str, max_files: int) -> list[dict]:
    """A multipart request body -> the records its files make, ready for `codec.validate`."""
    return records_from_parts(await read_parts(content_type, stream, max_files), file_field)
