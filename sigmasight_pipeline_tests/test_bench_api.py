"""The read API benchmark's book loads into the current schema (the blocks tables of
sql/0024 included) with the shape the benchmark reports, and the views read it back."""

from __future__ import annotations

from sigmasight_pipeline.benchmarks import api_book
from sigmasight_pipeline.resources.database import connect


def test_the_api_benchmark_book_loads_with_its_shape(isolated_db_url):
    counts = api_book.load_book(isolated_db_url)
    portfolios = api_book.USERS * api_book.PORTFOLIOS_PER_USER
    positions = portfolios * api_book.POSITIONS
    options = portfolios * 15  # 15 options per portfolio
    assert counts["portfolios"] == portfolios
    assert counts["positions"] == positions
    assert counts["position_values"] == positions * api_book.SESSIONS
    assert counts["position_greeks"] == options * api_book.SESSIONS
    assert counts["portfolio_snapshots"] == portfolios * api_book.SESSIONS
    with connect(isolated_db_url) as conn:
        sources = dict(
            conn.execute(
                "SELECT source, count(*) FROM sigmasight.position_greeks GROUP BY source"
            ).fetchall()
        )
        unpriced = conn.execute(
            "SELECT count(*) FROM sigmasight.position_values WHERE market_value IS NULL"
        ).fetchone()
    assert sources == {"model": options * api_book.SESSIONS}
    assert unpriced == (0,)
