"""Convert a churn pipeline (preprocessing + model) into one ONNX graph that takes raw customer columns.

Each feature is its own graph input shaped [batch, 1]: strings for categories, float32 for numbers.
The serving process then needs nothing but onnxruntime: encoding, scaling and binning are in the graph.
skl2onnx converts scikit-learn; onnxmltools' converter is registered for XGBoost.
"""

from __future__ import annotations

import onnx
from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from xgboost import XGBClassifier

from pipelines.churn import schema
from modelpkg.contract import InputSpec

PROBABILITY_OUTPUT = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}

update_registered_converter(
    XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes, convert_xgboost,
    options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
)


def initial_types() -> list[tuple[str, object]]:
    return [(name, StringTensorType([None, 1])) for name in schema.CATEGORICAL] + [
        (name, FloatTensorType([None, 1])) for name in schema.NUMERIC
    ]


def input_specs() -> list[InputSpec]:
    """The contract's view of the same inputs, with the schema's rules (export adds the training data's
    bounds: pipelines.churn.export.bounded_inputs)."""
    return list(schema.INPUTS)


def to_onnx(pipeline, name: str = "churn") -> onnx.ModelProto:
    """zipmap off: probabilities come out as a plain [batch, 2] tensor, not a list of dicts."""
    model = convert_sklearn(
        pipeline, name=name, initial_types=initial_types(), target_opset=TARGET_OPSET,
        options={id(pipeline.named_steps["model"]): {"zipmap": False}},
    )
    return model  # outputs: "label" [batch] and "probabilities" [batch, 2]
