"""Download with a pinned sha256. urllib is replaced by a fake: there is no network in tests."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.churn import download as download_module
from pipelines.churn.download import SHA256, DownloadError, download, main

from tests.paths import TELCO_CSV as REAL_CSV
needs_real_csv = pytest.mark.skipif(not REAL_CSV.is_file(), reason=f"real data set not found at {REAL_CSV}")
PAYLOAD = b"customerID,Churn\n0001-AAAAA,No\n"
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class FakeResponse(io.BytesIO):
    """What urlopen returns, as far as download() uses it: a readable context manager."""


@pytest.fixture
def served(monkeypatch):
    """Serve given bytes (or raise an error) from urlopen; record the URLs asked for."""
    requests: list[str] = []

    def serve(body: bytes | Exception):
        def fake_urlopen(url, timeout):
            requests.append(url)
            if isinstance(body, Exception):
                raise body
            return FakeResponse(body)

        monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
        return requests

    return serve


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_downloads_and_verifies(tmp_path, served):
    requests = served(PAYLOAD)
    dest = tmp_path / "raw" / "customers.csv"
    assert download(dest, "https://example.test/c.csv", sha256=PAYLOAD_SHA256) == dest
    assert dest.read_bytes() == PAYLOAD
    assert requests == ["https://example.test/c.csv"]
    assert leftovers(dest.parent) == ["customers.csv"]


@needs_real_csv
def test_pinned_hash_matches_the_real_data_set(tmp_path, served):
    requests = served(REAL_CSV.read_bytes())
    dest = download(tmp_path / "Telco-Customer-Churn.csv")
    assert requests == [download_module.URL]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA256


def test_hash_mismatch_raises_and_leaves_nothing_behind(tmp_path, served):
    served(b"an error page, not the data set")
    dest = tmp_path / "customers.csv"
    with pytest.raises(DownloadError, match=f"sha256 mismatch: expected {SHA256}"):
        download(dest)
    assert leftovers(tmp_path) == []


def test_offline_gives_a_clear_error(tmp_path, served):
    served(urllib.error.URLError("Name or service not known"))
    with pytest.raises(DownloadError, match="could not download .*Name or service not known.*Offline"):
        download(tmp_path / "customers.csv")
    assert leftovers(tmp_path) == []


def test_skips_a_file_already_present_with_the_right_hash(tmp_path, served):
    requests = served(b"never fetched")
    dest = tmp_path / "customers.csv"
    dest.write_bytes(PAYLOAD)
    assert download(dest, sha256=PAYLOAD_SHA256) == dest
    assert requests == []


def test_replaces_a_file_with_the_wrong_hash(tmp_path, served):
    served(PAYLOAD)
    dest = tmp_path / "customers.csv"
    dest.write_bytes(b"stale")
    download(dest, sha256=PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD


@needs_real_csv
def test_command_line_downloads_to_dest(tmp_path, served):
    served(REAL_CSV.read_bytes())
    dest = tmp_path / "raw" / "Telco-Customer-Churn.csv"
    assert main(["--dest", str(dest)]) == 0
    assert dest.stat().st_size == REAL_CSV.stat().st_size


def test_command_line_reports_failure(tmp_path, served, capsys):
    served(urllib.error.URLError("offline"))
    assert main(["--dest", str(tmp_path / "customers.csv")]) == 1
    assert "could not download" in capsys.readouterr().err
