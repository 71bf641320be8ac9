"""The synthetic support messages: reproducible, five balanced intents, varied, learnable but not trivially."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from pipelines.text.synthetic import INTENTS, LABEL_NOISE, TEMPLATES, generate_messages

ROWS = 2000


@pytest.fixture(scope="module")
def messages() -> pd.DataFrame:
    return generate_messages(ROWS, seed=0)


def test_shape_and_unique_texts(messages):
    assert list(messages.columns) == ["text", "label", "source"]
    assert len(messages) == ROWS and messages["text"].is_unique
    assert set(messages["source"]) == {"synthetic"}
    assert messages["text"].map(type).eq(str).all()


def test_deterministic_per_seed():
    pd.testing.assert_frame_equal(generate_messages(300, seed=7), generate_messages(300, seed=7))
    assert not generate_messages(300, seed=7)["text"].equals(generate_messages(300, seed=8)["text"])
    with pytest.raises(ValueError, match="at least 1"):
        generate_messages(0, seed=0)


def test_five_intents_roughly_balanced(messages):
    assert set(messages["label"]) == set(INTENTS) and len(INTENTS) == 5
    shares = messages["label"].value_counts(normalize=True)
    assert shares.min() > 0.16 and shares.max() < 0.24
    assert all(len(templates) >= 8 for templates in TEMPLATES.values())


def test_label_noise_is_present_but_small(messages):
    clean = generate_messages(ROWS, seed=0, label_noise=0.0)
    assert clean["text"].equals(messages["text"])  # same texts: only the relabelled rows differ
    flipped = (clean["label"] != messages["label"]).mean()
    assert flipped == pytest.approx(LABEL_NOISE, abs=0.01) and flipped > 0


def test_messages_vary_in_form(messages):
    text = messages["text"]
    assert text.str.contains(r"\$\d+\.\d\d").mean() > 0.1  # amounts
    assert text.str.match(r"(?i)(?:hi|hello|hey|good morning|dear)").mean() > 0.3  # greetings
    assert (text == text.str.lower()).mean() > 0.1  # all lower case
    assert (text.str.count(r"[.!?](\s|$)") >= 2).mean() > 0.4  # several sentences
    assert text.str.contains(r"(?i)\b(?:also|by the way|oh and|ps:)").mean() > 0.1  # an aside of another intent
    assert text.str.len().between(15, 400).all()


def test_bag_of_words_learns_it_well_but_not_perfectly(messages):
    train, test = train_test_split(messages, test_size=0.3, stratify=messages["label"], random_state=0)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LogisticRegression(C=10.0, max_iter=2000).fit(vectorizer.fit_transform(train["text"]), train["label"])
    macro_f1 = f1_score(test["label"], model.predict(vectorizer.transform(test["text"])), average="macro")
    assert 0.75 < macro_f1 < 0.95  # measured 0.84 (seeds 0-4: 0.835-0.868); label noise alone caps it near 0.97
