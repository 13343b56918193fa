"""Tables written in blocks of rows per portfolio-day (sql/0024): which tables, where their
rows are stored, and how the IO manager packs the rows an asset writes."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sigmasight_pipeline.resources.tables import portfolio_day_blocks, table_columns


@dataclass(frozen=True)
class Blocks:
    """Where a table written in blocks of rows per portfolio-day (a row per position or
    scenario) is stored: `table`, one row per portfolio-day, each other column an array in
    the block's order (sql/0024). The table's own name is a view that unnests them and
    computes the `derived` columns (exact float8 products of stored ones), which are left out
    of the blocks."""

    table: str
    derived: tuple[str, ...] = ()


# Storage cost of a row per position-day: about 28 B of tuple header and line pointer, 7 B of
# index entry and 8 B of keys; a block pays them once for its 50 rows.
BLOCKS: dict[str, Blocks] = {
    "position_values": Blocks(
        "position_value_blocks", derived=("market_value", "unrealized_pnl", "price_source")
    ),
    "position_greeks": Blocks(
        "position_greek_blocks", derived=("dollar_delta", "delta_adjusted_exposure")
    ),
    "position_exposures": Blocks("position_exposure_blocks"),
    "position_risk_contributions": Blocks(
        "position_risk_contribution_blocks", derived=("component_vol_usd",)
    ),
    "position_stress_pnl": Blocks("position_stress_pnl_blocks"),
    "portfolio_stress_results": Blocks(
        "portfolio_stress_result_blocks", derived=("pnl_pct_of_gross",)
    ),
    "portfolio_sector_exposures": Blocks(
        "portfolio_sector_exposure_blocks",
        derived=("gross_exposure_usd", "net_exposure_usd", "active_weight"),
    ),
    "portfolio_risk_decomposition": Blocks("portfolio_risk_decomposition_blocks"),
}


def stored_table(table: str) -> str:
    """The table `table`'s rows are stored in: its blocks table, or itself."""
    return BLOCKS[table].table if table in BLOCKS else table


def stored_rows(url: str, schema: str, table: str, frame: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Where and how rows written to `table` are stored: its blocks table and the rows as
    blocks (without the columns its view derives), or `table` and the rows as they are."""
    if table not in BLOCKS:
        return table, frame
    blocks = BLOCKS[table]
    columns = table_columns(url, schema, blocks.table)
    return blocks.table, portfolio_day_blocks(frame.drop(columns=list(blocks.derived)), columns)
