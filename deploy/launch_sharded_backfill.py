"""Launch a sharded backfill on a Dagster deployment: one market run, then one run per shard.

    kubectl -n dagster port-forward svc/dagster-dagster-webserver 8080:80 &
    uv run python deploy/launch_sharded_backfill.py --port 8080 --shards 8

The market run materializes the symbol-level assets (`runs.MARKET_ASSETS`) over the window and
its lookback, once for the whole book. When it has succeeded, the script submits `--shards`
runs of the portfolio assets over the window, each tagged `sigmasight/shard` = "i/n" (the
portfolios whose id % n == i, see `scope.py`). The runs go to the deployment's run queue,
which starts them as its limits allow (deploy/README.md); on Kubernetes each is its own pod.
This is the cluster form of `sigmasight backfill`, whose two runs are the same market run and
one run for the whole book.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from sigmasight_pipeline import calendar
from sigmasight_pipeline.runs import MARKET_ASSETS, BackfillPlan, partitioned_assets, range_tags
from sigmasight_pipeline.scope import Scope
from sigmasight_pipeline.settings import BACKFILL_DAYS

# The chart names the code location after its user deployment (deploy/helm/values.yaml).
DEFAULT_LOCATION = "sigmasight-pipeline"
# What Dagster names the repository of a Definitions object and its job of all assets (the job
# `runs.materialize` runs locally).
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class PlannedRun:
    """One run to submit: the assets it materializes and its tags (range, scope)."""

    assets: tuple[str, ...]
    tags: dict[str, str]


def sharded_backfill(plan: BackfillPlan, shards: int) -> tuple[PlannedRun, list[PlannedRun]]:
    """The market run (symbol-level assets over the lookback and the window) and the `shards`
    shard runs (portfolio assets over the window), as `runs.backfill` splits a backfill."""
    if shards < 1:
        raise ValueError(f"--shards {shards}: expected at least 1")
    first, start, last = (plan.key(d) for d in (plan.history[0], plan.window[0], plan.window[-1]))
    market = PlannedRun(tuple(MARKET_ASSETS), range_tags(first, last))
    portfolio_assets = tuple(a for a in partitioned_assets() if a not in MARKET_ASSETS)
    shard_runs = [
        PlannedRun(portfolio_assets, {**range_tags(start, last), **Scope(shard=(i, shards)).tags()})
        for i in range(shards)
    ]
    return market, shard_runs


def submit(client: DagsterGraphQLClient, location: str, run: PlannedRun) -> str:
    """Queue `run` on the deployment; returns its run id."""
    return client.submit_job_execution(
        ASSET_JOB,
        repository_location_name=location,
        repository_name=REPOSITORY,
        asset_selection=list(run.assets),
        tags=run.tags,
    )


def wait_for(
    client: DagsterGraphQLClient, run_id: str, poll_seconds: float, say: Callable[[str], None]
) -> DagsterRunStatus:
    """Poll the run's status until it has finished."""
    shown = None
    while (status := client.get_run_status(run_id)) not in FINISHED:
        if status != shown:
            say(f"  {run_id}: {status.value}")
            shown = status
        time.sleep(poll_seconds)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="localhost", help="Dagster webserver host")
    parser.add_argument("--port", type=int, default=8080, help="Dagster webserver port")
    parser.add_argument("--https", action="store_true", help="the webserver speaks HTTPS")
    parser.add_argument("--location", default=DEFAULT_LOCATION, help="code location name")
    parser.add_argument("--shards", type=int, required=True, help="number of shard runs")
    parser.add_argument("--days", type=int, default=BACKFILL_DAYS, help="sessions in the window")
    parser.add_argument("--end", help="last trading day (default: the latest closed session)")
    parser.add_argument(
        "--skip-market",
        action="store_true",
        help="submit only the shard runs (market data for the window and lookback is stored)",
    )
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    end = pd.Timestamp(args.end) if args.end else calendar.latest_closed_session()
    market, shard_runs = sharded_backfill(BackfillPlan.ending(end, args.days), args.shards)
    client = DagsterGraphQLClient(args.host, port_number=args.port, use_https=args.https)
    if not args.skip_market:
        run_id = submit(client, args.location, market)
        print(f"market run {run_id} queued ({len(market.assets)} assets, {market.tags})")
        status = wait_for(client, run_id, args.poll_seconds, print)
        if status is not DagsterRunStatus.SUCCESS:
            print(
                f"market run {run_id} ended {status.value}: no shard run submitted. When it (or "
                "its automatic retry) has succeeded, run again with --skip-market.",
                file=sys.stderr,
            )
            return 1
    for run in shard_runs:
        print(f"shard run {submit(client, args.location, run)} queued ({run.tags})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
