"""The API's own request and response bodies (the predict request body is the model's codec's).

They document the API in /docs; the predict route writes its JSON directly, for speed, in this shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model


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


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="a prediction id returned by predict")
    label: str = Field(description="the true label, one of the model's labels")


def feedback_request(max_items: int) -> type[BaseModel]:
    """The feedback body, with the configured limit on items per request."""
    items = Annotated[list[FeedbackItem], Field(min_length=1, max_length=max_items)]
    return create_model(
        "FeedbackRequest", __config__=ConfigDict(extra="forbid", json_schema_extra={
            "examples": [{"items": [{"id": "9f1c2e0a7b3d4c55-0000000000", "label": "Yes"}]}]}),
        items=(items, ...),
    )


class FeedbackAccepted(BaseModel):
    accepted: int


class ErrorDetail(BaseModel):
    detail: Any = Field(description="a message, or a list of {loc, msg, type} naming each bad field")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorDetail, "description": "request body over the configured limit"},
    422: {"model": ErrorDetail, "description": "invalid request: each error names its field"},
    503: {"model": ErrorDetail, "description": "model not loaded, or the prediction log unavailable"},
}
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = ERROR_RESPONSES | {
    415: {"model": ErrorDetail,
          "description": "Content-Type is not one the model takes (JSON; image models also multipart/form-data)"},
}
