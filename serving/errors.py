"""Failures on the server's side, answered without their details.

An exception's text names local paths, database files and library internals: useful to the operator,
a map of the machine to anyone else. So a 5xx answer, `/ready` and `/v1/models` say what failed in
general words plus an error id, and the log holds the details under that same id: a user quotes the id,
the operator greps the log for it.
"""

from __future__ import annotations

import logging
import secrets

ERROR_ID_BYTES = 6  # 48 random bits: unique enough to grep a log for, short enough to quote


def report(logger: logging.Logger, what: str, error: BaseException) -> str:
    """Log `what` failed, with the exception and its traceback, under a fresh error id; return the id."""
    error_id = secrets.token_hex(ERROR_ID_BYTES)
    logger.error("%s (error id %s): %s: %s", what, error_id, type(error).__name__, error,
                 exc_info=(type(error), error, error.__traceback__))
    return error_id


def public(what: str, error_id: str) -> str:
    """What a client or /ready may read of a failure: the general words and the id, never the details."""
    return f"{what} (error id {error_id}; the details are in the server log)"
