"""The scale benchmark's parts that run fast: the CLI output it parses, the rows it reports and
the sampled subprocess it measures with (real processes, no database)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sigmasight_pipeline.benchmarks.processes import BenchmarkFailure, ProcessCost, run_sampled
from sigmasight_pipeline.benchmarks.scale_report import (
    Measurement,
    Outcome,
    StageTime,
    report,
    stage_times,
)

ONE_SHARD_OUTPUT = """\
database: starting/connecting and applying migrations ...
market 2026-06-01..2026-11-20 (123 sessions): one run
  [  0.5s] prices: started
  [ 12.0s] prices: done
  [ 12.5s] returns: started
  [ 20.5s] returns: done
portfolios 2026-11-13..2026-11-20 (6 sessions): one run
  [  1.0s] position_values: started
  [  1.5s] position_greeks: started
  [  4.0s] position_values: done
  [  9.5s] position_greeks: done
  [ 10.0s] portfolio_risk_metrics: started
  [ 11.0s] portfolio_risk_metrics: FAILED
run 1a2b3c4d succeeded: 123 sessions in 21.3 s
run 5e6f7a8b FAILED: 6 sessions in 11.8 s
"""

TWO_SHARD_OUTPUT = """\
market 2026-11-13..2026-11-20 (6 sessions): one run
  [  2.0s] prices: started
  [  3.0s] prices: done
symbols 2026-11-13..2026-11-20 (6 sessions): one run
portfolios 2026-11-13..2026-11-20 (6 sessions): 2 shard runs in parallel
run 1a2b3c4d succeeded: 6 sessions in 4.0 s
run 2b3c4d5e succeeded: 6 sessions in 7.5 s
run 3c4d5e6f succeeded: 6 sessions in 30.2 s
run 4d5e6f7a succeeded: 6 sessions in 28.9 s
"""


def test_stage_times_of_a_one_run_backfill():
    market, portfolios = stage_times(ONE_SHARD_OUTPUT)
    assert market == StageTime("market", 123, (21.3,), (("prices", 11.5), ("returns", 8.0)))
    assert portfolios.stage == "portfolios" and portfolios.sessions == 6
    assert portfolios.run_seconds == (11.8,)
    # steps that overlap are timed each from its own start; a failed step says so
    assert dict(portfolios.step_seconds) == pytest.approx(
        {"position_values": 3.0, "position_greeks": 8.0, "portfolio_risk_metrics (FAILED)": 1.0}
    )


def test_stage_times_of_a_sharded_backfill_take_the_slowest_shard():
    market, symbols, portfolios = stage_times(TWO_SHARD_OUTPUT)
    assert (market.run_seconds, symbols.run_seconds) == ((4.0,), (7.5,))
    assert portfolios.run_seconds == (30.2, 28.9)
    assert portfolios.seconds == 30.2
    assert portfolios.step_seconds == ()


def test_stage_times_of_the_old_cli_with_stage_names_in_two_words():
    output = (
        "market data 2026-06-01..2026-11-20 (123 sessions): one run\n"
        "portfolio analytics 2026-11-13..2026-11-20 (6 sessions): one run\n"
        "run 1a2b3c4d succeeded: 123 sessions in 40.0 s\n"
        "run 2b3c4d5e succeeded: 6 sessions in 15.5 s\n"
    )
    stages = stage_times(output)
    assert [(s.stage, s.sessions, s.seconds) for s in stages] == [
        ("market data", 123, 40.0),
        ("portfolio analytics", 6, 15.5),
    ]


def test_stage_times_of_output_without_stages():
    assert stage_times("database: starting\nsomething else\n") == ()


def _measurement(seconds: float, rss_mb: int, rows: int, shards: int = 1) -> Measurement:
    return Measurement(
        checkout="ours",
        portfolios=10,
        positions=500,
        days=5,
        end="2026-11-20",
        setup_seconds=3.0,
        backfill=ProcessCost(seconds, rss_mb * 1_000_000, rss_mb * 600_000, 10),
        rows_written=rows,
        tables={"positions": (500, 250_000), "position_values": (2_500, 500_000)},
        shards=shards,
        stages=stage_times(TWO_SHARD_OUTPUT if shards > 1 else ONE_SHARD_OUTPUT),
    )


def test_report_has_the_shards_row_with_the_one_shard_over_two_shard_wall():
    one = Outcome("ours", 10, 500, _measurement(60.0, 800, 9_000))
    two = Outcome("ours", 10, 500, _measurement(48.0, 1_000, 9_000, shards=2), shards=2)
    rows = report([one, two])
    by_name = {row["benchmark"]: row for row in rows if "benchmark" in row}
    assert list(by_name) == [
        "ours, 10 portfolios",
        "ours, 10 portfolios, 2 shards",
        "2 shards vs 1, 10 portfolios",
    ]
    ratio = by_name["2 shards vs 1, 10 portfolios"]
    assert ratio["wall_s"] == "1.25x"  # 60 / 48
    assert ratio["peak_rss_mb"] == "0.80x"  # 800 / 1,000
    assert ratio["rows_written"] == "1.00x"
    assert f"{os.cpu_count()} cores" in ratio["notes"] and "(the same)" in ratio["notes"]
    assert "--shards 2" in by_name["ours, 10 portfolios, 2 shards"]["notes"]
    assert (
        "portfolios 6 sessions 2 runs in parallel 30.2 / 28.9 s"
        in (by_name["ours, 10 portfolios, 2 shards"]["notes"])
    )
    # the per-table sizes have one column per 1-shard measurement only
    per_table = [row for row in rows if row.get("db_table") == "total"]
    assert len(per_table) == 1
    assert set(per_table[0]) == {"table", "db_table", "ours, 10 portfolios"}
    assert per_table[0]["ours, 10 portfolios"] == 750_000 / 2_500
    steps = [row for row in rows if "step" in row]
    assert [(row["stage"], row["step"]) for row in steps] == [
        ("market", "prices"),
        ("market", "returns"),
        ("portfolios", "position_values"),
        ("portfolios", "position_greeks"),
        ("portfolios", "portfolio_risk_metrics (FAILED)"),
    ]


def test_report_shards_row_when_the_sharded_run_failed():
    one = Outcome("ours", 10, 500, _measurement(60.0, 800, 9_000))
    two = Outcome("ours", 10, 500, error="`sigmasight backfill` exited with 1:\nboom", shards=2)
    rows = report([one, two])
    assert rows[1]["wall_s"] == "FAILED" and "boom" in rows[1]["notes"]
    assert rows[2]["benchmark"] == "2 shards vs 1, 10 portfolios"
    assert rows[2]["wall_s"] == "n/a"


def test_report_says_when_the_shards_wrote_other_rows():
    one = Outcome("ours", 10, 500, _measurement(60.0, 800, 9_000))
    two = Outcome("ours", 10, 500, _measurement(48.0, 1_000, 9_001, shards=2), shards=2)
    assert "(NOT the same)" in report([one, two])[2]["notes"]


def test_per_table_sizes_total_the_reference_tables_like_for_like():
    """Beside the total, a row sums each measurement over the tables the reference has (ours
    under a new name counted as the table they replace: the blocks tables as the table their
    view is named after, position_exposure_blocks as position_factor_exposures)."""
    ours = replace(
        _measurement(60.0, 800, 9_000),
        tables={
            "positions": (500, 250_000),
            "position_value_blocks": (50, 500_000),
            "position_stress_pnl_blocks": (50, 1_000_000),
            "position_exposure_blocks": (50, 100_000),
        },
    )
    reference = replace(
        _measurement(200.0, 4_000, 12_000),
        checkout="old",
        tables={
            "positions": (500, 250_000),
            "position_values": (2_500, 2_000_000),
            "position_factor_exposures": (2_500, 500_000),
        },
    )
    rows = report([Outcome("ours", 10, 500, ours), Outcome("old", 10, 500, reference)])
    totals = {
        row["db_table"]: row for row in rows if str(row.get("db_table", "")).startswith("total")
    }
    assert totals["total"]["ours, 10 portfolios"] == 1_850_000 / 2_500
    like = totals["total of the tables old has"]
    assert like["ours, 10 portfolios"] == 850_000 / 2_500  # the stress table left out
    assert like["old, 10 portfolios"] == 2_750_000 / 2_500


# --- run_sampled on real processes ----------------------------------------------------------

CHILD_HOLDING_MEMORY = (
    "import subprocess, sys\n"
    "code = 'b = bytearray(60_000_000); import time; time.sleep(1.0)'\n"
    "subprocess.run([sys.executable, '-c', code], check=True)\n"
)


def test_run_sampled_counts_the_children_in_the_tree_rss(tmp_path: Path):
    cost = run_sampled(
        [sys.executable, "-c", CHILD_HOLDING_MEMORY],
        env=dict(os.environ),
        cwd=tmp_path,
        log=tmp_path / "out.log",
        interval=0.05,
    )
    assert cost.peak_process_rss > 60_000_000  # the child's bytearray
    assert cost.peak_tree_rss > cost.peak_process_rss  # the parent is counted too
    assert cost.samples > 1


def test_run_sampled_names_the_exit_code_and_the_output_tail(tmp_path: Path):
    code = "print('loading'); print('ValueError: bad row 3'); raise SystemExit(3)"
    with pytest.raises(BenchmarkFailure, match=r"exited with 3:\nloading\nValueError: bad row 3"):
        run_sampled(
            [sys.executable, "-c", code], env=dict(os.environ), cwd=tmp_path, log=tmp_path / "l"
        )


def test_run_sampled_kills_the_tree_over_the_rss_limit(tmp_path: Path):
    with pytest.raises(BenchmarkFailure, match="limit 30 MB"):
        run_sampled(
            [sys.executable, "-c", CHILD_HOLDING_MEMORY],
            env=dict(os.environ),
            cwd=tmp_path,
            log=tmp_path / "out.log",
            rss_limit=30_000_000,
            interval=0.05,
        )
