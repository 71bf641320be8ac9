"""A small HTTP client for the serving API: what the simulator and the retraining loop call.

Only the public endpoints: POST /v1/<model>/predict, POST /v1/<model>/feedback (header X-API-Key: the
feedback key), POST /admin/reload (X-API-Key: the admin key), GET /v1/models (the read key, when the server
has one), GET /ready. The simulator never writes into the prediction log itself: traffic goes
through the real server, exactly as production traffic would.
"""

from __future__ import annotations

import time

import httpx

READY_POLL_SECONDS = 0.2


class ServingError(RuntimeError):
    """The server answered with an error, or could not be reached."""


def key_header(key: str | None) -> dict[str, str]:
    return {"X-API-Key": key} if key else {}


class ServingClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0, api_key: str | None = None,
                 feedback_key: str | None = None, read_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key  # admin: reload
        self.feedback_key = feedback_key
        self.read_key = read_key
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def _post(self, path: str, payload: object, headers: dict[str, str] | None = None) -> dict:
        try:
            response = self.http.post(path, json=payload, headers=headers)
        except httpx.HTTPError as error:
            raise ServingError(f"POST {self.base_url}{path}: {error} (is the server running? make serve)") from error
        if response.status_code >= 400:
            raise ServingError(f"POST {self.base_url}{path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def max_batch(self, model: str) -> int | None:
        """The records per request the server takes for `model` (its own limit), from GET /v1/models."""
        try:
            listed = self.http.get("/v1/models", headers=key_header(self.read_key)).json()["models"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        found = next((m for m in listed if m.get("name") == model), {})
        return (found.get("serving") or {}).get("max_batch")

    def wait_ready(self, timeout: float) -> None:
        """Poll GET /ready until the server has its models loaded, or fail after `timeout` seconds."""
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            try:
                response = self.http.get("/ready")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as error:
                last = str(error)
            time.sleep(READY_POLL_SECONDS)
        raise ServingError(f"{self.base_url} not ready after {timeout:.0f} s ({last}); start it with `make serve`")

    def predict(self, model: str, records: list[dict]) -> dict:
        """Send request records (what the model's codec makes of stored rows: `codec.request`); returns
        {model, version, request_id, predictions: [{id, label, probability, ...}]}."""
        return self._post(f"/v1/{model}/predict", records)

    def feedback(self, model: str, labels: dict[str, str]) -> int:
        """Ground truth for earlier predictions: {prediction id: label}; returns how many were accepted."""
        items = [{"id": prediction_id, "label": label} for prediction_id, label in labels.items()]
        return int(self._post(f"/v1/{model}/feedback", {"items": items}, headers=key_header(self.feedback_key))["accepted"])

    def reload(self, model: str | None = None) -> dict:
        """Ask the server to resolve the alias of `model` (every model when None) again, after a promotion."""
        if not self.api_key:
            raise ServingError("no admin API key: set the variable named by admin.api_key_env in configs/serving.yaml, "
                               "or start the server on this machine (`make serve`) so it writes admin.key_file")
        path = "/admin/reload" + (f"?model={model}" if model else "")
        return self._post(path, {}, headers={"X-API-Key": self.api_key})
