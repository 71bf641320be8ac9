"""The FastAPI app: one process serves every configured model, of any kind, through one adapter.

Routes: /health (alive), /ready (every model loaded), /v1/models, /v1/<model>/predict,
/v1/<model>/feedback, /metrics, /admin/reload. `create_app(config)` builds it; `python -m serving`
runs it under uvicorn. Nothing here knows a model kind: the contract's codec does (serving/adapter.py).

The predict path is the hot path and is written for it (docs/serving.md has the profile): the body is
validated straight from bytes by the codec's pydantic schema; with `execution: inline` onnxruntime runs
on the event loop (a tabular model takes tens of microseconds, less than a hop to a thread pool), with
`execution: thread` decoding and the graph run in a worker thread (a CNN's milliseconds must not stall
every other request); with `batching.enabled` each request is decoded on its own and its records join
concurrent requests' in one graph call (serving/batcher.py); the prediction log is encoded and written by
its own thread, request metrics are recorded after the last response byte, prediction metrics are one
batched update, and the response JSON is written by orjson instead of through a response model.
"""

import asyncio
import gc
import hmac
import json
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader

from serving.adapter import InvalidRequest
from serving.config import ServingConfig
from serving.ids import IdFactory
from serving.metrics import CONTENT_TYPE, NoMetrics, ServingMetrics
from serving.middleware import BodyLimitMiddleware, ObservabilityMiddleware, header
from serving.models import LoadedModel, ModelStore, ModelUnavailable
from serving.predlog import LoggedRequest, PredictionLog, PredictionLogError
from serving.schemas import ERROR_RESPONSES, PREDICT_RESPONSES, FeedbackAccepted, PredictResponse, feedback_request
from serving.sources import ModelSource, source_for
from serving.uploads import MULTIPART, read_upload, upload_schema

API_KEY_HEADER = "X-API-Key"
GENERIC_RECORDS = {"type": "array", "items": {"type": "object"}}  # docs of a model that is not loaded
JSON = "application/json"


@dataclass
class Services:
    """Everything the routes share, built once per app."""

    config: ServingConfig
    store: ModelStore
    predlog: PredictionLog | None
    metrics: ServingMetrics | NoMetrics
    ids: IdFactory
    admin_key: str | None


def build_services(config: ServingConfig, source: ModelSource | None = None) -> Services:
    metrics = ServingMetrics(config.metrics) if config.metrics.enabled else NoMetrics()
    log_config = config.prediction_log
    predlog = PredictionLog(log_config.path, synchronous=log_config.synchronous,
                            wait_for_commit=log_config.wait_for_commit,
                            max_batch_rows=log_config.max_batch_rows,
                            checkpoint_interval=log_config.checkpoint_interval_seconds) if log_config.enabled else None
    store = ModelStore(config, source or source_for(config.source), on_change=metrics.model_changed,
                       on_batch=metrics.observe_batch)
    return Services(config=config, store=store, predlog=predlog, metrics=metrics, ids=IdFactory(),
                    admin_key=os.environ.get(config.admin.api_key_env) or None)


def create_app(config: ServingConfig, source: ModelSource | None = None) -> FastAPI:
    services = build_services(config, source)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        """Open the log, load every model (a failure is reported by /ready, not raised), serve; on
        shutdown (after uvicorn has let requests in flight finish) answer what still waits in a batcher,
        then commit what the log still holds."""
        if services.predlog:
            services.predlog.start()
        await asyncio.to_thread(services.store.load_all)
        settle_garbage_collector()
        try:
            yield
        finally:
            await services.store.drain()
            if services.predlog:
                await asyncio.to_thread(services.predlog.close)

    app = FastAPI(title="mlpipelines serving", version="1", lifespan=lifespan,
                  description="Every registered model behind one API: ONNX Runtime, validated from each model's contract.")
    app.state.services = services
    add_error_handlers(app)
    add_operations_routes(app, services)
    for model in config.models:
        add_model_routes(app, services, model.name)
    app.openapi = lambda: contract_openapi(app, services)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.limits.max_body_bytes,
                       path_limits=model_body_limits(config))
    app.add_middleware(ObservabilityMiddleware, metrics=services.metrics)  # outermost: sees every status
    return app


def model_body_limits(config: ServingConfig) -> dict[str, int]:
    """Each model's own body limit, for each of its routes."""
    return {f"/v1/{model.name}/{route}": config.settings(model.name).max_body_bytes
            for model in config.models for route in ("predict", "feedback")}


def settle_garbage_collector() -> None:
    """Move everything start-up created (frameworks, MLflow in registry mode: ~300k objects) out of the
    collector's reach. A full collection over them took 180 ms, a pause any request could have hit."""
    gc.collect()
    gc.freeze()


# ----------------------------------------------------------------------------------------------- errors
class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped. Error details echo the client's input, and a lone
    surrogate (valid as a JSON escape, not encodable as UTF-8) would turn a 422 into a 500."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, error: InvalidRequest) -> JSONResponse:
        return AsciiJSONResponse({"detail": [{**e, "loc": ["body", *e["loc"]]} for e in error.errors]}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        return AsciiJSONResponse({"detail": jsonable_encoder(error.errors())}, status_code=422)

    @app.exception_handler(ModelUnavailable)
    async def model_unavailable(request: Request, error: ModelUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    @app.exception_handler(PredictionLogError)
    async def log_unavailable(request: Request, error: PredictionLogError) -> JSONResponse:
        return JSONResponse({"detail": f"prediction log unavailable: {error}"}, status_code=503)


# ----------------------------------------------------------------------------------------------- models
def add_model_routes(app: FastAPI, services: Services, name: str) -> None:
    """POST /v1/<name>/predict and /v1/<name>/feedback for one configured model."""
    FeedbackRequest = feedback_request(services.config.limits.max_feedback_items)

    async def predict(request: Request) -> Response:
        started, ts = time.perf_counter(), time.time()
        model = services.store.get(name)  # this request's version, to its end, even across a reload
        decode = await read_request(request, model)
        records, outputs = await predict_records(model, decode)
        ids = services.ids.take(len(outputs))
        request_id = request.scope["request_id"]
        if services.predlog:
            await services.predlog.append(LoggedRequest(
                request_id=request_id, ts=ts, model=name, version=model.version, ids=ids,
                inputs=model.adapter.log_inputs(records), outputs=outputs,
                latency_ms=(time.perf_counter() - started) * 1000))
        services.metrics.observe_predictions(name, model.version, outputs)
        predictions = [{"id": id_, **output} for id_, output in zip(ids, outputs)]
        body = {"model": name, "version": model.version, "request_id": request_id, "predictions": predictions}
        return Response(orjson.dumps(body), media_type="application/json")

    async def feedback(body: FeedbackRequest) -> FeedbackAccepted:  # type: ignore[valid-type]
        model = services.store.get(name)
        if services.predlog is None:
            raise HTTPException(503, "the prediction log is switched off: no feedback can be stored")
        labels = model.contract.labels
        bad = [{"type": "unknown_label", "loc": ["items", i, "label"], "input": item.label,
                "msg": f"unknown label {item.label!r} (allowed: {', '.join(labels)})"}
               for i, item in enumerate(body.items) if item.label not in labels]
        if bad:
            raise InvalidRequest(bad)
        unknown = set(await services.predlog.add_feedback(name, [(item.id, item.label) for item in body.items]))
        if unknown:
            raise InvalidRequest([{"type": "unknown_prediction", "loc": ["items", i, "id"], "input": item.id,
                                   "msg": f"no prediction {item.id!r} of model {name!r} in the log"}
                                  for i, item in enumerate(body.items) if item.id in unknown])
        return FeedbackAccepted(accepted=len(body.items))

    app.add_api_route(f"/v1/{name}/predict", predict, methods=["POST"], tags=[name],
                      summary=f"Predict with the serving version of {name}", response_model=PredictResponse,
                      responses=PREDICT_RESPONSES, openapi_extra={"requestBody": _body(GENERIC_RECORDS, JSON)},
                      description="A list of records in the model's media type (JSON for every kind); image "
                                  "models also take multipart/form-data with one file part per image (field "
                                  "`image`, repeated). One prediction per record, in order; multi-class models "
                                  "add every class's probability and the `top_k` most likely classes. The "
                                  "request id is echoed in X-Request-ID (send one to choose it).")
    app.add_api_route(f"/v1/{name}/feedback", feedback, methods=["POST"], tags=[name],
                      summary=f"Record true labels for earlier {name} predictions", response_model=FeedbackAccepted,
                      responses=ERROR_RESPONSES)


async def read_request(request: Request, model: LoadedModel) -> Callable[[], list[Any]]:
    """The request body read (415, 413 and a malformed upload answered here), as a call that decodes it
    into records: the caller runs that on the loop or in a worker thread (images decode for milliseconds)."""
    adapter = model.adapter
    if body_media_type(request, adapter.media_types) == MULTIPART:
        records = await read_upload(request.headers["content-type"], request.stream(), adapter.upload_field,
                                    model.settings.max_batch)
        return partial(adapter.validate, records)
    return partial(adapter.parse, await request.body())


async def predict_records(model: LoadedModel, decode: Callable[[], list[Any]]) -> tuple[list[Any], list[dict]]:
    """Decode, then answer: alone on the loop (inline), alone in a worker thread (thread: one hop for both,
    onnxruntime and Pillow release the GIL meanwhile), or decoded alone and answered in a batch."""
    threaded = model.settings.execution == "thread"
    loop = asyncio.get_running_loop()
    if model.batcher is not None:
        records = await loop.run_in_executor(None, decode) if threaded else decode()
        return records, await model.batcher.submit(records)
    if threaded:
        return await loop.run_in_executor(None, model.decode_and_predict, decode)
    records = decode()
    return records, model.predict(records)


def body_media_type(request: Request, accepted: tuple[str, ...]) -> str:
    """Which of the model's media types the body is sent as; 415 naming them for any other. A request
    without a Content-Type is read as the model's own (the first): plain clients (`httpx.post(content=...)`,
    scripts) often send none, and the body is validated anyway."""
    sent = header(request.scope, b"content-type")
    if not sent:
        return accepted[0]
    media_type = sent.split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        raise HTTPException(415, f"unsupported Content-Type {sent!r}: {request.url.path} takes {' or '.join(accepted)}")
    return media_type


def _body(schema: dict, media_type: str, example=None) -> dict:
    content = {"schema": schema} | ({"example": example} if example is not None else {})
    return {"required": True, "content": {media_type: content}}


def predict_body(model: LoadedModel, components: dict) -> dict:
    """A predict body in each media type the model takes: the contract's records (JSON, with the example),
    and for image models the multipart upload as well."""
    adapter = model.adapter
    schema = adapter.request_schema()
    components.update(schema.pop("$defs", {}))
    body = _body(schema, adapter.media_type, [adapter.example])
    if adapter.upload_field:
        body["content"][MULTIPART] = {"schema": upload_schema(adapter.upload_field, model.settings.max_batch)}
    return body


def contract_openapi(app: FastAPI, services: Services) -> dict:
    """The OpenAPI document, with each predict body built from the contract of the version now serving."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in services.store.names:
        model = services.store.current(name)
        if model is None:
            continue
        schema["paths"][f"/v1/{name}/predict"]["post"]["requestBody"] = predict_body(model, components)
    return schema


# ------------------------------------------------------------------------------------------- operations
def add_operations_routes(app: FastAPI, services: Services) -> None:
    store = services.store

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="Readiness: 200 only when every required model is loaded",
             responses={503: {"description": "a required model is not loaded; `reasons` says why"}})
    async def ready() -> JSONResponse:
        problems = store.problems(required_only=True)
        if problems:
            return JSONResponse({"status": "not ready", "reasons": problems}, status_code=503)
        body = {"status": "ready", "models": {name: model.version for name in store.names
                                              if (model := store.current(name)) is not None}}
        unavailable = store.problems()
        return JSONResponse(body | ({"optional_unavailable": unavailable} if unavailable else {}))

    @app.get("/v1/models", tags=["operations"], summary="Every configured model: version, alias, run, inputs, threshold")
    async def models() -> dict:
        described = []
        for name in store.names:
            model = store.current(name)
            described.append(model.describe() if model else
                             {"name": name, "status": "unavailable", "error": store.problems().get(name)})
        return {"models": described}

    if isinstance(services.metrics, ServingMetrics):
        @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
        async def metrics() -> Response:
            return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)

    api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description=(
        f"the value of the server's {services.config.admin.api_key_env} environment variable"))

    async def require_admin(key: str | None = Depends(api_key)) -> None:
        if services.admin_key is None:
            raise HTTPException(401, f"admin API disabled: the server has no {services.config.admin.api_key_env} set")
        if key is None or not hmac.compare_digest(key.encode(), services.admin_key.encode()):
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header")

    @app.post("/admin/reload", tags=["operations"], dependencies=[Depends(require_admin)],
              summary="Switch to each alias's current version, atomically (requests in flight finish on the old)",
              responses={401: {"description": "missing or wrong API key"}, 404: {"description": "unknown model"},
                         500: {"description": "a model failed to load: its previous version keeps serving"}})
    async def reload(model: str | None = None) -> JSONResponse:
        if model is not None and model not in store.names:
            raise HTTPException(404, f"unknown model {model!r} (configured: {', '.join(store.names)})")
        results = await asyncio.to_thread(store.reload, [model] if model else None)
        # A failure counts when a model that serves (or must) did not load; an optional model that was never
        # trained is reported in the body and keeps the others' reload a success.
        failed = [name for name, result in results.items()
                  if not result["ok"] and (result["previous"] is not None or services.config.model(name).required)]
        return JSONResponse({"reloaded": results}, status_code=500 if failed else 200)
