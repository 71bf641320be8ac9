"""The learning curve's work sharing: the transfer fits are claimed once each, by either process."""

from __future__ import annotations

import threading
from multiprocessing import get_context

import pytest

pytest.importorskip("torch")

from pipelines.vision.config import VisionConfig  # noqa: E402
from pipelines.vision.curve import champion_point, claim, transfer_tasks  # noqa: E402
from pipelines.vision.data import load_images, split_indices  # noqa: E402


def test_the_champions_own_point_is_not_a_transfer_task():
    config = VisionConfig.model_validate({"seed": 7, "curve": {"labels_per_class": [5, None], "seeds": [7, 8]}})
    data = load_images("digits")
    splits = split_indices(data.labels, valid_fraction=0.15, test_fraction=0.15, seed=7)
    tasks = [(per_class, seed) for per_class, seed, _ in transfer_tasks(config, data, splits)]
    assert tasks == [(5, 7), (5, 8), (None, 8)]  # (None, 7) is the champion fit, not fitted twice
    assert champion_point(config) == (None, 7)
    assert champion_point(config.model_copy(update={"seed": 9})) is None  # not on the curve: every point a fit


def test_every_task_is_claimed_exactly_once_under_contention():
    counter, tasks = get_context("spawn").Value("i", 0), 500
    claimed: list[list[int]] = [[], []]

    def claimer(mine: list[int]) -> None:
        while (index := claim(counter, tasks)) is not None:
            mine.append(index)

    threads = [threading.Thread(target=claimer, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed[0] + claimed[1]) == list(range(tasks))
    assert claim(counter, tasks) is None
