"""A bounded schemathesis run against the OpenAPI document: whatever it sends, no 5xx comes back.

For every operation, hypothesis draws requests that fit the published schema (records of every kind
built from each contract, feedback, reload without a key, ...) and requests that break it; the server
must answer each with something other than a 5xx. `MAX_EXAMPLES` keeps it to seconds per operation.
(Driven through schemathesis' Python API: its pytest plugin does not support pytest 9 yet.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serving.app import create_app
from tests.serving.conftest import KIND_NAMES, make_config

MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, bundle_root):
    config = make_config(tmp_path_factory.mktemp("fuzz"), source={"kind": "bundles", "bundle_root": str(bundle_root)})
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(config))


def operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema, mode):
    seen: list[tuple[str, int]] = []
    found = operations(api_schema)
    assert {op.path for op in found} >= {"/admin/reload", "/ready", *(f"/v1/{name}/{route}" for name in KIND_NAMES
                                                                       for route in ("predict", "feedback"))}
    for operation in found:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_5xx(case):
            response = case.call()
            seen.append((operation.path, response.status_code))
            assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text}"

        try:
            no_5xx()
        except Unsatisfiable:  # nothing to break in an operation without inputs (GET /health)
            assert mode == GenerationMode.NEGATIVE
    assert any(path == "/v1/churn/predict" and status == 200 for path, status in seen) or mode == GenerationMode.NEGATIVE
