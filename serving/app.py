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
import json
import logging
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
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelpkg.runtime import public_answer
from serving.adapter import InvalidRequest
from serving.auth import Keys, require_key, server_keys
from serving.config import PredictionLogConfig, ServingConfig
from serving.errors import public, report
from serving.ids import IdFactory
from serving.metrics import CONTENT_TYPE, NoMetrics, ServingMetrics
from serving.middleware import AdmissionMiddleware, BodyLimitMiddleware, ObservabilityMiddleware, header
from serving.models import LoadedModel, ModelStore, ModelUnavailable
from serving.predlog import LoggedRequest, PredictionLog, PredictionLogError, Retention, StoredLabels, worker_log_path
from serving.shadow import ShadowJob, ShadowScorer
from serving.schemas import (AUTH_RESPONSES, FEEDBACK_RESPONSES, PREDICT_RESPONSES, FeedbackAccepted, PredictResponse,
                             feedback_request, json_safe, parse_feedback)
from serving.sources import ModelSource, source_for
from serving.uploads import MULTIPART, read_upload, upload_schema
from serving.workers import Reloads, Worker

log = logging.getLogger(__name__)
GENERIC_RECORDS = {"type": "array", "items": {"type": "object"}}  # docs of a model that is not loaded
JSON = "application/json"
SECONDS_PER_DAY = 86_400


@dataclass
class Services:
    """Everything the routes share, built once per app."""

    config: ServingConfig
    store: ModelStore
    predlog: PredictionLog | None
    metrics: ServingMetrics | NoMetrics
    ids: IdFactory
    keys: Keys
    shadow: ShadowScorer | None = None  # scores challengers beside champions; None: no model shadows
    reloads: Reloads | None = None  # one worker of several: reloads reach the others through it


def build_services(config: ServingConfig, source: ModelSource | None = None, worker: Worker | None = None) -> Services:
    metrics = ServingMetrics(config.metrics) if config.metrics.enabled else NoMetrics()
    log_config = config.prediction_log
    predlog = prediction_log(log_config, worker.slot if worker else None) if log_config.enabled else None
    store = ModelStore(config, source or source_for(config.source), on_change=metrics.model_changed,
                       on_batch=metrics.observe_batch)
    return Services(config=config, store=store, predlog=predlog, metrics=metrics, ids=IdFactory(),
                    keys=server_keys(config), shadow=shadow_scorer(config, predlog))  # a key too short, or named and unset, stops start-up here


def shadow_scorer(config: ServingConfig, predlog: PredictionLog | None) -> ShadowScorer | None:
    """A scorer when some model has a shadow enabled; shadow rows live in the log, so none without it."""
    shadowed = {model.name: model.shadow.max_pending_records for model in config.models if model.shadow.enabled}
    if shadowed and predlog is None:
        log.warning("shadow scoring is off: it needs the prediction log (models %s)", ", ".join(shadowed))
    if not shadowed or predlog is None:
        return None
    gather_ms = min(model.shadow.gather_ms for model in config.models if model.shadow.enabled)
    return ShadowScorer(predlog, shadowed, gather_seconds=gather_ms / 1000)


def prediction_log(config: PredictionLogConfig, worker: int | None = None) -> PredictionLog:
    """The log as configs/serving.yaml's `prediction_log` section sets it up (not started); worker k of
    several writes its own file of it."""
    retention = config.retention
    return PredictionLog(
        worker_log_path(config.path, worker), shared_path=config.path if worker is not None else None,
        synchronous=config.synchronous, wait_for_commit=config.wait_for_commit,
        max_batch_rows=config.max_batch_rows, checkpoint_interval=config.checkpoint_interval_seconds,
        commit_timeout=config.commit_timeout_seconds, max_queue_rows=config.max_queue_rows,
        retry_interval=config.retry_interval_seconds, journal_size_limit=config.journal_size_limit_bytes,
        max_size_bytes=config.max_size_bytes,
        retention=Retention(max_age_seconds=retention.max_age_days * SECONDS_PER_DAY if retention.max_age_days else None,
                            max_rows=retention.max_rows, interval_seconds=retention.interval_seconds,
                            batch_rows=retention.batch_rows))


def create_app(config: ServingConfig, source: ModelSource | None = None, worker: Worker | None = None) -> FastAPI:
    """The app; `worker`: this process is one of several uvicorn workers (serving/workers.py)."""
    services = build_services(config, source, worker)
    if worker is not None:
        services.reloads = Reloads(worker, services.store, config.server.reload_poll_seconds,
                                   config.server.reload_confirm_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        """Open the log, load every model (a failure is reported by /ready, not raised), serve; on
        shutdown (after uvicorn has let requests in flight finish) answer what still waits in a batcher,
        then commit what the log still holds."""
        if services.predlog:
            services.predlog.start()
        if services.shadow:
            services.shadow.start()
        await asyncio.to_thread(services.store.load_all)
        settle_garbage_collector()
        follower = asyncio.create_task(services.reloads.follow()) if services.reloads else None
        try:
            yield
        finally:
            if follower:
                follower.cancel()
            await services.store.drain()
            if services.shadow:
                await asyncio.to_thread(services.shadow.close)
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
    app.add_middleware(AdmissionMiddleware, max_in_flight=config.server.max_requests_in_flight,
                       retry_after_seconds=config.server.retry_after_seconds)
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


class LabelConflict(InvalidRequest):
    """Labels for predictions that already have one, posted without `correction`: 409, nothing changed."""


def add_error_handlers(app: FastAPI) -> None:
    """Every error answer is written ASCII-safe (details quote the client's input), and nothing
    unexpected answers with its own text: a generic 500 and an error id, the details in the log."""
    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, error: InvalidRequest) -> JSONResponse:
        status = 409 if isinstance(error, LabelConflict) else 422
        return AsciiJSONResponse({"detail": [{**e, "loc": ["body", *e["loc"]]} for e in error.errors]}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        return AsciiJSONResponse({"detail": [jsonable_encoder(json_safe(e)) for e in error.errors()]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if not is_body_allowed_for_status_code(error.status_code):
            return Response(status_code=error.status_code, headers=error.headers)
        return AsciiJSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        error_id = report(log, f"{request.method} {request.url.path}", error)
        return AsciiJSONResponse({"detail": public("internal server error", error_id), "error_id": error_id},
                                 status_code=500)

    @app.exception_handler(ModelUnavailable)
    async def model_unavailable(request: Request, error: ModelUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    @app.exception_handler(PredictionLogError)
    async def log_unavailable(request: Request, error: PredictionLogError) -> JSONResponse:
        """The reason is SQLite's message or a kind of error (never a path): the client may act on it."""
        retry_after = str(request.app.state.services.config.server.retry_after_seconds)
        return JSONResponse({"detail": f"prediction log unavailable: {error}"}, status_code=503,
                            headers={"Retry-After": retry_after})


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
                inputs=partial(model.adapter.log_inputs, records), outputs=outputs,  # made by the writer
                latency_ms=(time.perf_counter() - started) * 1000))
            shadow_request(services, name, request_id, ts, ids, records)
        services.metrics.observe_predictions(name, model.version, outputs)
        predictions = [{"id": id_, **public_answer(output)} for id_, output in zip(ids, outputs)]
        body = {"model": name, "version": model.version, "request_id": request_id, "predictions": predictions}
        return Response(orjson.dumps(body), media_type="application/json")

    require_feedback_key = require_key(services.keys.feedback, "FeedbackKey", feedback_key_needed(services.config),
                                       open_when_unset=True)

    async def feedback(request: Request) -> FeedbackAccepted:
        body_media_type(request, (JSON,))
        model = services.store.get(name)
        if services.predlog is None:
            raise HTTPException(503, "the prediction log is switched off: no feedback can be stored")
        body = parse_feedback(FeedbackRequest, await request.body())
        check_labels(body.items, model.contract.labels)
        stored = await services.predlog.add_feedback(name, [(item.id, item.label, item.correction) for item in body.items])
        check_stored(stored, body.items, name)
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
                      responses=FEEDBACK_RESPONSES, dependencies=[Depends(require_feedback_key)],
                      description="Needs the feedback key in X-API-Key (unless the server runs with "
                                  "`feedback.auth: none`). The first label of a prediction is the one that "
                                  "counts; a later one is taken only with `\"correction\": true` (every label "
                                  "is kept in the log's history), and a repeated label without it answers 409.")


def shadow_request(services: Services, name: str, request_id: str, ts: float, ids: list[str], records: list) -> None:
    """Hand a logged request to the shadow scorer, when the model has a challenger loaded (one queue put:
    the challenger scores in the scorer's thread, after this answer has gone)."""
    shadow = services.store.shadow(name) if services.shadow else None
    if shadow is not None:
        services.shadow.submit(ShadowJob(shadow, request_id, ts, ids, records))


def feedback_key_needed(config: ServingConfig) -> str:
    return (f"posting labels needs the feedback key (${config.feedback.api_key_env}, or the file "
            f"feedback.key_file of the server's config)")


def check_labels(items: list, labels: list[str]) -> None:
    """422 naming every label the model does not have."""
    bad = [{"type": "unknown_label", "loc": ["items", i, "label"], "input": item.label,
            "msg": f"unknown label {item.label!r} (allowed: {', '.join(labels)})"}
           for i, item in enumerate(items) if item.label not in labels]
    if bad:
        raise InvalidRequest(bad)


def check_stored(stored: StoredLabels, items: list, name: str) -> None:
    """422 naming ids the model never predicted; 409 naming predictions that already had a label."""
    if stored.unknown:
        unknown = set(stored.unknown)
        raise InvalidRequest([{"type": "unknown_prediction", "loc": ["items", i, "id"], "input": item.id,
                               "msg": f"no prediction {item.id!r} of model {name!r} in the log"}
                              for i, item in enumerate(items) if item.id in unknown])
    if stored.refused:
        raise LabelConflict([{"type": "label_exists", "loc": ["items", i, "id"], "input": items[i].id,
                              "msg": f"prediction {items[i].id!r} already has a label, and the first one counts: "
                                     f"nothing of this request was stored (send \"correction\": true to replace it)"}
                             for i in stored.refused])


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
    """Which of the route's media types the body is sent as; 415 naming them for any other, and for none.
    A browser sends a cross-site POST without asking first only as text/plain, a form (urlencoded or
    multipart), or with no type at all: requiring the JSON type keeps another site's page from writing
    predictions or labels (image models' multipart uploads excepted, by design)."""
    sent = header(request.scope, b"content-type")
    if not sent:
        raise HTTPException(415, f"missing Content-Type: {request.url.path} takes {' or '.join(accepted)}")
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


def feedback_body(request_schema: type, components: dict) -> dict:
    """The feedback body's JSON schema, its nested models moved to the document's components."""
    schema = request_schema.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    return _body(schema, JSON)


def contract_openapi(app: FastAPI, services: Services) -> dict:
    """The OpenAPI document, with each predict body built from the contract of the version now serving
    (and each feedback body from its schema: that route reads its body itself, after the key check)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    feedback = feedback_body(feedback_request(services.config.limits.max_feedback_items), components)
    for name in services.store.names:
        schema["paths"][f"/v1/{name}/feedback"]["post"]["requestBody"] = feedback
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

    @app.get("/ready", tags=["operations"],
             summary="Readiness: 200 only when every required model is loaded and the prediction log writes",
             responses={503: {"description": "a required model is not loaded, or the prediction log fails; "
                                            "`reasons` says why"}})
    async def ready() -> JSONResponse:
        problems = store.problems(required_only=True)
        log_state = services.predlog.health() if services.predlog else None
        if log_state and log_state["status"] != "ok":  # every predict would answer 503: not ready
            problems = problems | {"prediction_log": log_state["reason"]}
        logged = {"prediction_log": log_state} if log_state else {}
        if problems:
            return JSONResponse({"status": "not ready", "reasons": problems} | logged, status_code=503)
        body = {"status": "ready", "models": {name: model.version for name in store.names
                                              if (model := store.current(name)) is not None}}
        unavailable = store.problems()
        return JSONResponse(body | ({"optional_unavailable": unavailable} if unavailable else {}) | logged)

    read = [Depends(require_key(services.keys.read, "ReadKey", f"GET /metrics and /v1/models need the read key "
                                f"(${services.config.read.api_key_env})", open_when_unset=True))]

    @app.get("/v1/models", tags=["operations"], summary="Every configured model: version, alias, run, inputs, threshold",
             dependencies=read, responses=AUTH_RESPONSES)
    async def models() -> dict:
        described = []
        for name in store.names:
            model = store.current(name)
            described.append(model.describe() | {"shadow": store.shadow_state(name)} if model else
                             {"name": name, "status": "unavailable", "error": store.problems().get(name)})
        return {"models": described}

    if isinstance(services.metrics, ServingMetrics):
        @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response,
                 dependencies=read, responses=AUTH_RESPONSES)
        async def metrics() -> Response:
            return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)

    require_admin = require_key(services.keys.admin, "AdminKey", f"POST /admin/reload needs the admin key "
                                f"(${services.config.admin.api_key_env})", open_when_unset=False)

    @app.post("/admin/reload", tags=["operations"], dependencies=[Depends(require_admin)],
              summary="Switch to each alias's current version, atomically (requests in flight finish on the old)",
              responses=AUTH_RESPONSES | {
                  404: {"description": "unknown model"},
                  409: {"description": "a new version takes other inputs than the serving one: refused (it keeps "
                                       "serving) unless allow_schema_change=true; `schema_changes` says what differs"},
                  500: {"description": "a model failed to load: its previous version keeps serving"}})
    async def reload(model: str | None = None, allow_schema_change: bool = False) -> JSONResponse:
        if model is not None and model not in store.names:
            raise HTTPException(404, f"unknown model {model!r} (configured: {', '.join(store.names)})")
        results = await asyncio.to_thread(store.reload, [model] if model else None, allow_schema_change=allow_schema_change)
        body = {"reloaded": results}
        if services.reloads:  # several workers: the others repeat it; say how many have confirmed
            body["workers"] = await services.reloads.broadcast(model, allow_schema_change)
        return JSONResponse(body, status_code=reload_status(services.config, results))


def reload_status(config: ServingConfig, results: dict[str, dict]) -> int:
    """500 when a model that serves (or must) failed to load; else 409 when a new version was refused for
    changing the inputs; else 200. An optional model that was never trained is reported in the body and
    keeps the others' reload a success."""
    failed = [name for name, result in results.items() if not result["ok"] and "schema_changes" not in result
              and (result["previous"] is not None or config.model(name).required)]
    refused = [name for name, result in results.items() if "schema_changes" in result]
    return 500 if failed else 409 if refused else 200
