"""The churn classifiers: each one a full scikit-learn Pipeline, raw customer columns in, P(churn) out.

Logistic regression is the baseline every other model must beat; the decision tree and random forest
are the classic middle steps; XGBoost is the champion candidate that the optimize stage tunes.
"""

from __future__ import annotations

from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

from pipelines.churn.config import ChurnConfig, XGBoostConfig
from pipelines.churn.features import linear_preprocessor, tree_preprocessor

BASELINE = "logistic_regression"
CANDIDATE = "xgboost"
# skops (MLflow's safe sklearn format) loads only types it is told to trust; these are our own files.
TRUSTED_TYPES = [
    "numpy.dtype", "sklearn.tree._tree.Tree",
    "xgboost.core.Booster", "xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor",
]
MODEL_PACKAGES = ("scikit-learn", "xgboost")


def xgboost_pipeline(params: XGBoostConfig | dict, seed: int, **extra) -> Pipeline:
    params = params.model_dump() if isinstance(params, XGBoostConfig) else dict(params)
    model = XGBClassifier(**params, **extra, random_state=seed, eval_metric="logloss", tree_method="hist")
    return Pipeline([("features", tree_preprocessor()), ("model", model)])


def build_classifiers(config: ChurnConfig) -> dict[str, Pipeline]:
    m, seed = config.models, config.seed
    return {
        BASELINE: Pipeline([
            ("features", linear_preprocessor(config.features.numeric_bins)),
            ("model", LogisticRegression(C=m.logistic_regression.C, max_iter=m.logistic_regression.max_iter)),
        ]),
        "decision_tree": Pipeline([
            ("features", tree_preprocessor()),
            ("model", DecisionTreeClassifier(max_depth=m.decision_tree.max_depth,
                                             min_samples_leaf=m.decision_tree.min_samples_leaf, random_state=seed)),
        ]),
        "random_forest": Pipeline([
            ("features", tree_preprocessor()),
            ("model", RandomForestClassifier(n_estimators=m.random_forest.n_estimators,
                                             max_depth=m.random_forest.max_depth,
                                             min_samples_leaf=m.random_forest.min_samples_leaf,
                                             random_state=seed, n_jobs=-1)),
        ]),
        CANDIDATE: xgboost_pipeline(m.xgboost, seed),
    }
