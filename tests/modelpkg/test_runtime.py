"""The one rule from probabilities to labels, and the Predictor that scores stored rows like requests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelpkg.contract import PREDICTED_LABEL, PROBABILITY, class_probability_column
from modelpkg.runtime import (Predictor, answer_columns, answers, check_inputs, decide, open_session, prediction_columns,
                              public_answer)
from modelpkg.codecs.text import RUN_TEXTS
from tests import factories
from tests.modelpkg.conftest import image_contract, text_contract

THREE = np.array([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
TWO = np.array([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])


def test_binary_models_say_positive_at_the_threshold_and_report_p_positive():
    contract = text_contract(threshold=0.4, positive_label="positive")
    chosen, reported = decide(TWO, contract)
    assert chosen.tolist() == [0, 1, 1] and reported.tolist() == [0.3, 0.4, 0.8]  # 0.4 >= 0.4: positive
    flipped = text_contract(threshold=0.65, positive_label="negative")  # the positive class may be class 0
    chosen, reported = decide(TWO, flipped)
    assert chosen.tolist() == [0, 1, 1] and reported.tolist() == [0.7, 0.6, 0.2]


def test_binary_models_without_a_threshold_take_the_more_likely_class():
    chosen, reported = decide(TWO, text_contract())
    assert chosen.tolist() == [0, 0, 1] and reported.tolist() == [0.3, 0.4, 0.8]


def test_multi_class_models_take_the_most_likely_class_and_report_its_probability():
    chosen, reported = decide(THREE, image_contract())
    assert chosen.tolist() == [1, 0, 2] and reported.tolist() == [0.5, 0.7, 0.8]
    first = answers(THREE, image_contract())[0]
    assert first == {"label": "green", "probability": 0.5, "probabilities": {"red": 0.2, "green": 0.5, "blue": 0.3}}


@pytest.mark.parametrize("contract", [image_contract(), text_contract(), text_contract(threshold=0.45, positive_label="positive")])
def test_the_reference_columns_and_the_logged_answers_agree(contract):
    """Monitoring builds the reference from probabilities and windows from logged answers: one rule, two doors."""
    probabilities = THREE if len(contract.labels) == 3 else TWO
    columns = prediction_columns(probabilities, contract)
    from_answers = [answer_columns(answer, contract) for answer in answers(probabilities, contract)]
    for row, expected in enumerate(from_answers):
        assert {name: (values[row] if name != PREDICTED_LABEL else str(values[row])) for name, values in columns.items()} \
            == pytest.approx(expected)
    expected_names = {PROBABILITY, PREDICTED_LABEL} | (
        {class_probability_column(label) for label in contract.labels} if len(contract.labels) > 2 else set())
    assert set(columns) == expected_names


def test_embeddings_travel_in_the_logged_answer_and_the_reference_columns_but_never_to_the_client():
    contract = image_contract(embedding_output="embedding", embedding_size=2)
    embeddings = np.array([[0.5, -1.0], [1.5, 0.25], [0.0, 2.0]], dtype=np.float32)
    logged = answers(THREE, contract, embeddings=embeddings)
    assert [answer["embedding"] for answer in logged] == embeddings.tolist()
    assert all("embedding" not in public_answer(answer) for answer in logged)
    assert public_answer(logged[0]) == answers(THREE, contract)[0]
    columns = prediction_columns(THREE, contract, embeddings)
    assert columns["embedding_2"].tolist() == [-1.0, 0.25, 2.0]
    assert [answer_columns(answer, contract)["embedding_1"] for answer in logged] == [0.5, 1.5, 0.0]
    with pytest.raises(ValueError, match="embedding output"):
        prediction_columns(THREE, contract)


def test_a_contract_names_its_embedding_output_and_width_together():
    with pytest.raises(ValueError, match="embedding_output and embedding_size"):
        image_contract(embedding_output="embedding")
    assert image_contract(embedding_output="embedding", embedding_size=4).embedding_columns == [
        "embedding_1", "embedding_2", "embedding_3", "embedding_4"]


def test_check_inputs_names_what_the_contract_and_graph_disagree_on(image_package):
    session = open_session(image_package.onnx_path)
    check_inputs(image_package.contract, session)
    with pytest.raises(ValueError, match=r"only in contract \['pixels'\], only in graph \['image'\]"):
        check_inputs(image_contract(inputs=[image_package.contract.inputs[0].model_copy(update={"name": "pixels"})]),
                     session)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_score_rows_equals_scoring_the_same_rows_sent_as_a_request(kind, image_package, text_package):
    package, rows = ((image_package, factories.toy_images(40, seed=3)) if kind == "image"
                     else (text_package, factories.toy_texts(40, seed=3)))
    predictor = Predictor(package, max_batch=16)  # several chunks
    stored = rows.to_dict(orient="records")
    scored = predictor.score_rows(stored)
    body = json.dumps(predictor.codec.requests(stored)[:16]).encode()
    np.testing.assert_array_equal(scored[:16], predictor.probabilities(predictor.codec.parse(body)))
    labels = np.array(predictor.contract.labels)[decide(scored, predictor.contract)[0]]
    assert (labels == rows["label"].to_numpy()).mean() > 0.95  # the toy models really work
    assert predictor.score_rows([]).shape == (0, len(predictor.contract.labels))


def test_texts_run_in_length_sorted_groups_and_come_back_in_the_records_order(text_package):
    predictor = Predictor(text_package)
    rows = factories.toy_texts(100, seed=5).to_dict(orient="records")
    records = predictor.codec.validate(predictor.codec.requests(rows))
    runs = predictor.codec.graph_runs(records)
    assert sorted(np.concatenate(runs).tolist()) == list(range(100)) and max(map(len, runs)) <= RUN_TEXTS
    lengths = [[len(records[i].ids) for i in run] for run in runs]
    assert all(max(shorter) <= min(longer) for shorter, longer in zip(lengths, lengths[1:]))
    together = predictor.probabilities(records)
    alone = np.concatenate([predictor.probabilities([record]) for record in records])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # each row its own, whatever ran beside it

