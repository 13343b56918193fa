"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sigmasight_pipeline_tests.fake_polygon import FakePolygon


@pytest.fixture
def fake_polygon() -> Iterator[FakePolygon]:
    """A fake Polygon server on 127.0.0.1 serving SyntheticMarket bars (API key "test-key").

    Set `.universe` (the stocks grouped-daily answers with), `.unknown`, `.page_size` or queue
    faults (`fail`, `slow`, `malformed`) before use; `.log` records every request.
    """
    import pandas as pd

    from sigmasight_pipeline.resources.synthetic import SyntheticMarket
    from sigmasight_pipeline_tests.fake_polygon import FakePolygon

    market = SyntheticMarket()

    def bars(symbol: str, days: list) -> pd.DataFrame:
        return market.daily_bars(pd.DataFrame({"symbol": [symbol] * len(days), "trade_date": days}))

    with FakePolygon(bars) as fake:
        yield fake


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """A throwaway, migrated database on the embedded server (or `DATABASE_URL`'s server),
    dropped at the end of the session; one per process, so pytest-xdist workers never share."""
    import os

    from sigmasight_pipeline.resources.database import (
        create_database,
        database_url,
        drop_database,
        migrate,
    )

    server = database_url()
    name = f"sigmasight_test_{os.getpid()}"
    url = create_database(server, name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(server, name)
