"""Launch a sharded backfill on a Dagster deployment (what the weekly_backfill schedule does).

    kubectl -n dagster port-forward svc/dagster-dagster-webserver 8080:80 &
    uv run python deploy/launch_sharded_backfill.py --port 8080 --shards 8

It submits the backfill's market run: the market data assets (`runs.MARKET_ASSETS`) over the
window and its lookback, once for the whole book, tagged `sigmasight/stage=market` and
`sigmasight/shards=n`. When that run succeeds, the code location's `backfill_next_stage` sensor
requests the symbol analytics run, and when that succeeds, the n shard runs of the portfolio
assets over the window, each tagged `sigmasight/shard` = "i/n" (the portfolios whose
id % n == i, see `scope.py`); the run queue starts them as its limits allow (deploy/README.md),
on Kubernetes each in its own pod.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from dagster_graphql import DagsterGraphQLClient

from sigmasight_pipeline import calendar
from sigmasight_pipeline.runs import BackfillPlan, market_run
from sigmasight_pipeline.settings import BACKFILL_DAYS

# The chart names the code location after its user deployment (deploy/helm/values.yaml).
DEFAULT_LOCATION = "sigmasight-pipeline"
# What Dagster names the repository of a Definitions object and its job of all assets (the job
# `runs.materialize` runs locally).
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"


def market_run_request(end: pd.Timestamp, days: int, shards: int) -> tuple[list[str], dict]:
    """The assets and tags of a sharded backfill's market run."""
    run = market_run(BackfillPlan.ending(end, days), shards)
    return list(run.assets), run.tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="localhost", help="Dagster webserver host")
    parser.add_argument("--port", type=int, default=8080, help="Dagster webserver port")
    parser.add_argument("--https", action="store_true", help="the webserver speaks HTTPS")
    parser.add_argument("--location", default=DEFAULT_LOCATION, help="code location name")
    parser.add_argument("--shards", type=int, required=True, help="number of shard runs")
    parser.add_argument("--days", type=int, default=BACKFILL_DAYS, help="sessions in the window")
    parser.add_argument("--end", help="last trading day (default: the latest closed session)")
    args = parser.parse_args(argv)

    end = pd.Timestamp(args.end) if args.end else calendar.latest_closed_session()
    assets, tags = market_run_request(end, args.days, args.shards)
    client = DagsterGraphQLClient(args.host, port_number=args.port, use_https=args.https)
    run_id = client.submit_job_execution(
        ASSET_JOB,
        repository_location_name=args.location,
        repository_name=REPOSITORY,
        asset_selection=assets,
        tags=tags,
    )
    print(f"market run {run_id} queued; its {args.shards} shard runs follow when it succeeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
