"""Text drift scenarios, from real held-out texts: another domain, new vocabulary, longer texts.
Defaults here are only fallbacks; configs/monitoring.yaml sets the strengths used."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.scenarios import Scenario, sample_rows

# Product names and slang a 2012 review corpus never saw (tokenised into rare word pieces, not [UNK]).
NEW_WORDS = ("Zentrix Pro", "X12 Ultra", "lowkey", "no cap", "Quibbly app", "fr fr", "NovaBuds 3", "mid", "ngl")


def domain_shift(pool: pd.DataFrame, rows: int, rng: np.random.Generator, source: str = "imdb_labelled",
                 share: float = 1.0) -> pd.DataFrame:
    """`share` of the window comes from one source (e.g. film reviews for a model watched on product
    reviews), the rest as usual."""
    if "source" not in pool.columns:
        raise ValueError("domain_shift needs a `source` column in the holdout (several files as one data set)")
    from_source = pool[pool["source"] == source]
    if from_source.empty:
        raise ValueError(f"domain_shift: no held-out text from source {source!r} (sources: {sorted(pool['source'].unique())})")
    shifted = int(round(rows * share))
    window = pd.concat([sample_rows(from_source, shifted, rng), sample_rows(pool, rows - shifted, rng)])
    return window.iloc[rng.permutation(len(window))]


def new_vocabulary(pool: pd.DataFrame, rows: int, rng: np.random.Generator, share: float = 0.5,
                   words: int = 2) -> pd.DataFrame:
    """`share` of the texts get up to `words` new product names or slang inserted at random places."""
    window = sample_rows(pool, rows, rng)
    texts = window["text"].tolist()
    for i in np.flatnonzero(rng.random(len(texts)) < share):
        tokens = texts[i].split()
        for _ in range(int(rng.integers(1, words + 1))):
            tokens.insert(int(rng.integers(0, len(tokens) + 1)), str(rng.choice(NEW_WORDS)))
        texts[i] = " ".join(tokens)
    return window.assign(text=texts)


def length_shift(pool: pd.DataFrame, rows: int, rng: np.random.Generator, power: float = 2.0) -> pd.DataFrame:
    """Longer texts arrive more often: each drawn with weight words**power (0 = as usual)."""
    words = pool["text"].str.split().str.len().to_numpy(dtype=float)
    return sample_rows(pool, rows, rng, np.maximum(words, 1.0) ** power)


SCENARIOS = {
    "domain_shift": Scenario("domain_shift", "texts from another domain (one source of the data set)", domain_shift),
    "new_vocabulary": Scenario("new_vocabulary", "new product names and slang in the texts", new_vocabulary),
    "length_shift": Scenario("length_shift", "longer texts arrive more often", length_shift),
}
