"""Where the tests find the repository and the shared data (beside the checkout, never inside it)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TELCO_CSV = SHARED_DATA / "telco-churn" / "Telco-Customer-Churn.csv"
UCI_SENTIMENT = SHARED_DATA / "uci-sentiment"
