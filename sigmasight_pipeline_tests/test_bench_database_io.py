"""The IO benchmark's honesty checks: the frame comparison it reports and the RSS peak sampler
(no database)."""

from __future__ import annotations

import time

import numpy as np

from sigmasight_pipeline.benchmarks.database_io import (
    FLOAT_COLUMNS,
    frame_diff,
    make_frame,
    peak_rss_delta,
)

MB = 1_000_000


def test_frame_diff_ignores_row_order_and_dtypes():
    frame = make_frame(rows=1_000, sessions=10)
    read = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    read["portfolio_id"] = read["portfolio_id"].astype("int64")  # as fetchall gives them
    read["trade_date"] = read["trade_date"].astype("datetime64[ms]")  # as Arrow gives them
    diff = frame_diff(frame, read)
    assert diff.equal and diff.rows == 1_000 and diff.max_abs_diff == 0.0


def test_frame_diff_reports_each_kind_of_difference():
    frame = make_frame(rows=1_000, sessions=10)
    floats, text, short = frame.copy(), frame.copy(), frame.iloc[:-1]
    floats.loc[17, FLOAT_COLUMNS[3]] += 0.25
    text.loc[3, "price_source"] = "missing"
    assert frame_diff(frame, floats).max_abs_diff == 0.25
    assert not frame_diff(frame, floats).equal
    assert frame_diff(frame, text).mismatched == ("price_source",)
    assert frame_diff(frame, short).mismatched == ("row count",)


def test_peak_rss_delta_sees_memory_freed_before_the_block_ends():
    with peak_rss_delta() as delta:
        block = np.ones(80 * MB // 8)  # touched pages: 80 MB of RSS
        time.sleep(0.2)  # several samples while it is held
        del block
    assert delta[0] >= 60 * MB
