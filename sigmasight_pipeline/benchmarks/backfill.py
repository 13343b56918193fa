"""Benchmark: the 90-session demo backfill as one run against one run per partition.

Both sides start from a fresh database with the demo portfolios. The single-run side is
`sigmasight backfill` in its own process (the market-data run over the window and its lookback
history, then one run of every other asset over the window). The per-partition side launches
`dagster asset materialize --partition D` in a new process per partition, as Dagster's backfill
daemon does (the jobs' in-process executor on both sides); N_HISTORY_RUNS history
days and N_WINDOW_RUNS window days are timed and the rest is extrapolated from their mean (the
notes say so).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import pandas as pd

from sigmasight_pipeline.resources.database import (
    PROJECT_ROOT,
    create_database,
    database_url,
    drop_database,
    migrate,
    transaction,
)

END = "2026-11-20"
N_HISTORY_RUNS = 3
N_WINDOW_RUNS = 10


def _fresh_database(server: str) -> tuple[str, str, dict[str, str]]:
    from sigmasight_pipeline.portfolios import load_demo_portfolios

    name = f"sigmasight_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    migrate(url)
    with transaction(url) as conn:
        load_demo_portfolios(conn, today=pd.Timestamp(END).date())
    home = tempfile.mkdtemp(prefix="sigmasight_bench_dagster_")
    os.symlink(PROJECT_ROOT / "dagster.yaml", os.path.join(home, "dagster.yaml"))
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DAGSTER_HOME": home,
        "SIGMASIGHT_NO_DOTENV": "1",  # leave the checkout's .env (the user's instance) alone
        "SIGMASIGHT_DAGSTER_PG_URL": "postgresql+psycopg2://" + url.split("://", 1)[1],
    }
    return name, url, env


def _timed(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    # cwd outside the checkout: the dagster CLI would otherwise load the checkout's .env.
    done = subprocess.run(
        command, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def _materialize_cmd(assets: list[str], partition: str | None = None, rng=None) -> list[str]:
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "sigmasight_pipeline.definitions", "--select", ",".join(assets),
    ]  # fmt: skip
    if partition:
        command += ["--partition", partition]
    if rng:
        command += ["--partition-range", f"{rng[0]}...{rng[1]}"]
    return command


def run() -> list[dict]:
    from sigmasight_pipeline import runs
    from sigmasight_pipeline.benchmarks.scale import rows_written, schema_tables

    server = database_url()
    plan = runs.BackfillPlan.ending(pd.Timestamp(END))
    partitioned = runs.partitioned_assets()
    market = [a for a in runs.MARKET_ASSETS if a in partitioned]
    unpartitioned = [a for a in runs.MARKET_ASSETS if a not in partitioned]
    analytics = [a for a in partitioned if a not in market]
    created = []
    try:
        # One backfill (two runs: market data over the history and window, then the rest over
        # the window), one process.
        name, url, env = _fresh_database(server)
        created.append(name)
        before = schema_tables(url)
        single = _timed([sys.executable, "-m", "sigmasight_pipeline.cli", "backfill",
                         "--end", END], env)  # fmt: skip
        rows = rows_written(before, schema_tables(url))

        # One run per partition, a process each, on another fresh database.
        name, url, env = _fresh_database(server)
        created.append(name)
        _timed(_materialize_cmd(unpartitioned), env)
        history_keys = [plan.key(d) for d in plan.history]
        history_times = [
            _timed(_materialize_cmd(market, key), env) for key in history_keys[:N_HISTORY_RUNS]
        ]
        # The rest of the lookback history (untimed setup), then the window days one by one.
        _timed(_materialize_cmd(market, rng=(history_keys[N_HISTORY_RUNS], history_keys[-1])), env)
        window_keys = [plan.key(d) for d in plan.window]
        window_times = [
            _timed(_materialize_cmd(market + analytics, key), env)
            for key in window_keys[:N_WINDOW_RUNS]
        ]
    finally:
        for name in created:
            drop_database(server, name)
    per_history = statistics.mean(history_times)
    per_window = statistics.mean(window_times)
    per_partition = per_history * len(plan.history) + per_window * len(plan.window)
    return [
        {
            "benchmark": f"Demo backfill, {len(plan.window)} sessions + {len(plan.history)} "
            "lookback, 3 portfolios / 76 positions",
            "ours_s": single,
            "reference": "one run per partition, a process each (as the backfill daemon)",
            "reference_s": per_partition,
            "ratio": per_partition / single,
            "rows_written": rows,
            "rows_per_s": rows / single,
            "notes": (
                f"single: `sigmasight backfill` in one process, {rows:,} rows written. "
                f"per-partition: {N_HISTORY_RUNS} history runs measured (mean "
                f"{per_history:.2f} s) and {N_WINDOW_RUNS} window runs measured (mean "
                f"{per_window:.2f} s), extrapolated to {len(plan.history)} + "
                f"{len(plan.window)} runs"
            ),
        }
    ]


def main() -> None:
    for row in run():
        print(row)


if __name__ == "__main__":
    main()
