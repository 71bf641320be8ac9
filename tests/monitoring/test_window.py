"""A window is selected in SQL: the watched version's rows, with a LIMIT, never the whole log."""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitoring.window import VERSION, WindowSpec, read_window
from pipelines.churn.export import labelled_rows
from tests.monitoring.predlog_writer import log_predictions

ROWS = 20


@pytest.fixture()
def two_versions(champion, splits, tmp_path):
    """A log where version 1 answered first and version 2 (a reload later) answered the newest rows."""
    db = tmp_path / "predictions.db"
    rows = labelled_rows(splits["rest"].head(2 * ROWS))
    older = log_predictions(db, champion.model, rows.iloc[:ROWS], start_ts=1_000.0)
    log_predictions(db, replace(champion.model, version="2"), rows.iloc[ROWS:], start_ts=2_000.0)
    return db, champion.model, older


def test_the_last_n_are_the_watched_versions_newest(two_versions):
    db, model, older = two_versions
    frame = read_window(db, model, WindowSpec(last_n=5))
    assert list(frame["id"]) == older[-5:] and set(frame[VERSION]) == {"1"}  # not v2's newer rows


def test_a_time_window_holding_more_than_max_rows_is_an_error_not_an_unbounded_read(two_versions):
    db, model, _ = two_versions
    spec = WindowSpec(start_ts=0.0, end_ts=3_000.0)
    assert len(read_window(db, model, spec, max_rows=ROWS)) == ROWS  # v2's rows are not counted
    with pytest.raises(ValueError, match=f"more than {ROWS - 1} predictions .*window.max_rows"):
        read_window(db, model, spec, max_rows=ROWS - 1)


def test_a_window_without_the_watched_version_names_it(two_versions):
    db, model, _ = two_versions
    with pytest.raises(LookupError, match="no predictions for model 'churn' in window .*served by version 7"):
        read_window(db, replace(model, version="7"), WindowSpec(last_n=5))
