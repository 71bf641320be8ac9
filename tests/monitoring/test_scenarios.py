"""Drift scenarios: each shifts what it says it shifts, and bad names or parameters fail clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.scenarios import NO_DRIFT, get_scenario, scenarios_for

ROWS = 2000


@pytest.fixture(scope="module")
def pool(telco) -> pd.DataFrame:
    return telco.iloc[:1500].rename(columns={"Churn": "label"}).drop(columns=["customerID"])


def draw(pool, name: str, **params) -> pd.DataFrame:
    return get_scenario("churn", name).draw(pool, ROWS, np.random.default_rng(0), params)


def test_churn_registers_its_scenarios_beside_no_drift():
    assert set(scenarios_for("churn")) == {NO_DRIFT, "price_increase", "contract_shift", "new_customers"}


def test_no_drift_draws_pool_rows_unchanged(pool):
    window = get_scenario("churn", NO_DRIFT).draw(pool, 500, np.random.default_rng(0), {})
    assert len(window) == 500
    assert window.merge(pool.drop_duplicates(), how="left", indicator=True)["_merge"].eq("both").all()


def test_price_increase_raises_monthly_charges_only(pool):
    window = draw(pool, "price_increase", rise=0.15)
    assert window["MonthlyCharges"].mean() == pytest.approx(pool["MonthlyCharges"].mean() * 1.15, rel=0.05)
    assert window["TotalCharges"].mean() == pytest.approx(pool["TotalCharges"].mean(), rel=0.1)


def test_contract_shift_reaches_the_target_share(pool):
    window = draw(pool, "contract_shift", month_to_month_share=0.8)
    assert (window["Contract"] == "Month-to-month").mean() == pytest.approx(0.8, abs=0.03)


def test_new_customers_surge_adds_low_tenure_rows(pool):
    before = (pool["tenure"] <= 3).mean()
    window = draw(pool, "new_customers", share=0.3, max_tenure=3)
    assert (window["tenure"] <= 3).mean() == pytest.approx(0.3 + 0.7 * before, abs=0.03)


def test_unknown_parameter_and_scenario_fail_with_names(pool):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['ris'\] \(accepts: rise\)"):
        draw(pool, "price_increase", ris=0.15)
    with pytest.raises(ValueError, match="unknown scenario 'price_hike'.*price_increase"):
        get_scenario("churn", "price_hike")


def test_every_project_gets_no_drift_even_without_a_scenario_module():
    assert set(scenarios_for("toy_image")) == {NO_DRIFT}
    with pytest.raises(ValueError, match="unknown scenario 'price_increase' for toy_image \\(known: no_drift\\)"):
        get_scenario("toy_image", "price_increase")


# ---------------------------------------------------------------------------------------------- text
@pytest.fixture(scope="module")
def texts() -> pd.DataFrame:
    from tests.factories import toy_texts

    pool = toy_texts(600, seed=3)
    return pool.assign(source=np.where(np.arange(len(pool)) % 3 == 0, "imdb_labelled", "amazon_cells_labelled"))


def draw_text(pool, name: str, **params) -> pd.DataFrame:
    return get_scenario("text", name).draw(pool, 400, np.random.default_rng(1), params)


def test_text_registers_its_scenarios_beside_no_drift():
    assert set(scenarios_for("text")) == {NO_DRIFT, "domain_shift", "new_vocabulary", "length_shift"}


def test_domain_shift_draws_from_one_source_and_names_a_missing_one(texts):
    assert set(draw_text(texts, "domain_shift", source="imdb_labelled")["source"]) == {"imdb_labelled"}
    half = draw_text(texts, "domain_shift", source="imdb_labelled", share=0.5)
    assert 0.6 < (half["source"] == "imdb_labelled").mean() < 0.75  # half forced + a third of the rest
    with pytest.raises(ValueError, match="no held-out text from source 'yelp'"):
        draw_text(texts, "domain_shift", source="yelp")
    with pytest.raises(ValueError, match="needs a `source` column"):
        draw_text(texts.drop(columns=["source"]), "domain_shift")


def test_new_vocabulary_inserts_new_words_into_about_the_share_asked(texts):
    from monitoring.scenarios.text import NEW_WORDS

    window = draw_text(texts, "new_vocabulary", share=0.5, words=2)
    touched = window["text"].apply(lambda t: any(w in t for w in NEW_WORDS))
    assert 0.4 < touched.mean() < 0.6
    assert set(window["text"][~touched]) <= set(texts["text"])  # the other texts arrive as they were
    assert not set(window["text"][touched]) & set(texts["text"])


def test_length_shift_makes_texts_longer(texts):
    words = lambda frame: frame["text"].str.split().str.len().mean()  # noqa: E731
    assert words(draw_text(texts, "length_shift", power=3.0)) > 1.1 * words(draw_text(texts, NO_DRIFT))  # toys: 4-10 words
