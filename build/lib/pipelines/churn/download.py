"""Download the IBM Telco customer churn CSV from a pinned URL and check it byte for byte.

The sha256 pins the exact file every metric in this repo was computed on: a copy that differs (another
mirror, line endings changed, an edited row) is rejected rather than trained on. The file is written to
a temporary name beside the destination and renamed only once verified, so an interrupted or corrupt
download never leaves a plausible-looking CSV behind.

    python -m pipelines.churn.download [--dest data/raw/Telco-Customer-Churn.csv]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

URL = "https://raw.githubusercontent.com/IBM/telco-customer-churn-on-icp4d/master/data/Telco-Customer-Churn.csv"
SHA256 = "16320c9c1ec72448db59aa0a26a0b95401046bef5d02fd3aeb906448e3055e91"
DEFAULT_DEST = Path("data/raw/Telco-Customer-Churn.csv")
TIMEOUT_S = 30
CHUNK_BYTES = 1 << 16
READABLE_FILE_MODE = 0o644


class DownloadError(RuntimeError):
    """The data set could not be fetched, or what was fetched is not the pinned file."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, into) -> None:
    """Stream the response body into an open binary file; network failures become DownloadError."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                into.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"could not download {url}: {reason}. Offline? Copy the CSV to the destination by hand "
            "or point CHURN_DATA at it; without a CSV the pipeline uses synthetic data."
        ) from error


def download(dest: Path, url: str = URL, *, sha256: str = SHA256) -> Path:
    """Fetch `url` to `dest` unless `dest` already holds the pinned file; return `dest`."""
    dest = Path(dest)
    if dest.is_file() and file_sha256(dest) == sha256:
        log.info("%s already present with the expected sha256, not downloading", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    partial_path = Path(partial)
    try:
        with os.fdopen(handle, "wb") as file:
            _fetch(url, file)
        actual = file_sha256(partial_path)
        if actual != sha256:
            raise DownloadError(f"{url}: sha256 mismatch: expected {sha256}, got {actual}; file discarded")
        partial_path.chmod(READABLE_FILE_MODE)  # mkstemp creates owner-only files
        os.replace(partial_path, dest)
    finally:
        partial_path.unlink(missing_ok=True)
    log.info("downloaded %s to %s (sha256 verified)", url, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"default: {DEFAULT_DEST}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        download(args.dest)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
