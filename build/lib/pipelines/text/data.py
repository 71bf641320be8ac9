"""Load labelled texts (one or more TSV/CSV/JSONL files, or a synthetic stand-in), validate them, split them.

Files are read as raw bytes and parsed here, line by line, so validation sees exactly what is in them:
bytes that are not UTF-8, rows with the wrong number of fields, quotes that are just characters (TSV
is read with quoting off: the UCI sentences contain `"`), blank texts and labels. Every problem is
collected before one TextDataValidationError lists them all, each naming the file, the problem and up
to MAX_EXAMPLE_ROWS example lines (1-based line numbers in that file; for CSV the line a record starts
on). Nothing is dropped silently: blank lines skipped, texts cut at max_chars and duplicates dropped are
all counted in `notes`.

Only pandas, numpy and the standard library: torch and transformers belong to the training modules.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from pipelines.common.config import Config
from pipelines.text.synthetic import generate_messages

log = logging.getLogger(__name__)

DATA_PATH_ENV = "TEXT_DATA"
MAX_EXAMPLE_ROWS = 5
MAX_SHOWN_CHARS = 60  # duplicate texts quoted in messages are cut to this
COLUMNS = ("text", "label", "source")
FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
SYNTHETIC = "synthetic"


class TextDataValidationError(ValueError):
    """Labelled texts that cannot be trusted for training; `.problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        header = (
            f"text data failed validation with {len(self.problems)} problem(s) "
            "(lines are 1-based line numbers in each file):"
        )
        super().__init__("\n".join([header, *self.problems]))


class TextDataSettings(Config):
    """The `data` section of configs/text.yaml: where the texts are and what a valid row is."""

    paths: list[str] = []  # relative to the working directory; env TEXT_DATA (os.pathsep-separated) overrides
    format: Literal["auto", "csv", "tsv", "jsonl"] = "auto"  # auto: by suffix, .txt is TSV
    header: bool = True  # False: headerless files, fields named by `columns` in file order
    columns: list[str] = Field(["text", "label"], min_length=2)  # see _text_and_label_fields
    labels: list[str] | None = None  # the allowed labels (after label_names); None = infer
    label_names: dict[str, str] = {}  # raw label value -> name, e.g. {"0": "negative"}
    min_class_examples: int = Field(5, ge=1)  # checked only when `labels` is None
    max_chars: int = Field(5000, gt=0)  # longer texts are kept but cut
    synthetic_rows: int = Field(2000, ge=100)  # used only when no file is found: support messages, flagged


@dataclass(frozen=True)
class TextData:
    """Validated texts (columns text, label, source) plus where they came from, for run provenance."""

    frame: pd.DataFrame
    sha256: str  # of the raw bytes of all files in order, or of the synthetic corpus as CSV
    source: str  # "files" or "synthetic"
    paths: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Parsed:
    """One file's records before validation: (line, text, label) with None where a value is absent."""

    records: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ wording


def _lines(numbers) -> str:
    """'lines 4, 9, ...' (or 'line 4'): the first few line numbers, so a reader can find them."""
    numbers = list(numbers)
    shown = ", ".join(str(number) for number in numbers[:MAX_EXAMPLE_ROWS])
    more = ", ..." if len(numbers) > MAX_EXAMPLE_ROWS else ""
    return f"{'line' if len(numbers) == 1 else 'lines'} {shown}{more}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _quote(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "...")


def _where(rows: pd.DataFrame) -> str:
    """'a.tsv lines 3, 8; b.tsv line 2': example places of rows from one or more files."""
    return "; ".join(f"{name} {_lines(group['line'])}" for name, group in rows.groupby("file", sort=False))


# ------------------------------------------------------------------------------------ paths


def resolve_text_paths(configured: list[str], env: Mapping[str, str] = os.environ) -> list[Path]:
    """The files to read: $TEXT_DATA wins, then the configured paths; [] means synthetic data.

    A set TEXT_DATA naming a missing file is an error, not a fallback (the user asked for that file), and
    so is a configured list of which only some files exist: training on part of the data must not pass
    unnoticed. Only when none of the configured files exists does the loader fall back to synthetic data.
    """
    override = env.get(DATA_PATH_ENV, "").strip()
    if override:
        paths = [Path(part.strip()).expanduser() for part in override.split(os.pathsep) if part.strip()]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"{DATA_PATH_ENV}={override}: no such file: {', '.join(missing)}")
        return paths
    paths = [Path(path).expanduser() for path in configured]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing and len(missing) < len(paths):
        raise FileNotFoundError(
            f"configured text files missing: {', '.join(missing)} (the others exist; "
            "fix the data paths rather than train on part of the data)"
        )
    return [] if missing else paths


def _file_format(path: Path, configured: str) -> str | None:
    return FORMAT_BY_SUFFIX.get(path.suffix.lower()) if configured == "auto" else configured


def _text_and_label_fields(columns: list[str], header: bool) -> tuple[str, str]:
    """Which fields hold the text and the label.

    Files with a header (and JSONL keys): the first entry of `columns` names the text column, the second
    the label column; other columns are ignored. Headerless files: `columns` names the fields in file
    order; the text is the field called "text" and the label the one called "label", or, if those names
    are not used, the first and second fields.
    """
    if len(columns) < 2 or len(set(columns)) != len(columns):
        raise ValueError(f"text data columns must be at least two distinct names, got {columns}")
    if not header and "text" in columns and "label" in columns:
        return "text", "label"
    return columns[0], columns[1]


# ------------------------------------------------------------------------------------ parsing


def _decode(name: str, data: bytes, parsed: _Parsed) -> list[str]:
    """Split on b'\\n' only (the IMDb file has U+0085 inside sentences) and decode each line as UTF-8.

    Lines with bytes that are not UTF-8 are reported with their byte offset and decoded with U+FFFD so
    the rest of the file is still checked.
    """
    lines, bad, offset = [], [], 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        body = raw[:-1] if raw.endswith(b"\r") else raw
        bom = 3 if number == 1 and body.startswith(b"\xef\xbb\xbf") else 0
        body = body[bom:]
        try:
            lines.append(body.decode("utf-8"))
        except UnicodeDecodeError as error:
            bad.append(f"line {number} at byte {offset + bom + error.start}")
            lines.append(body.decode("utf-8", errors="replace"))
        offset += len(raw) + 1
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if bad:
        shown = ", ".join(bad[:MAX_EXAMPLE_ROWS]) + (", ..." if len(bad) > MAX_EXAMPLE_ROWS else "")
        parsed.problems.append(
            f"{name}: {_count(len(bad), 'line')} with bytes that are not UTF-8 ({shown}); save the file as UTF-8"
        )
    return lines


def _split_rows(
    name: str, lines: list[str], file_format: str, parsed: _Parsed
) -> tuple[list[tuple[int, list[str]]], list[int]]:
    """(line number, fields) per row, and the blank lines skipped.

    TSV is split on tabs with quoting off (quotes are text); CSV goes through the csv module, so a quoted
    field may span lines and a row's number is the line it starts on. A CSV the csv module gives up on
    (a field over its size limit) is reported at that line and read no further.
    """
    if file_format == "tsv":
        numbered = [(number, line.split("\t")) for number, line in enumerate(lines, start=1)]
    else:
        reader = csv.reader(io.StringIO("\n".join(lines), newline=""))
        numbered, start = [], 1
        try:
            for fields in reader:
                numbered.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as error:
            parsed.problems.append(f"{name}: not a well-formed CSV from line {start} on ({error})")
    rows, blank = [], []
    for number, fields in numbered:
        if len(fields) <= 1 and not "".join(fields).strip():
            blank.append(number)
        else:
            rows.append((number, fields))
    return rows, blank


def _note_blank_lines(name: str, blank: list[int], parsed: _Parsed) -> None:
    if blank:
        parsed.notes.append(f"{name}: {_count(len(blank), 'blank line')} skipped ({_lines(blank)})")


def _delimited(name: str, lines: list[str], file_format: str, settings, parsed: _Parsed) -> None:
    text_field, label_field = _text_and_label_fields(settings.columns, settings.header)
    rows, blank = _split_rows(name, lines, file_format, parsed)
    _note_blank_lines(name, blank, parsed)
    if settings.header:
        if not rows:
            parsed.problems.append(f"{name}: empty file (no header, no rows)")
            return
        names = [value.strip() for value in rows.pop(0)[1]]
        missing = [column for column in (text_field, label_field) if column not in names]
        if missing:
            parsed.problems.append(
                f"{name}: header line has no column {' or '.join(map(repr, missing))} "
                f"(it has {', '.join(map(repr, names))}; set `columns` to the text and label columns)"
            )
            return
    else:
        names = list(settings.columns)
    text_at, label_at = names.index(text_field), names.index(label_field)
    wrong: dict[int, list[int]] = {}
    for number, fields in rows:
        if len(fields) != len(names):
            wrong.setdefault(len(fields), []).append(number)
        else:
            parsed.records.append((number, fields[text_at], fields[label_at]))
    separator = "tab-separated" if file_format == "tsv" else "comma-separated"
    for found, numbers in wrong.items():
        parsed.problems.append(
            f"{name}: {_count(len(numbers), 'malformed row')} with {found} {separator} "
            f"{'field' if found == 1 else 'fields'} where {len(names)} are expected ({_lines(numbers)})"
        )


def _json_value(value) -> str | None:
    """A JSON scalar as text; None for null. Arrays and objects raise TypeError."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    raise TypeError(type(value).__name__)


def _jsonl(name: str, lines: list[str], settings, parsed: _Parsed) -> None:
    text_key, label_key = _text_and_label_fields(settings.columns, header=True)
    invalid, not_objects, nested = [], [], []
    _note_blank_lines(name, [number for number, line in enumerate(lines, start=1) if not line.strip()], parsed)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            invalid.append((number, error.msg))
            continue
        if not isinstance(record, dict):
            not_objects.append(number)
            continue
        try:
            parsed.records.append((number, _json_value(record.get(text_key)), _json_value(record.get(label_key))))
        except TypeError:
            nested.append(number)
    if invalid:
        parsed.problems.append(
            f"{name}: {_count(len(invalid), 'line')} not valid JSON ({_lines(n for n, _ in invalid)}; "
            f"first: {invalid[0][1]})"
        )
    if not_objects:
        parsed.problems.append(f"{name}: {_count(len(not_objects), 'line')} not a JSON object ({_lines(not_objects)})")
    if nested:
        parsed.problems.append(
            f"{name}: {_count(len(nested), 'line')} where {text_key!r} or {label_key!r} is a JSON array or "
            f"object, not text ({_lines(nested)})"
        )


def _parse_file(path: Path, data: bytes, settings) -> _Parsed:
    parsed, name = _Parsed(), str(path)
    file_format = _file_format(path, settings.format)
    if file_format is None:
        parsed.problems.append(
            f"{name}: cannot tell the format from the suffix {path.suffix!r} "
            f"(known: {', '.join(FORMAT_BY_SUFFIX)}); set the data format to csv, tsv or jsonl"
        )
        return parsed
    lines = _decode(name, data, parsed)
    if file_format == "jsonl":
        _jsonl(name, lines, settings, parsed)
    else:
        _delimited(name, lines, file_format, settings, parsed)
    if not parsed.records and not parsed.problems:
        parsed.problems.append(f"{name}: no rows")
    return parsed


# ------------------------------------------------------------------------------------ validation


def _strip(value: str | None) -> str:
    return "" if value is None else value.strip()


def validate_texts(
    rows: pd.DataFrame,
    *,
    labels: list[str] | None,
    label_names: Mapping[str, str],
    min_class_examples: int,
    max_chars: int,
) -> tuple[pd.DataFrame, list[str]]:
    """Check parsed rows (columns file, line, source, text, label) and return (frame, notes).

    Texts and labels are stripped, labels mapped through `label_names`, texts over `max_chars` cut and
    exact duplicate texts dropped (the first kept). Raises TextDataValidationError listing every problem.
    """
    problems: list[str] = []
    names = dict(label_names)
    rows = rows.assign(
        text=rows["text"].map(_strip), label=rows["label"].map(lambda value: names.get(_strip(value), _strip(value)))
    )
    empty_text = rows["text"] == ""
    missing_label = rows["label"] == ""
    for name, group in rows[empty_text].groupby("file", sort=False):
        problems.append(f"{name}: {_count(len(group), 'row')} with empty text ({_lines(group['line'])})")
    for name, group in rows[missing_label].groupby("file", sort=False):
        problems.append(f"{name}: {_count(len(group), 'row')} with no label ({_lines(group['line'])})")
    if labels is not None:
        outside = rows[~missing_label & ~rows["label"].isin(labels)]
        for (name, value), group in outside.groupby(["file", "label"], sort=False):
            problems.append(
                f"{name}: label {value!r} not among the allowed labels ({', '.join(labels)}) "
                f"in {_count(len(group), 'row')} ({_lines(group['line'])})"
            )
    rows = rows[~empty_text & ~missing_label]

    notes: list[str] = []
    long = rows["text"].str.len() > max_chars
    for name, group in rows[long].groupby("file", sort=False):
        notes.append(
            f"{name}: {_count(len(group), 'text')} longer than {max_chars} characters cut to {max_chars} "
            f"({_lines(group['line'])})"
        )
    rows = rows.assign(text=rows["text"].str.slice(0, max_chars))

    repeated = rows[rows["text"].duplicated(keep=False)]
    dropped = 0
    shown: list[str] = []
    for text, group in repeated.groupby("text", sort=False):
        if group["label"].nunique() > 1:
            places = "; ".join(f"{label!r} at {_where(same)}" for label, same in group.groupby("label", sort=False))
            problems.append(f"text {_quote(text)} appears with conflicting labels: {places}")
        else:
            dropped += len(group) - 1
            if len(shown) < MAX_EXAMPLE_ROWS:
                shown.append(f"{_quote(text)} ({_where(group)})")
    if dropped:
        more = "; ..." if repeated["text"].nunique() > len(shown) else ""
        notes.append(
            f"{_count(dropped, 'exact duplicate text')} dropped, the first occurrence kept: "
            f"{'; '.join(shown)}{more}"
        )
    rows = rows[~rows["text"].duplicated(keep="first")]

    counts = rows["label"].value_counts()
    if labels is None:
        for label in sorted(counts[counts < min_class_examples].index):
            group = rows[rows["label"] == label]
            problems.append(
                f"label {label!r}: only {_count(len(group), 'example')}, fewer than min_class_examples="
                f"{min_class_examples} ({_where(group)}); fix the labels or list the allowed ones in `labels`"
            )
    if problems:
        raise TextDataValidationError(problems)
    if rows.empty:
        raise TextDataValidationError(["text data: no rows"])

    for source, group in rows.groupby("source", sort=False):
        notes.append(f"{source}: {_label_counts(group)}")
    if rows["source"].nunique() > 1:
        notes.append(f"all sources: {_label_counts(rows)}")
    return rows[list(COLUMNS)].reset_index(drop=True), notes


def _label_counts(rows: pd.DataFrame) -> str:
    counts = rows["label"].value_counts()
    return "label counts: " + ", ".join(f"{label} {counts[label]}" for label in sorted(counts.index))


# ------------------------------------------------------------------------------------ loading


def load_texts(settings, *, seed: int, env: Mapping[str, str] = os.environ) -> TextData:
    """Read and validate the labelled text files if any are found, else generate synthetic messages (loudly).

    Several files form one data set; the `source` column holds each row's file stem.
    """
    paths = resolve_text_paths(list(settings.paths), env)
    if paths:
        return _load_files(paths, settings)

    frame = generate_messages(settings.synthetic_rows, seed)
    rows = frame.assign(file=SYNTHETIC, line=np.arange(1, len(frame) + 1))
    validated, notes = validate_texts(
        rows, labels=None, label_names={}, min_class_examples=settings.min_class_examples, max_chars=settings.max_chars
    )
    warning = (
        f"SYNTHETIC DATA: no text files found (config paths: {list(settings.paths)}, ${DATA_PATH_ENV} unset); "
        f"generated {settings.synthetic_rows} synthetic support messages with seed {seed} (labels: "
        f"{', '.join(sorted(validated['label'].unique()))}; the configured labels and label_names are not "
        "applied). Metrics say nothing about real texts: set TEXT_DATA or the data paths to real files."
    )
    log.warning("%s\n%s\n%s", "!" * 100, warning, "!" * 100)
    digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
    return TextData(validated, digest, SYNTHETIC, [], [warning, *notes])


def _load_files(paths: list[Path], settings) -> TextData:
    digest = hashlib.sha256()
    problems: list[str] = []
    notes: list[str] = []
    frames = []
    stems: dict[str, Path] = {}
    for path in paths:
        data = path.read_bytes()
        digest.update(data)
        if path.stem in stems:
            problems.append(
                f"{path}: same file stem {path.stem!r} as {stems[path.stem]}; the stem names the source, "
                "so rename one of them"
            )
        stems.setdefault(path.stem, path)
        parsed = _parse_file(path, data, settings)
        problems += parsed.problems
        notes += parsed.notes
        if parsed.records:
            frames.append(
                pd.DataFrame(parsed.records, columns=["line", "text", "label"]).assign(file=str(path), source=path.stem)
            )
    if not frames:  # every file failed to parse or was empty, and each said why
        raise TextDataValidationError(problems)
    rows = pd.concat(frames, ignore_index=True)
    try:
        frame, validation_notes = validate_texts(
            rows,
            labels=settings.labels,
            label_names=settings.label_names,
            min_class_examples=settings.min_class_examples,
            max_chars=settings.max_chars,
        )
    except TextDataValidationError as error:
        raise TextDataValidationError(problems + error.problems) from None
    if problems:
        raise TextDataValidationError(problems)
    log.info("read %d texts from %s", len(frame), ", ".join(map(str, paths)))
    return TextData(frame, digest.hexdigest(), "files", [str(path) for path in paths], notes + validation_notes)


# ------------------------------------------------------------------------------------ splitting


def split_texts(
    frame: pd.DataFrame,
    *,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    shifted_source: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Split into train/valid/test, stratified by label and reproducible for a seed.

    Each label's rows are shuffled with the seed and the first round(fraction x count) go to test, the
    next to valid, the rest to train; within a split rows keep the frame's order. With `shifted_source`
    the rows of that source are held out of all three and returned as "shifted" (a domain the model never
    trains on, for drift monitoring). The frame must hold no duplicate texts (load_texts drops them), so
    no text is in two splits.
    """
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            "split fractions must be in (0, 1) and sum below 1: "
            f"valid={valid_fraction}, test={test_fraction}"
        )
    duplicated = frame["text"].duplicated()
    if duplicated.any():
        raise ValueError(
            f"cannot split: {_count(int(duplicated.sum()), 'duplicate text')} would leak between splits "
            "(load_texts drops duplicates; drop them before splitting)"
        )
    parts: dict[str, pd.DataFrame] = {}
    if shifted_source is not None:
        sources = sorted(frame["source"].unique())
        if shifted_source not in sources:
            raise ValueError(f"shifted source {shifted_source!r} not in the data (sources: {', '.join(sources)})")
        held_out = (frame["source"] == shifted_source).to_numpy()
        if held_out.all():
            raise ValueError(f"shifted source {shifted_source!r} is all the data: nothing left to train on")
        parts["shifted"] = frame[held_out]
        frame = frame[~held_out]

    rng = np.random.default_rng(seed)
    labels = frame["label"].to_numpy()
    assignment = np.full(len(frame), "train", dtype=object)
    for label in sorted(set(labels)):
        positions = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(np.floor(test_fraction * len(positions) + 0.5))
        n_valid = int(np.floor(valid_fraction * len(positions) + 0.5))
        assignment[positions[:n_test]] = "test"
        assignment[positions[n_test : n_test + n_valid]] = "valid"
    splits = {name: frame[assignment == name] for name in ("train", "valid", "test")}
    texts = [set(part["text"]) for part in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2]), "a text is in two splits"
    return {name: part.reset_index(drop=True) for name, part in {**splits, **parts}.items()}
