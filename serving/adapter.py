"""The server's one adapter: what a predict route needs from a model, over the model kind's codec.

Everything kind-specific (what a record looks like, how it is checked and decoded, what the graph is fed,
what the prediction log keeps) lives in the kind's codec (`modelpkg.codecs`), and the label rule lives in
`modelpkg.runtime.answers`, so the server, batch scoring and monitoring agree on both. A new kind of
model is a codec in `modelpkg/codecs/`; nothing here changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelpkg.codecs import Codec, InvalidRequest
from modelpkg.contract import ModelContract
from modelpkg.runtime import answers
from serving.uploads import MULTIPART, upload_field

__all__ = ["Adapter", "InvalidRequest"]  # InvalidRequest: what the app answers with 422


class Adapter:
    """One model's requests and answers: parse a body, describe it for the docs, answer, log.

    `top_k`: multi-class answers list that many most likely classes (0: none; binary answers never)."""

    def __init__(self, codec: Codec, *, top_k: int = 0):
        self.codec = codec
        self.contract: ModelContract = codec.contract
        self.media_type: str = codec.media_type
        self.upload_field: str | None = upload_field(codec)  # records that are one file also come as file parts
        self.media_types: tuple[str, ...] = (self.media_type,) + ((MULTIPART,) if self.upload_field else ())
        self.example: dict = codec.example
        self.top_k = top_k
        self.parse = codec.parse  # bytes -> decoded records, or InvalidRequest naming each bad field
        self.validate = codec.validate  # plain dicts (records made from file parts) -> the same
        self._log_entry = codec.log_entry

    def request_schema(self) -> dict:
        """The JSON schema of a request body, with the example, for the OpenAPI document."""
        return self.codec.request_schema()

    def example_records(self) -> list[Any]:
        """The example, decoded as a request would be: the warm-up prediction at load time uses it."""
        return self.codec.example_records()

    def log_inputs(self, records: list[Any]) -> list[dict]:
        """What the prediction log keeps of each record: the codec's entry (an image's hash and
        descriptors, never its bytes; a text cut short; a tabular record as it came)."""
        entry = self._log_entry
        return [entry(record) for record in records]

    def outputs(self, probabilities: np.ndarray, embeddings: np.ndarray | None = None) -> list[dict]:
        """[rows, classes] probabilities -> one answer per record, by the one rule every caller uses
        (with the embedding row when the graph has one: logged, never sent to the client)."""
        return answers(probabilities, self.contract, top_k=self.top_k, embeddings=embeddings)
