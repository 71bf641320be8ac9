"""Command line: `python -m monitoring run|simulate|index --model churn ...` (see --help of each).

Exit codes of `run`: 0 = no threshold crossed, 1 = an alert (drift or quality), 2 = could not monitor
(no model, no predictions, bad config), for cron and CI; `make monitor` prints an alert as an alert and
fails only on 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from monitoring.alerts import ALERT_EXIT_CODE
from monitoring.client import ServingClient, ServingError
from monitoring.config import DEFAULT_CONFIG, MonitoringConfig, load_monitoring_config
from monitoring.monitor import WindowOutcome, run_monitoring
from monitoring.report import build_index
from monitoring.window import WindowSpec, parse_time
from pipelines.common import tracking
from pipelines.common.config import ConfigError
from pipelines.common.registry import AliasMoved
from serving.auth import admin_key, feedback_key
from serving.config import ServingConfig, load_serving_config

log = logging.getLogger("monitoring")
ERROR_EXIT_CODE = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--model", default="churn", help="registered model to watch (default: churn)")
        sub.add_argument("--config", default=DEFAULT_CONFIG, help=f"monitoring config (default: {DEFAULT_CONFIG})")
        return sub

    run = command("run", "compare a window of the prediction log with the model's reference; alert on drift")
    run.add_argument("--window", type=int, help="the last N predictions (default: window.rows in the config)")
    run.add_argument("--start", type=parse_time, help="window start, Unix seconds or ISO-8601 (UTC)")
    run.add_argument("--end", type=parse_time, help="window end (exclusive), Unix seconds or ISO-8601 (UTC)")
    run.add_argument("--simulated", action="store_true",
                     help="one report per window of the last `simulate` run, named by scenario")
    run.add_argument("--version", help="model version to watch (default: the configured alias, champion)")
    run.add_argument("--retrain", action="store_true",
                     help="on an alert: retrain, register a challenger, promote it only if it wins")

    simulate = command("simulate", "send windows of realistic (and drifted) traffic to the running server")
    simulate.add_argument("--plan", help="comma-separated scenarios, one per window (default: the model's plan, else simulate.plan)")
    simulate.add_argument("--rows", type=int, help="rows per window (default: simulate.window_rows)")
    simulate.add_argument("--url", help="server URL (default: host and port of the serving config)")
    simulate.add_argument("--flush-labels", action="store_true",
                          help="post every window's labels at the end (default: the last ones stay pending)")

    command("index", "rebuild the HTML history page of a model's monitoring reports")
    return parser.parse_args(argv)


def server_url(serving: ServingConfig) -> str:
    return f"http://{serving.server.host}:{serving.server.port}"


def print_outcomes(outcomes: list[WindowOutcome]) -> None:
    for outcome in outcomes:
        summary, name = outcome.summary, outcome.scenario or outcome.window_id
        prediction = f"{summary.prediction.p_value:.1e}" if summary.prediction else "-"
        drifted = ", ".join(c.column for c in summary.drifted_features) or "none"
        print(f"[{name}] rows {summary.rows}, labelled {summary.labelled_rows}; drifted: {drifted}; "
              f"prediction drift p={prediction}")
        print(f"    {'ALERT: ' + '; '.join(outcome.alert.reasons) if outcome.alert.triggered else 'ok'}")


def reload_server(serving: ServingConfig, config: MonitoringConfig, model: str, version: str) -> bool:
    """After a promotion, ask the server to pick up the new champion and confirm that it serves `version`;
    a failure is a warning, not an error (the promotion stands). Returns whether it was confirmed."""
    try:
        key = admin_key(serving, os.environ)  # its variable, else the file the server wrote on this machine
        with ServingClient(server_url(serving), timeout=config.request_timeout_seconds, api_key=key) as client:
            answer = client.reload(model).get("reloaded", {}).get(model, {})
    except (ServingError, ConfigError) as error:
        print(f"warning: the server still serves the old champion until reloaded: {error}", file=sys.stderr)
        return False
    served, source = str(answer.get("version")), answer.get("source", "?")
    if served == str(version):
        print(f"server at {server_url(serving)} reloaded: {model} v{served} ({source})")
        return True
    hint = ("it serves bundles, which a registry promotion does not change: export the new champion "
            "(`make bundle`) and reload" if answer.get("from") == "bundles" else "reload it again, or check its registry")
    print(f"warning: after the reload the server at {server_url(serving)} serves {model} v{served} ({source}), "
          f"not the new champion v{version}: {hint}", file=sys.stderr)
    return False


def command_run(args: argparse.Namespace, config: MonitoringConfig, serving: ServingConfig) -> int:
    if args.window is not None and (args.start is not None or args.end is not None):
        raise ValueError("give either --window or --start/--end, not both")
    if args.simulated and (args.window is not None or args.start is not None or args.end is not None):
        raise ValueError("--simulated takes its windows from the simulation manifest: drop --window/--start/--end")
    last_n = None if (args.start is not None or args.end is not None) else (args.window or config.window.rows)
    spec = WindowSpec(last_n=last_n, start_ts=args.start, end_ts=args.end)
    db_path = serving.prediction_log.path
    outcomes = run_monitoring(config, args.model, db_path, spec, simulated=args.simulated, version=args.version)
    print_outcomes(outcomes)
    index = build_index(config.reports_for(args.model), args.model, config.quality, db_path)
    print(f"reports: {index}")
    alerts = [outcome for outcome in outcomes if outcome.alert.triggered]
    if alerts and args.retrain:
        from monitoring.retrain import retrain_and_decide  # training machinery only when asked for

        trigger = "; ".join(alerts[-1].alert.reasons)
        outcome = retrain_and_decide(config, args.model, db_path, trigger=trigger)
        verdict = "promote" if outcome.promoted else "keep champion"
        print(f"retrain: challenger v{outcome.challenger_version} vs champion v{outcome.champion_version}: "
              f"{verdict}: {outcome.reason} (MLflow run {outcome.run_id})")
        if outcome.promoted:
            reload_server(serving, config, args.model, outcome.challenger_version)
    return ALERT_EXIT_CODE if alerts else 0


def client_keys(serving: ServingConfig) -> dict[str, str | None]:
    """What the simulator sends: the feedback key (its variable, else the file the server wrote on this
    machine) and the read key when the server has one (for GET /v1/models)."""
    read = serving.read.api_key_env
    return {"feedback_key": feedback_key(serving, os.environ), "read_key": os.environ.get(read) if read else None}


def command_simulate(args: argparse.Namespace, config: MonitoringConfig, serving: ServingConfig) -> int:
    from monitoring.reference import load_holdout, load_watched_model
    from monitoring.simulate import format_windows, simulate, write_manifest

    if args.rows:
        config = config.model_copy(update={"simulate": config.simulate.model_copy(update={"window_rows": args.rows})})
    plan = args.plan.split(",") if args.plan else (config.model(args.model).plan or config.simulate.plan)
    model_cfg = config.model(args.model)
    tracking.configure_tracking(model_cfg.experiment)
    model = load_watched_model(args.model, alias=model_cfg.alias)
    pool = load_holdout(model, model_cfg.holdout_artifact)
    url = args.url or server_url(serving)
    with ServingClient(url, timeout=config.request_timeout_seconds, **client_keys(serving)) as client:
        client.wait_ready(config.request_timeout_seconds)
        windows = simulate(config, args.model, client, pool, plan, codec=model.codec,
                           flush_labels=args.flush_labels)
    manifest = write_manifest(windows, config.reports_for(args.model), args.model, url)
    print(format_windows(windows))
    print(f"manifest: {manifest} (monitor each window: python -m monitoring run --model {args.model} --simulated)")
    return 0


def command_index(args: argparse.Namespace, config: MonitoringConfig, serving: ServingConfig) -> int:
    index = build_index(config.reports_for(args.model), args.model, config.quality, serving.prediction_log.path)
    if index is None:
        print(f"no monitoring reports under {config.reports_for(args.model)}: run `python -m monitoring run` first")
        return ERROR_EXIT_CODE
    print(f"index: {index}")
    return 0


COMMANDS = {"run": command_run, "simulate": command_simulate, "index": command_index}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    tracking.quiet_libraries()
    try:
        config = load_monitoring_config(args.config)
        config.model(args.model)
        serving = load_serving_config(config.serving_config)
        return COMMANDS[args.command](args, config, serving)
    except (ConfigError, LookupError, ValueError, FileNotFoundError, ServingError, AliasMoved) as error:
        print(f"error: {error}", file=sys.stderr)
        return ERROR_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
