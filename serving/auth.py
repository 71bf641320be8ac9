"""API keys: who may reload models, who may post labels, who may read the server's internals.

Labels drive quality alerts and promotion, so writing them needs a key of its own (`feedback`), apart
from the admin key (reload) and the optional read key (/metrics, /v1/models). Every key arrives in the
`X-API-Key` header and each route checks its own, in constant time: 401 without a key, 403 with a wrong
one. Keys come from environment variables named in configs/serving.yaml; the admin and feedback keys,
when their variable is unset, from a local file the server creates on first start, so `make serve`,
`make simulate` and `make monitor RETRAIN=1` share them with no setup step. Any key shorter than
`admin.min_key_chars` stops start-up: a short key can be guessed.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from pipelines.common.config import ConfigError
from serving.config import ServingConfig

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
KEY_BYTES = 32  # a generated key: 256 random bits, 43 URL-safe characters
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class KeyRefused(ConfigError):
    """A configured key the server will not start with (too short, or named but not set)."""


@dataclass(frozen=True)
class Keys:
    """The keys this server checks. None: admin API disabled; feedback or read routes open."""

    admin: str | None
    feedback: str | None
    read: str | None


def server_keys(config: ServingConfig, environ: Mapping[str, str] | None = None) -> Keys:
    """Every key, checked, at start-up (the feedback key file is created here when it is needed)."""
    environ = os.environ if environ is None else environ
    keys = Keys(admin=admin_key(config, environ, create=True),
                feedback=feedback_key(config, environ, create=True), read=read_key(config, environ))
    if config.feedback.auth == "none":
        log.warning("feedback.auth is none: ANYONE who can reach this server can post the labels that drive "
                    "quality alerts and promotion. Use `auth: key` outside a closed test setup.")
    return keys


def feedback_key(config: ServingConfig, environ: Mapping[str, str], *, create: bool = False) -> str | None:
    """The feedback key: its variable, else its file (created when `create`, i.e. by the server); None
    when feedback needs no key, or (for a client) when neither holds one yet."""
    settings = config.feedback
    if settings.auth == "none":
        return None
    return configured_key(config, settings.api_key_env, settings.key_file, environ, create=create)


def admin_key(config: ServingConfig, environ: Mapping[str, str], *, create: bool = False) -> str | None:
    """The admin key (POST /admin/reload): its variable, else its file (created when `create`, i.e. by the
    server), so monitoring on the same machine can ask for a reload after a promotion with no setup."""
    return configured_key(config, config.admin.api_key_env, config.admin.key_file, environ, create=create)


def configured_key(config: ServingConfig, variable: str, key_file: Path, environ: Mapping[str, str], *,
                   create: bool = False) -> str | None:
    """Any key: its variable when set (a deployment's secret; no file is read or written), else its local
    file, created with a random key when `create` (the server) and only read otherwise (a client); None
    when neither holds one. Every key of the server goes through here."""
    found = _from_env(config, variable, environ)
    if found is not None:
        return found
    path = Path(key_file)
    if path.is_file():
        return checked(path.read_text().strip(), str(path), config.admin.min_key_chars)
    return write_key_file(path) if create else None


def read_key(config: ServingConfig, environ: Mapping[str, str]) -> str | None:
    """The read key when one is configured; a configured variable that is unset stops start-up."""
    name = config.read.api_key_env
    if not name:
        return None
    found = _from_env(config, name, environ)
    if found is None:
        raise KeyRefused(f"read.api_key_env names ${name}, which is not set: set it (e.g. {GENERATE}), or "
                         f"set read.api_key_env to \"\" to leave /metrics and /v1/models open")
    return found


def _from_env(config: ServingConfig, name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    return checked(value, f"${name}", config.admin.min_key_chars) if value else None


def checked(key: str, where: str, min_chars: int) -> str:
    """The key, when it is long enough to resist guessing; KeyRefused naming where it came from otherwise."""
    if len(key) < min_chars:
        raise KeyRefused(f"{where} holds a key of {len(key)} characters: the server needs at least {min_chars} "
                         f"(admin.min_key_chars); generate one with {GENERATE}")
    return key


def write_key_file(path: Path) -> str:
    """A fresh random key in a new file only its owner can read. O_EXCL: of two servers starting at once,
    one writes the key and the other reads it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_urlsafe(KEY_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    log.info("key created in %s (mode 600; clients on this machine read it there)", path)
    return key


def require_key(expected: str | None, scheme: str, what: str, *, open_when_unset: bool) -> Callable:
    """A FastAPI dependency checking X-API-Key against `expected`: 401 when missing, 403 when wrong.
    With no expected key the route is open (`open_when_unset`) or disabled (403). FastAPI is imported
    here, not above: monitoring reads keys from this module with the `monitor` extra alone."""
    from fastapi import Depends, HTTPException
    from fastapi.security import APIKeyHeader

    header = APIKeyHeader(name=API_KEY_HEADER, scheme_name=scheme, auto_error=False, description=what)

    async def check(key: str | None = Depends(header)) -> None:
        if expected is None:
            if open_when_unset:
                return
            raise HTTPException(403, f"{what}: disabled, the server was started without that key")
        if not key:
            raise HTTPException(401, f"missing {API_KEY_HEADER} header: {what}")
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise HTTPException(403, f"wrong {API_KEY_HEADER}: {what}")

    return check
