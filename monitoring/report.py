"""The browsable history: `reports/monitoring/<model>/index.html`, one row per monitored window, with a
drift-over-time plot on top.

Built only from the `summary.json` each window leaves beside its Evidently reports, so it can be
rebuilt at any time (`python -m monitoring index --model churn`) and never disagrees with them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from monitoring.config import QualityConfig
from monitoring.drift import minus_log10
from monitoring.simulate import scenario_during
from pipelines.common.plots import plt  # headless (Agg) matplotlib
from serving.predlog import read_shadow

INDEX_FILE = "index.html"
PLOT_FILE = "drift_over_time.png"
SUMMARY_FILE = "summary.json"


def read_summaries(directory: Path) -> list[dict]:
    """Every window's summary, oldest window first."""
    summaries = [json.loads(path.read_text()) for path in directory.glob(f"*/{SUMMARY_FILE}")]
    return sorted(summaries, key=lambda s: (s["window"]["start_ts"], s["window_id"]))


def named_by_scenario(summaries: list[dict], directory: Path) -> list[dict]:
    """A summary without a scenario (one written before windows were named from the manifest) takes it
    from the simulation manifest by time, so no simulated window shows as a bare timestamp."""
    return [summary if summary.get("scenario") else summary | {"scenario": scenario_during(
        directory, summary["window"]["start_ts"], summary["window"]["end_ts"])} for summary in summaries]


def strongest_feature_p(summary: dict) -> float:
    return min(feature["p_value"] for feature in summary["drift"]["features"])


def quality_value(summary: dict, metric: str, key: str = "quality") -> float | None:
    values = summary["drift"].get(key) or {}
    value = values.get(metric)
    return value if value is not None and value == value else None  # None or NaN -> None


def plot_drift_over_time(summaries: list[dict], path: Path, quality: QualityConfig) -> None:
    """Top: evidence of drift as -log10(p) (higher = stronger) against the per-test threshold.
    Bottom: the quality metric on labelled rows against the reference's and the quality alert line."""
    metric = quality.metric
    fig = plt.figure(figsize=(9, 6.5), dpi=110)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    x = list(range(len(summaries)))
    top.plot(x, [minus_log10(strongest_feature_p(s)) for s in summaries], "o-", label="strongest feature drift")
    prediction = [s["drift"]["prediction"] for s in summaries]
    if any(prediction):
        top.plot(x, [minus_log10(p["p_value"]) if p else float("nan") for p in prediction], "s--",
                 label="prediction drift")
    top.plot(x, [minus_log10(s["drift"]["alpha_per_test"]) for s in summaries], "k:", label="alert threshold")
    alerts = [i for i, s in enumerate(summaries) if s["alert"]["triggered"]]
    top.scatter(alerts, [minus_log10(strongest_feature_p(summaries[i])) for i in alerts], s=140,
                facecolors="none", edgecolors="red", label="alert")
    top.set_ylabel("-log10(p-value)")
    top.set_yscale("symlog", linthresh=10)
    top.legend(fontsize=8, loc="upper left")
    top.set_title("Drift over time (one point per monitored window)")
    window_quality = [quality_value(s, metric) for s in summaries]
    bottom.plot(x, [q if q is not None else float("nan") for q in window_quality], "o-", label=f"window {metric}")
    reference = [quality_value(s, metric, "reference_quality") or float("nan") for s in summaries]
    bottom.plot(x, reference, "k:", label=f"reference {metric}")
    bottom.plot(x, [r - quality.max_drop for r in reference], "r:", label=f"alert below (drop > {quality.max_drop})")
    bottom.set_ylabel(metric)
    bottom.legend(fontsize=8, loc="lower left")
    bottom.set_xticks(x, [s.get("scenario") or s["window"]["start"][5:16] for s in summaries], rotation=30,
                      ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cell(value: object) -> str:
    return f"<td>{html.escape(str(value))}</td>"


def link(directory: str, file: str | None, text: str) -> str:
    return f'<a href="{html.escape(directory)}/{html.escape(file)}">{text}</a>' if file else ""


def table_row(number: int, summary: dict, metric: str) -> str:
    drift, alert = summary["drift"], summary["alert"]
    quality = quality_value(summary, metric)
    prediction = drift.get("prediction")
    reports = " ".join(filter(None, [link(summary["window_id"], summary["reports"]["drift"], "drift"),
                                     link(summary["window_id"], summary["reports"].get("quality"), "quality")]))
    status = "ALERT: " + "; ".join(alert["reasons"]) if alert["triggered"] else "ok"
    return "<tr>" + "".join([
        cell(number), cell(f"{summary['window']['start']} .. {summary['window']['end'][11:]}"),
        cell(summary.get("scenario") or "-"), cell(summary["version"]), cell(drift["rows"]),
        cell(drift["labelled_rows"]), cell(", ".join(drift["drifted_features"]) or "-"),
        cell(f"{prediction['p_value']:.1e}" if prediction else "-"),
        cell(f"{quality:.3f}" if quality is not None else "-"),
        f'<td class="{"alert" if alert["triggered"] else "ok"}">{html.escape(status)}</td>',
        f"<td>{reports}</td>", cell(summary["mlflow_run_id"][:8]),
    ]) + "</tr>"


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}} .alert{{color:#b00;font-weight:bold}}
.ok{{color:#070}}</style></head><body>
<h1>{title}</h1>
<p>{count} windows. Drift tests are p-value tests at the per-test threshold shown in the plot (a
Bonferroni split of the window's false-alarm budget); see docs/monitoring.md.</p>
<img src="{plot}" alt="drift over time" style="max-width:100%">
{shadow}
<table><tr><th>#</th><th>window (UTC)</th><th>scenario</th><th>version</th><th>rows</th><th>labelled</th>
<th>drifted features</th><th>prediction drift p</th><th>{metric}</th><th>status</th><th>reports</th>
<th>MLflow run</th></tr>
{rows}
</table></body></html>
"""


def shadow_comparison(db_path: Path, model: str) -> list[dict]:
    """Champion vs shadow challenger on live traffic, per pair of versions: rows, how often their answers
    agree, and each one's accuracy on the rows whose labels arrived (the served labels, as clients saw them)."""
    pairs: dict[tuple[str, str], list[dict]] = {}
    for row in read_shadow(db_path, model):
        pairs.setdefault((row["version"], row["shadow_version"]), []).append(row)
    return [pair_summary(champion, challenger, rows) for (champion, challenger), rows in pairs.items()]


def pair_summary(champion: str, challenger: str, rows: list[dict]) -> dict:
    labelled = [row for row in rows if row["label"] is not None]

    def accuracy(key: str) -> float | None:
        return sum(row[key]["label"] == row["label"] for row in labelled) / len(labelled) if labelled else None

    agree = sum(row["outputs"]["label"] == row["shadow_outputs"]["label"] for row in rows) / len(rows)
    return {"champion": champion, "challenger": challenger, "rows": len(rows), "labelled": len(labelled),
            "agreement": agree, "champion_accuracy": accuracy("outputs"), "challenger_accuracy": accuracy("shadow_outputs")}


def shadow_section(pairs: list[dict]) -> str:
    """The champion-vs-challenger table (empty when the server shadowed nothing)."""
    if not pairs:
        return ""
    share = lambda value: "-" if value is None else f"{value:.3f}"  # noqa: E731
    rows = "".join("<tr>" + "".join(cell(v) for v in (
        f"v{p['champion']}", f"v{p['challenger']}", p["rows"], p["labelled"], share(p["agreement"]),
        share(p["champion_accuracy"]), share(p["challenger_accuracy"]))) + "</tr>" for p in pairs)
    return ("<h2>Champion vs shadow challenger on live traffic</h2><table><tr><th>champion</th><th>challenger</th>"
            "<th>shadow rows</th><th>labelled</th><th>same label</th><th>champion accuracy</th>"
            f"<th>challenger accuracy</th></tr>{rows}</table>")


def build_index(directory: Path, model: str, quality: QualityConfig = QualityConfig(),
                db_path: Path | None = None) -> Path | None:
    """Write index.html and the plot for every window found under `directory`; None when there is none."""
    summaries = named_by_scenario(read_summaries(directory), directory)
    if not summaries:
        return None
    metric = quality.metric
    plot_drift_over_time(summaries, directory / PLOT_FILE, quality)
    rows = "\n".join(table_row(i, s, metric) for i, s in reversed(list(enumerate(summaries))))
    shadow = shadow_section(shadow_comparison(db_path, model)) if db_path is not None else ""
    page = PAGE.format(title=f"{html.escape(model)}: drift monitoring history", count=len(summaries),
                       plot=PLOT_FILE, metric=metric, rows=rows, shadow=shadow)
    path = directory / INDEX_FILE
    path.write_text(page)
    return path
