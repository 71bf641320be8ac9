"""Loading, validation and splitting of labelled texts.

Each bad-input case writes a small file to tmp_path and checks that the error names the file, the line and
the problem, as a person fixing the file would need; the real UCI sentences load as documented.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import pandas as pd
import pytest

from pipelines.text.data import (
    TextDataSettings,
    TextDataValidationError,
    load_texts,
    resolve_text_paths,
    split_texts,
)

from tests.paths import UCI_SENTIMENT

UCI_FILES = ("amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt")
UCI_SHA256 = "3d32a428a601c3b5e44aaf6f0aa9364d21cf90aaee43b4911a37d564f5f7fbda"  # the three files, in that order
UCI_LABELS = {"0": "negative", "1": "positive"}
needs_uci = pytest.mark.skipif(
    not all((UCI_SENTIMENT / name).is_file() for name in UCI_FILES),
    reason=f"UCI sentences not found at {UCI_SENTIMENT}",
)


def tsv(rows: int = 10, start: int = 0) -> str:
    """Headerless `sentence<TAB>0|1` lines like the UCI files, distinct texts, labels alternating."""
    lines = (f"Sentence number {i} was {'fine' if i % 2 else 'poor'}.\t{i % 2}\n" for i in range(start, start + rows))
    return "".join(lines)


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def load(*paths, **settings):
    settings.setdefault("header", False)
    return load_texts(TextDataSettings(paths=[str(path) for path in paths], **settings), seed=0, env={})


def problems(*paths, **settings) -> list[str]:
    with pytest.raises(TextDataValidationError) as caught:
        load(*paths, **settings)
    return caught.value.problems


# ---------------------------------------------------------------------------------- real data


@needs_uci
def test_uci_sentences_load_as_documented():
    paths = [UCI_SENTIMENT / name for name in UCI_FILES]
    data = load(*paths, label_names=UCI_LABELS)
    frame = data.frame
    assert (data.source, data.paths, data.sha256) == ("files", [str(path) for path in paths], UCI_SHA256)
    assert list(frame.columns) == ["text", "label", "source"]
    assert len(frame) == 2838 - 16  # 16 exact duplicates (one across files: amazon and imdb)
    assert sorted(frame["source"].unique()) == ["amazon_cells_labelled", "imdb_labelled", "yelp_labelled"]
    assert sorted(frame["label"].unique()) == ["negative", "positive"]
    assert not frame["text"].duplicated().any()
    assert (frame["text"] == frame["text"].str.strip()).all()
    assert frame["text"].str.contains('"').sum() > 50  # quotes are text: TSV is read with quoting off
    assert frame["text"].str.contains("\x85").any()  # U+0085 inside a sentence does not end a line
    assert data.notes[0].startswith("16 exact duplicate texts dropped, the first occurrence kept: 'Works great!.'")
    assert data.notes[1:] == [
        "amazon_cells_labelled: label counts: negative 462, positive 461",
        "imdb_labelled: label counts: negative 467, positive 482",
        "yelp_labelled: label counts: negative 478, positive 472",
        "all sources: label counts: negative 1407, positive 1415",
    ]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in paths)).hexdigest()
    assert digest == UCI_SHA256 == load(*paths, label_names=UCI_LABELS).sha256


# ---------------------------------------------------------------------------------- valid files


def test_headerless_tsv_is_stripped_mapped_and_counted(tmp_path):
    path = write(tmp_path, "reviews.txt", 'A "quoted" start, no closing quote   \t 1 \n' + tsv(9))
    data = load(path, label_names=UCI_LABELS)
    assert data.frame.loc[0].tolist() == ['A "quoted" start, no closing quote', "positive", "reviews"]
    assert len(data.frame) == 10
    assert data.notes == ["reviews: label counts: negative 5, positive 5"]
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_csv_with_header_names_its_text_and_label_columns(tmp_path):
    lines = ["id,review,stars"] + [f'{i},"Review {i}, with a comma",{i % 2}' for i in range(9)]
    lines.insert(2, '99,"A review over\ntwo lines",1')
    path = write(tmp_path, "shop.csv", "\n".join(lines) + "\n")
    data = load(path, header=True, columns=["review", "stars"])
    assert len(data.frame) == 10
    assert data.frame.loc[1, "text"] == "A review over\ntwo lines"
    assert data.frame.loc[0].tolist() == ["Review 0, with a comma", "0", "shop"]


def test_headerless_fields_are_named_by_columns_in_file_order(tmp_path):
    path = write(tmp_path, "labelled.tsv", "".join(f"{i % 2}\tid{i}\tText {i}\n" for i in range(10)))
    data = load(path, columns=["label", "id", "text"])
    assert data.frame.loc[3, ["text", "label"]].tolist() == ["Text 3", "1"]


def test_jsonl_records_and_blank_lines(tmp_path):
    records = [json.dumps({"text": f"Message {i}", "label": i % 2, "extra": None}) for i in range(10)]
    records.insert(4, "   ")
    path = write(tmp_path, "messages.jsonl", "\n".join(records) + "\n")
    data = load(path)
    assert len(data.frame) == 10
    assert sorted(data.frame["label"].unique()) == ["0", "1"]
    assert data.notes[0] == f"{path}: 1 blank line skipped (line 5)"


def test_several_files_form_one_data_set_with_a_source_column(tmp_path):
    first, second = write(tmp_path, "a.txt", tsv(10)), write(tmp_path, "b.txt", tsv(10, start=10))
    data = load(first, second)
    assert data.frame["source"].value_counts().to_dict() == {"a": 10, "b": 10}
    assert data.sha256 == hashlib.sha256(first.read_bytes() + second.read_bytes()).hexdigest()
    assert data.notes[-1] == "all sources: label counts: 0 10, 1 10"


# ---------------------------------------------------------------------------------- bad input


def test_non_utf8_bytes_name_file_line_and_byte_offset(tmp_path):
    good = tsv(10).encode()
    path = write(tmp_path, "latin1.txt", good + "Caf\u00e9 was fine.\t1\n".encode("latin-1"))
    assert problems(path) == [
        f"{path}: 1 line with bytes that are not UTF-8 (line 11 at byte {len(good) + 3}); save the file as UTF-8"
    ]


def test_wrong_number_of_fields_in_tsv(tmp_path):
    path = write(tmp_path, "fields.txt", tsv(5) + "No label here\nOne\ttab\ttoo many\t1\n" + tsv(5, start=5))
    assert problems(path) == [
        f"{path}: 1 malformed row with 1 tab-separated field where 2 are expected (line 6)",
        f"{path}: 1 malformed row with 4 tab-separated fields where 2 are expected (line 7)",
    ]


def test_wrong_number_of_fields_in_csv(tmp_path):
    path = write(tmp_path, "fields.csv", "text,label\n" + "".join(f"Text {i},{i % 2}\n" for i in range(10)) + "a,b,c\n")
    assert problems(path, header=True) == [
        f"{path}: 1 malformed row with 3 comma-separated fields where 2 are expected (line 12)"
    ]


def test_invalid_json_line(tmp_path):
    records = [json.dumps({"text": f"Message {i}", "label": str(i % 2)}) for i in range(10)]
    records[2] = '{"text": "unterminated, "label": "1"}'
    records[7] = '["a list", "1"]'
    path = write(tmp_path, "broken.jsonl", "\n".join(records))
    found = problems(path, min_class_examples=1)
    assert found[0].startswith(f"{path}: 1 line not valid JSON (line 3; first: Expecting ")
    assert found[1] == f"{path}: 1 line not a JSON object (line 8)"


def test_empty_or_whitespace_only_text(tmp_path):
    path = write(tmp_path, "blank.txt", tsv(10) + "\t1\n   \t0\n")
    assert problems(path) == [f"{path}: 2 rows with empty text (lines 11, 12)"]


def test_missing_label(tmp_path):
    path = write(tmp_path, "unlabelled.txt", tsv(10) + "A text without its label\t \n")
    assert problems(path) == [f"{path}: 1 row with no label (line 11)"]


def test_label_outside_the_configured_set_lists_the_allowed(tmp_path):
    path = write(tmp_path, "odd.txt", tsv(10) + "Neither good nor bad.\t2\nMeh.\t2\n")
    assert problems(path, label_names=UCI_LABELS, labels=["negative", "positive"]) == [
        f"{path}: label '2' not among the allowed labels (negative, positive) in 2 rows (lines 11, 12)"
    ]


def test_rare_class_without_a_configured_set(tmp_path):
    path = write(tmp_path, "rare.txt", tsv(10) + "Neither good nor bad.\tneutral\n")
    assert problems(path) == [
        f"label 'neutral': only 1 example, fewer than min_class_examples=5 ({path} line 11); "
        "fix the labels or list the allowed ones in `labels`"
    ]
    assert len(load(path, min_class_examples=1).frame) == 11


def test_exact_duplicates_are_dropped_with_a_note(tmp_path):
    path = write(tmp_path, "dupes.txt", tsv(10) + "Sentence number 3 was fine.  \t1\n" + tsv(1, start=3))
    data = load(path)
    assert len(data.frame) == 10
    assert data.notes[0] == (
        "2 exact duplicate texts dropped, the first occurrence kept: "
        f"'Sentence number 3 was fine.' ({path} lines 4, 11, 12)"
    )


def test_duplicate_text_with_conflicting_labels_is_an_error(tmp_path):
    first, second = write(tmp_path, "a.txt", tsv(10)), write(tmp_path, "b.txt", "Sentence number 3 was fine.\t0\n")
    assert problems(first, second, min_class_examples=1) == [
        "text 'Sentence number 3 was fine.' appears with conflicting labels: "
        f"'1' at {first} line 4; '0' at {second} line 1"
    ]


def test_over_long_texts_are_cut_with_a_note(tmp_path):
    path = write(tmp_path, "long.txt", tsv(10) + "x" * 50 + "\t1\n")
    data = load(path, max_chars=40)
    assert data.frame["text"].tolist()[-1] == "x" * 40
    assert data.notes[0] == f"{path}: 1 text longer than 40 characters cut to 40 (line 11)"


def test_header_without_the_named_columns(tmp_path):
    path = write(tmp_path, "header.csv", "sentence,score\nGood,1\n")
    assert problems(path, header=True) == [
        f"{path}: header line has no column 'text' or 'label' (it has 'sentence', 'score'; "
        "set `columns` to the text and label columns)"
    ]


def test_unknown_suffix_and_empty_file(tmp_path):
    odd, empty = write(tmp_path, "data.dat", tsv(10)), write(tmp_path, "empty.txt", "")
    found = problems(odd, empty)
    assert found[0].startswith(f"{odd}: cannot tell the format from the suffix '.dat'")
    assert found[1] == f"{empty}: no rows"
    assert len(load(odd, format="tsv").frame) == 10


def test_all_problems_are_reported_at_once_with_at_most_five_example_lines(tmp_path):
    first = write(tmp_path, "first.txt", b"\xff\tbroken\n" + tsv(10).encode() + b"\t1\n" * 7)
    second = write(tmp_path, "second.txt", tsv(10, start=20) + "Sentence number 21 was fine.\t0\nOdd\n")
    with pytest.raises(TextDataValidationError) as caught:
        load(first, second, labels=["0", "1"])
    error = caught.value
    assert error.problems == [
        f"{first}: 1 line with bytes that are not UTF-8 (line 1 at byte 0); save the file as UTF-8",
        f"{second}: 1 malformed row with 1 tab-separated field where 2 are expected (line 12)",
        f"{first}: 7 rows with empty text (lines 12, 13, 14, 15, 16, ...)",
        f"{first}: label 'broken' not among the allowed labels (0, 1) in 1 row (line 1)",
        f"text 'Sentence number 21 was fine.' appears with conflicting labels: '1' at {second} line 2; "
        f"'0' at {second} line 11",
    ]
    message = str(error).splitlines()
    assert message[0].startswith("text data failed validation with 5 problem(s)")
    assert message[1:] == error.problems


# ------------------------------------------------------------------------- choosing the source


def test_text_data_env_overrides_configured_paths(tmp_path):
    first, second = write(tmp_path, "a.txt", tsv(10)), write(tmp_path, "b.txt", tsv(10, start=10))
    settings = TextDataSettings(paths=[str(tmp_path / "configured.txt")], header=False)
    data = load_texts(settings, seed=0, env={"TEXT_DATA": f"{first}{os.pathsep}{second}"})
    assert (data.source, data.paths) == ("files", [str(first), str(second)])
    assert sorted(data.frame["source"].unique()) == ["a", "b"]
    assert resolve_text_paths([str(second)], env={"TEXT_DATA": str(first)}) == [first]


def test_text_data_env_naming_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="TEXT_DATA=.*missing.txt"):
        resolve_text_paths([], env={"TEXT_DATA": str(tmp_path / "missing.txt")})


def test_some_configured_files_missing_is_an_error(tmp_path):
    present = write(tmp_path, "a.txt", tsv(10))
    with pytest.raises(FileNotFoundError, match="configured text files missing: .*absent.txt"):
        resolve_text_paths([str(present), str(tmp_path / "absent.txt")], env={})


def test_synthetic_data_when_no_file_is_found_is_loud(tmp_path, caplog):
    settings = TextDataSettings(paths=[str(tmp_path / "absent.txt")], synthetic_rows=300, labels=["x", "y"])
    with caplog.at_level(logging.WARNING, logger="pipelines.text.data"):
        data = load_texts(settings, seed=3, env={})
    assert (data.source, data.paths, len(data.frame)) == ("synthetic", [], 300)
    assert data.notes[0].startswith("SYNTHETIC DATA")
    assert "SYNTHETIC DATA" in caplog.text
    assert set(data.frame["source"]) == {"synthetic"}
    assert data.frame["label"].nunique() == 5  # the configured labels apply to real files only
    assert data.sha256 == load_texts(settings, seed=3, env={"TEXT_DATA": ""}).sha256
    assert data.sha256 != load_texts(settings, seed=4, env={}).sha256


# ---------------------------------------------------------------------------------- splitting


@pytest.fixture(scope="module")
def texts() -> pd.DataFrame:
    rows = [(f"text {i}", ("a", "a", "b", "c")[i % 4], ("one", "two", "three")[i % 3]) for i in range(1200)]
    return pd.DataFrame(rows, columns=["text", "label", "source"])


def test_split_is_stratified_disjoint_and_complete(texts):
    parts = split_texts(texts, valid_fraction=0.15, test_fraction=0.2, seed=0)
    assert list(parts) == ["train", "valid", "test"]
    assert [len(part) for part in parts.values()] == [780, 180, 240]
    sets = [set(part["text"]) for part in parts.values()]
    assert set().union(*sets) == set(texts["text"]) and sum(map(len, sets)) == len(texts)
    shares = texts["label"].value_counts(normalize=True)
    for part in parts.values():
        assert part["label"].value_counts(normalize=True).to_dict() == pytest.approx(shares.to_dict(), abs=0.005)
        assert part.index.equals(pd.RangeIndex(len(part)))


def test_split_is_deterministic_for_a_seed(texts):
    first = split_texts(texts, valid_fraction=0.15, test_fraction=0.2, seed=0)
    again = split_texts(texts, valid_fraction=0.15, test_fraction=0.2, seed=0)
    other = split_texts(texts, valid_fraction=0.15, test_fraction=0.2, seed=1)
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert set(first["test"]["text"]) != set(other["test"]["text"])


def test_shifted_source_is_held_out_of_every_split(texts):
    parts = split_texts(texts, valid_fraction=0.15, test_fraction=0.2, seed=0, shifted_source="three")
    assert list(parts) == ["train", "valid", "test", "shifted"]
    assert set(parts["shifted"]["source"]) == {"three"} and len(parts["shifted"]) == 400
    for name in ("train", "valid", "test"):
        assert "three" not in set(parts[name]["source"])
    assert sum(len(part) for part in parts.values()) == len(texts)
    with pytest.raises(ValueError, match="shifted source 'four' not in the data"):
        split_texts(texts, valid_fraction=0.15, test_fraction=0.2, seed=0, shifted_source="four")


def test_split_refuses_duplicate_texts(texts):
    doubled = pd.concat([texts, texts.head(3)], ignore_index=True)
    with pytest.raises(ValueError, match="3 duplicate texts would leak between splits"):
        split_texts(doubled, valid_fraction=0.15, test_fraction=0.2, seed=0)


@pytest.mark.parametrize("valid, test", [(0.0, 0.2), (0.5, 0.5), (0.2, 1.2)])
def test_split_rejects_impossible_fractions(texts, valid, test):
    with pytest.raises(ValueError, match="split fractions"):
        split_texts(texts, valid_fraction=valid, test_fraction=test, seed=0)


@needs_uci
def test_uci_split_trains_on_amazon_and_yelp_with_imdb_as_shift():
    data = load(*(UCI_SENTIMENT / name for name in UCI_FILES), label_names=UCI_LABELS)
    parts = split_texts(data.frame, valid_fraction=0.15, test_fraction=0.2, seed=0, shifted_source="imdb_labelled")
    assert len(parts["shifted"]) == 949
    assert set(parts["train"]["source"]) == {"amazon_cells_labelled", "yelp_labelled"}
    texts = [set(part["text"]) for part in parts.values()]
    assert sum(map(len, texts)) == len(set().union(*texts)) == len(data.frame)


def test_byte_order_mark_and_crlf_line_ends_are_not_text(tmp_path):
    path = write(tmp_path, "windows.txt", b"\xef\xbb\xbf" + tsv(10).replace("\n", "\r\n").encode())
    frame = load(path).frame
    assert frame.loc[0, "text"] == "Sentence number 0 was poor." and frame.loc[9, "label"] == "1"
