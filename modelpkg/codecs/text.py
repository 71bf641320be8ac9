"""Text records: `{"text": "..."}` -> token ids, attention mask (and token types) from the packaged tokenizer.

The tokenizer travels inside the model package (`tokenizer.json`, a Hugging Face `tokenizers` file) and
`preprocessing` says how long a sequence may be, so serving tokenises exactly as training did, with the
small `tokenizers` library and no transformers. The prediction log keeps the text truncated to
`logged_chars` plus descriptors computed on the whole text (length, words, share of capitals, digits and
punctuation, share of unknown tokens, whether the model saw it truncated): the drift tests read those.
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Mapping

import numpy as np
from pydantic import ConfigDict, Field, with_config
from typing_extensions import NotRequired, TypedDict

from modelpkg.codecs import Codec, Descriptor
from modelpkg.contract import StrictModel

TEXT_FIELD = "text"
RUN_TEXTS = 32  # texts per graph run at most (graph_runs)
SPLIT_WORDS = "split_word_share"
PUNCTUATION = frozenset(string.punctuation)


def split_word_share(encoding) -> float:
    """The share of words the vocabulary does not hold whole, which the tokenizer cuts into several
    pieces: how a subword tokenizer meets new vocabulary (a product name or slang becomes pieces, rarely an
    unknown token, so `unknown_share` hardly moves)."""
    pieces = Counter(word for word in encoding.word_ids if word is not None)
    return sum(1 for count in pieces.values() if count > 1) / max(len(pieces), 1)


class TextPreprocessing(StrictModel):
    tokenizer: str = "tokenizer.json"  # an asset of the package
    max_length: int = Field(128, gt=1)  # tokens the model sees; longer texts are truncated
    pad_token: str = "[PAD]"
    unknown_token: str = "[UNK]"
    max_chars: int = Field(20_000, gt=0)  # longer requests are rejected
    logged_chars: int = Field(500, ge=0)  # the prediction log keeps this much of each text


def text_descriptors(text: str) -> dict[str, float]:
    characters = max(len(text), 1)
    return {
        "chars": float(len(text)),
        "words": float(len(text.split())),
        "upper_share": sum(c.isupper() for c in text) / characters,
        "digit_share": sum(c.isdigit() for c in text) / characters,
        "punctuation_share": sum(c in PUNCTUATION for c in text) / characters,
    }


@dataclass(frozen=True, slots=True)
class TextRecord:
    ids: list[int]
    type_ids: list[int]
    entry: dict


class TextCodec(Codec):
    kind = "text_classifier"

    def __init__(self, contract, files_dir=None, **kwargs):
        self.settings = TextPreprocessing.model_validate(contract.preprocessing)
        super().__init__(contract, files_dir, **kwargs)
        self.input_names = {spec.name for spec in contract.inputs}

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        if self.files_dir is None:
            raise FileNotFoundError(f"{self.contract.name}: the text codec needs the package folder (tokenizer)")
        tokenizer = Tokenizer.from_file(str(self.files_dir / self.settings.tokenizer))
        tokenizer.no_padding()  # feeds pad per batch, to the longest record
        tokenizer.enable_truncation(self.settings.max_length)
        return tokenizer

    @cached_property
    def pad_id(self) -> int:
        return self._token_id(self.settings.pad_token)

    @cached_property
    def unknown_id(self) -> int | None:
        return self.tokenizer.token_to_id(self.settings.unknown_token)

    def _token_id(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ValueError(f"{self.contract.name}: the tokenizer has no token {token!r}")
        return found

    def record_type(self) -> type:
        fields: dict[str, Any] = {TEXT_FIELD: Annotated[str, Field(strict=True, min_length=1,
                                                                   max_length=self.settings.max_chars)]}
        if self.contract.id_field:
            fields[self.contract.id_field] = NotRequired[Annotated[str, Field(
                strict=True, max_length=self.contract.id_max_length)]]
        record = TypedDict(f"{self.contract.name.capitalize()}Record", fields)  # type: ignore[misc]
        return with_config(ConfigDict(extra="forbid"))(record)

    def synthetic_example(self) -> dict:
        return {TEXT_FIELD: "The service was quick and the staff were friendly."}

    def decode(self, index: int, record: dict) -> TextRecord:
        text = record[TEXT_FIELD]
        if not text.strip():
            raise self.field_error(index, TEXT_FIELD, "blank_text", "empty or whitespace-only text")
        encoding = self.tokenizer.encode(text)
        unknown = sum(1 for i in encoding.ids if i == self.unknown_id) if self.unknown_id is not None else 0
        entry = {TEXT_FIELD: text[:self.settings.logged_chars], **text_descriptors(text),
                 "tokens": float(len(encoding.ids)), "unknown_share": unknown / max(len(encoding.ids), 1),
                 SPLIT_WORDS: split_word_share(encoding), "truncated": "yes" if encoding.overflowing else "no"}
        if self.contract.id_field and self.contract.id_field in record:
            entry[self.contract.id_field] = record[self.contract.id_field]
        return TextRecord(encoding.ids, encoding.type_ids, entry)

    def graph_runs(self, records: list[TextRecord]) -> list[np.ndarray]:
        """Texts of similar length together, at most RUN_TEXTS a run: a run is padded to its longest text and
        attention grows with the square of that length, so 256 texts of mixed length in one run cost several
        times what length-sorted runs of 32 do (monitoring's windows, batch scoring, export's checks)."""
        if len(records) <= RUN_TEXTS:
            return [np.arange(len(records))]
        order = np.argsort([len(record.ids) for record in records], kind="stable")
        return [order[start:start + RUN_TEXTS] for start in range(0, len(order), RUN_TEXTS)]

    def feeds(self, records: list[TextRecord]) -> dict[str, np.ndarray]:
        """Right-padded to the longest record of the batch."""
        longest = max(len(record.ids) for record in records)
        ids = np.full((len(records), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(records), longest), dtype=np.int64)
        types = np.zeros((len(records), longest), dtype=np.int64)
        for row, record in enumerate(records):
            ids[row, :len(record.ids)] = record.ids
            mask[row, :len(record.ids)] = 1
            types[row, :len(record.type_ids)] = record.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: value for name, value in feeds.items() if name in self.input_names}

    def log_entry(self, record: TextRecord) -> dict:
        return record.entry

    @property
    def descriptors(self) -> list[Descriptor]:
        return [Descriptor(name, True) for name in ("chars", "words", "upper_share", "digit_share",
                                                    "punctuation_share", "tokens", "unknown_share",
                                                    SPLIT_WORDS)] + [Descriptor("truncated", False)]

    def describe(self, entry: Mapping[str, Any]) -> dict:
        if SPLIT_WORDS not in entry and TEXT_FIELD in entry:  # logged before the descriptor existed
            entry = {**entry, SPLIT_WORDS: split_word_share(self.tokenizer.encode(entry[TEXT_FIELD]))}
        return super().describe(entry)

    def training_row(self, entry: Mapping[str, Any]) -> dict:
        """The logged text (cut at `logged_chars`: keep that above the model's reach to learn from all of it)."""
        return {TEXT_FIELD: entry[TEXT_FIELD]}

    def request(self, row: Mapping[str, Any]) -> dict:
        record = {TEXT_FIELD: str(row[TEXT_FIELD])}
        if self.contract.id_field and self.contract.id_field in row:
            record[self.contract.id_field] = str(row[self.contract.id_field])
        return record
