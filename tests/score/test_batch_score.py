"""Batch scoring (`python -m pipelines.score`, pipelines/score/): Ray Data, the codec's rules, two outputs.

Covers, against a churn champion registered once per module (tests.factories: churn's own export of a
small logistic regression on real Telco rows) in a temporary store:
  - the CLI on a Parquet file of real customers plus bad rows of every kind (unknown category, below the
    minimum, null number, null category, NaN, two problems in one row), on the session's Ray runtime:
    rows in = scored + rejected, every good row scored with Predictor's probability (the server's path)
    and labelled at the contract's threshold, model name, version and run id on every row, each bad row
    in the rejects file with its columns, the problem in the codec's words and its input cells unchanged;
  - a CSV input (read as text): a word in a number column and an empty cell are rejected by name, the
    rest scored as from Parquet;
  - BatchScorer alone (no Ray): one bad row costs its chunk's neighbours nothing; an all-bad batch still
    has typed (all-null) prediction columns;
  - an input lacking a model column fails before scoring, naming it (the CLI exits 2);
  - configs/score.yaml loads and spells out every setting.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelpkg.contract import PREDICTED_LABEL, PROBABILITY
from modelpkg.package import load_model
from modelpkg.runtime import Predictor
from pipelines.churn import schema
from pipelines.common.config import load_config
from pipelines.score.__main__ import main
from pipelines.score.files import InputError
from pipelines.score.job import ScoreConfig, identity_of, score_file
from pipelines.score.rows import (MODEL_NAME, MODEL_RUN_ID, MODEL_VERSION, REJECT_COLUMN, REJECT_PROBLEM,
                                  BatchScorer)
from tests.factories import environment, export_small_churn, telco_customers
from tests.paths import REPO

GOOD_ROWS = 300
ID = schema.ID_COLUMN
# Each bad row: (id, changes to a real customer, the columns named, words its problem must hold).
BAD = [
    ("bad-category", {"Contract": "Weekly"}, {"Contract"}, "unknown category 'Weekly'"),
    ("bad-minimum", {"tenure": -3}, {"tenure"}, "below the minimum 0"),
    ("bad-null-number", {"MonthlyCharges": None}, {"MonthlyCharges"}, "missing value"),
    ("bad-null-category", {"gender": None}, {"gender"}, "missing value"),
    ("bad-nan", {"TotalCharges": math.nan}, {"TotalCharges"}, "finite number"),
    ("bad-two", {"tenure": -1, "PaymentMethod": "Cash"}, {"tenure", "PaymentMethod"}, "unknown category 'Cash'"),
]


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    root = tmp_path_factory.mktemp("score-store")
    with environment(MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db"):
        export_small_churn()
        yield load_model("churn", alias="champion")


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    """Real customers the model never saw (its training rows are the first 400), as a scoring file holds
    them: an id and the inputs, no label."""
    return telco_customers().iloc[2000:2000 + GOOD_ROWS][[ID, *schema.FEATURES]].reset_index(drop=True)


def with_bad_rows(good: pd.DataFrame) -> list[dict]:
    rows = good.to_dict("records")
    for number, (name, changes, _, _) in enumerate(BAD):
        rows.append(rows[number] | changes | {ID: name})
    return rows


def expected_probabilities(package, rows: pd.DataFrame) -> dict[str, float]:
    predictor = Predictor(package.files)
    served = predictor.score_rows(rows.to_dict("records"))[:, predictor.contract.positive_index]
    return dict(zip(rows[ID], served))


def test_cli_scores_good_rows_as_the_server_and_rejects_bad_ones_by_column_and_problem(
        champion, customers, ray_session, tmp_path, capsys):
    source = tmp_path / "customers.parquet"
    pq.write_table(pa.Table.from_pylist(with_bad_rows(customers)), source)
    config = tmp_path / "score.yaml"
    config.write_text("batch_rows: 64\n")

    assert main(["--model", "churn", "--input", str(source), "--output", str(tmp_path / "out.parquet"),
                 "--config", str(config)]) == 0

    printed = capsys.readouterr().out
    assert f"rows in {GOOD_ROWS + len(BAD)}, scored {GOOD_ROWS}, rejected {len(BAD)}" in printed
    scored = pq.read_table(tmp_path / "out.parquet").to_pandas()
    rejected = pq.read_table(tmp_path / "out.rejects.parquet").to_pandas()
    assert len(scored) + len(rejected) == GOOD_ROWS + len(BAD)
    expected = expected_probabilities(champion, customers)
    assert sorted(scored[ID]) == sorted(expected)
    np.testing.assert_allclose(scored[PROBABILITY], scored[ID].map(expected), atol=1e-6)
    threshold = champion.contract.threshold
    assert (scored[PREDICTED_LABEL] == np.where(scored[PROBABILITY] >= threshold, "Yes", "No")).all()
    identity = (champion.name, champion.version, champion.contract.run_id)
    for frame in (scored, rejected):
        assert set(zip(frame[MODEL_NAME], frame[MODEL_VERSION], frame[MODEL_RUN_ID])) == {identity}
    assert REJECT_PROBLEM not in scored and PROBABILITY not in rejected
    by_id = rejected.set_index(ID)
    for number, (name, changes, columns, words) in enumerate(BAD):
        assert set(by_id.loc[name, REJECT_COLUMN].split(", ")) == columns
        assert words in by_id.loc[name, REJECT_PROBLEM]
        assert by_id.loc[name, "SeniorCitizen"] == customers.loc[number, "SeniorCitizen"]  # cells kept as read


def test_csv_input_rejects_unreadable_and_empty_cells_and_scores_the_rest(champion, customers, ray_session,
                                                                          tmp_path):
    good = customers.head(40)
    text = good.astype(str).to_dict("records")
    text.append(text[0] | {ID: "bad-word", "tenure": "twelve"})
    text.append(text[1] | {ID: "bad-empty", "MonthlyCharges": ""})
    source = tmp_path / "customers.csv"
    pd.DataFrame(text).to_csv(source, index=False)

    summary = score_file(source, tmp_path / "out.parquet", champion, ScoreConfig(batch_rows=16))

    assert (summary.counts.rows_in, summary.counts.scored, summary.counts.rejected) == (42, 40, 2)
    scored = pq.read_table(summary.output).to_pandas()
    np.testing.assert_allclose(scored[PROBABILITY], scored[ID].map(expected_probabilities(champion, good)),
                               atol=1e-6)
    rejected = pq.read_table(summary.rejects).to_pandas().set_index(ID)
    assert rejected.loc["bad-word", REJECT_COLUMN] == "tenure"
    assert "unreadable value 'twelve'" in rejected.loc["bad-word", REJECT_PROBLEM]
    assert rejected.loc["bad-empty", REJECT_PROBLEM] == "MonthlyCharges: missing value"


def test_a_bad_row_costs_its_chunk_nothing_and_an_all_bad_batch_keeps_typed_columns(champion, customers):
    scorer = BatchScorer(champion.files, identity_of(champion))
    rows = pd.concat([customers] * 2, ignore_index=True).to_dict("records")  # 600 rows: three codec chunks
    rows[300] = rows[300] | {"Contract": "Weekly"}
    out = scorer.score(pa.Table.from_pylist(rows))
    rejected = [i for i, problem in enumerate(out[REJECT_PROBLEM].to_pylist()) if problem is not None]
    assert rejected == [300]
    assert out[PROBABILITY].null_count == 1 and out.num_rows == len(rows)

    all_bad = scorer.score(pa.Table.from_pylist([rows[300]] * 3))
    assert all_bad[PROBABILITY].type == pa.float64() and all_bad[PROBABILITY].null_count == 3
    assert all_bad[PREDICTED_LABEL].type == pa.string()


def test_an_input_without_a_model_column_fails_before_scoring(champion, customers, tmp_path, capsys):
    source = tmp_path / "no-tenure.parquet"
    pq.write_table(pa.Table.from_pandas(customers.drop(columns=["tenure"])), source)
    with pytest.raises(InputError, match="tenure"):
        score_file(source, tmp_path / "out.parquet", champion, ScoreConfig())
    assert main(["--model", "churn", "--input", str(source), "--output", str(tmp_path / "out.parquet")]) == 2
    assert "tenure" in capsys.readouterr().err
    assert not (tmp_path / "out.parquet").exists()


def test_the_shipped_config_loads_and_sets_every_setting():
    config = load_config(REPO / "configs" / "score.yaml", ScoreConfig)
    assert config.model_fields_set == set(ScoreConfig.model_fields)
