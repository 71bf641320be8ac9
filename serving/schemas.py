"""The API's own request and response bodies (the predict request body is the model's codec's).

They document the API in /docs; the predict route writes its JSON directly, for speed, in this shape.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from modelpkg.codecs import InvalidRequest
from serving.ids import ID_CHARS


class RankedClass(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    id: str = Field(description="prediction id: what feedback refers to")
    label: str = Field(description="predicted label (binary models: at the tuned threshold)")
    probability: float = Field(description="binary models: P(positive label); else P(predicted label)")
    probabilities: dict[str, float] | None = Field(default=None, description="multi-class: every class")
    top_k: list[RankedClass] | None = Field(default=None, description=(
        "multi-class: the model's `top_k` most likely classes, most likely first"))


class PredictResponse(BaseModel):
    model: str
    version: str
    request_id: str
    predictions: list[Prediction]


# Bounds on what feedback sends, checked before anything reaches the log (422 naming the field): a
# prediction id is at most what serving/ids.py makes (44 hex characters; the older prefix-and-counter ids
# were 27), and a label longer than this is no model's label.
PREDICTION_ID_MAX_LENGTH = ID_CHARS
LABEL_MAX_LENGTH = 256


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=PREDICTION_ID_MAX_LENGTH, description="a prediction id returned by predict")
    label: str = Field(max_length=LABEL_MAX_LENGTH, description="the true label, one of the model's labels")
    correction: bool = Field(False, description=(
        "replace the label this prediction already has (otherwise the first label counts, and a repeated "
        "one answers 409); every label is kept in the log's history"))


def feedback_request(max_items: int) -> type[BaseModel]:
    """The feedback body, with the configured limit on items per request."""
    items = Annotated[list[FeedbackItem], Field(min_length=1, max_length=max_items)]
    return create_model(
        "FeedbackRequest", __config__=ConfigDict(extra="forbid", json_schema_extra={
            "examples": [{"items": [{"id": "5e0c8b1f2d7a9e34c1f07a6b9d3e2a58", "label": "Yes"}]}]}),
        items=(items, ...),
    )


def parse_feedback(schema: type[BaseModel], body: bytes) -> Any:
    """A feedback body (JSON bytes) -> the validated request, or InvalidRequest naming each bad field.
    Only scalar inputs are echoed: an error must always be writable as JSON."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as error:
        raise InvalidRequest([json_safe(e) for e in error.errors(include_url=False)]) from None


def json_safe(error: dict) -> dict:
    """A validation error as any JSON answer can carry it: type, loc, msg, and the input only when it is a
    JSON scalar (bytes, an object or a NaN would make the encoder fail, and turn a 4xx into a 500)."""
    safe = {"type": error["type"], "loc": list(error["loc"]), "msg": error["msg"]}
    value = error.get("input")
    scalar = value is None or isinstance(value, (str, int, bool)) or (isinstance(value, float) and math.isfinite(value))
    if error["type"] != "missing" and scalar:
        safe["input"] = value
    return safe


class FeedbackAccepted(BaseModel):
    accepted: int


class ErrorDetail(BaseModel):
    detail: Any = Field(description="a message, or a list of {loc, msg, type} naming each bad field")


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "no X-API-Key header"},
    403: {"model": ErrorDetail, "description": "a wrong X-API-Key"},
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorDetail, "description": "request body over the configured limit"},
    422: {"model": ErrorDetail, "description": "invalid request: each error names its field"},
    503: {"model": ErrorDetail, "description": "model not loaded, or the prediction log unavailable"},
}
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = ERROR_RESPONSES | {
    415: {"model": ErrorDetail,
          "description": "Content-Type is not one the model takes (JSON; image models also multipart/form-data)"},
}
FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = ERROR_RESPONSES | AUTH_RESPONSES | {
    409: {"model": ErrorDetail, "description": "a prediction already has a label and the item is no correction: "
                                              "each such item is named, and nothing of the request is stored"},
    415: {"model": ErrorDetail, "description": "Content-Type is not application/json"},
}
