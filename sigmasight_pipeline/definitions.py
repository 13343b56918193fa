"""The one Definitions object of the code location."""

from dagster import Definitions, load_assets_from_modules

from sigmasight_pipeline.assets import (
    concentration,
    correlation,
    decomposition,
    factors,
    greeks,
    market,
    portfolio,
    risk,
    stress,
    volatility,
)
from sigmasight_pipeline.assets.common import positions_spec
from sigmasight_pipeline.executor import step_threads_executor
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import PostgresPandasIOManager
from sigmasight_pipeline.resources.market_data import MarketDataResource
from sigmasight_pipeline.resources.read_api import SigmaSightReader
from sigmasight_pipeline.schedules import (
    backfill_next_stage,
    daily_after_close,
    daily_update_job,
    weekly_backfill,
)
from sigmasight_pipeline.sensors import portfolio_inbox_sensor

ASSET_MODULES = [
    market, portfolio, greeks, factors, risk, volatility, correlation, concentration,
    decomposition, stress,
]  # fmt: skip

defs = Definitions(
    assets=[
        positions_spec,
        *load_assets_from_modules(ASSET_MODULES),
    ],
    jobs=[daily_update_job],
    schedules=[daily_after_close, weekly_backfill],
    sensors=[portfolio_inbox_sensor, backfill_next_stage],
    resources={
        "io_manager": PostgresPandasIOManager(),
        "database": PostgresResource(),
        "market_data": MarketDataResource(),
        "reader": SigmaSightReader(),
    },
    # Every run (UI, sensor, schedules, CLI) executes its steps in the run worker's process (a
    # process per step costs seconds of start-up each), two steps at a time in threads (see
    # executor.py).
    executor=step_threads_executor,
)
