"""Portfolio CSV intake: parse and validate a file in the seed format (pure, no database).

Format (PRD 3.1)::

    ticker,quantity,entry_price,entry_date,tags
    AAPL,1000,150.00,2024-01-15,"momentum,tech"
    MSFT,-500,380.00,2024-01-20,"hedge,tech"
    AAPL240119C00150000,10,5.50,2024-01-10,"hedge,options"

Stocks: positive quantity = long, negative = short. Options: OCC symbols, quantity in contracts.
The optional columns: `tags`, and `target_price` / `downside_price` (the position's target and
downside price per unit, set from the load's effective session; a downside needs a target;
a blank cell sets nothing). Files without them load as before. Tolerated: a UTF-8 (or UTF-16)
BOM, CRLF or CR line ends, blank lines, surrounding spaces in headers and cells, header case
and spacing (`Entry Price`), lower-case tickers, an `O:` prefix or OSI space padding on option
symbols, and `$`, thousands separators and accounting parentheses in numbers (`$1,234.50`,
`1,000`, `(500)`).

Validation is a pandera `DataFrameSchema` run lazily, so every problem in the file is reported
at once as a `RowError` whose `row` is the 1-based line number in the file (header = line 1).
Limits: MAX_FILE_BYTES (checked before reading) and MAX_ROWS data rows. A header without rows
is rejected unless `allow_empty` (`sigmasight ingest --allow-close-all`: a file that closes
every position). Decoding and tokenizing are in `csv_table`.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from sigmasight_pipeline.analytics.instruments import (
    OCC_FORMAT_HINT,
    describe_positions,
    match_mask,
    normalize_symbols,
    option_like_mask,
    parse_occ_symbols,
    stock_symbol_mask,
)
from sigmasight_pipeline.csv_table import (
    RowError,
    Table,
    decode_text,
    shorten,
    to_number,
    tokenize,
)

__all__ = [
    "COLUMNS",
    "MAX_FILE_BYTES",
    "MAX_ROWS",
    "OPTIONAL_COLUMNS",
    "POSITION_COLUMNS",
    "REQUIRED_COLUMNS",
    "ParsedPortfolio",
    "PortfolioCSVError",
    "RowError",
    "error_report",
    "read_portfolio_csv",
    "validate_portfolio_text",
]

MAX_FILE_BYTES = 50 * 1024 * 1024  # 50 MB, checked before the file is read
MAX_ROWS = 200_000  # data rows (blank lines not counted)

REQUIRED_COLUMNS = ("ticker", "quantity", "entry_price", "entry_date")
OPTIONAL_COLUMNS = ("tags", "target_price", "downside_price")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
POSITION_COLUMNS = [
    "symbol",
    "quantity",
    "entry_price",
    "entry_date",
    "tags",
    "position_type",
    "underlying",
    "option_right",
    "strike",
    "expiry",
    "multiplier",
    "target_price",
    "downside_price",
    "line",
]

ISO_DATE = r"\d{4}-\d{2}-\d{2}"
# Check names (pandera reports them in failure_cases) and the reason each one gives.
REASONS = {
    "required": "a value is required",
    "ticker_malformed_occ": f"malformed OCC option symbol (expected {OCC_FORMAT_HINT})",
    "ticker_format": (
        "not a stock ticker (1-6 letters/digits, optional .A/-B class suffix) "
        f"nor an OCC option symbol ({OCC_FORMAT_HINT})"
    ),
    "occ_expiry_date": "the option's expiry (YYMMDD in the OCC symbol) is not a real date",
    "occ_strike": "the option's strike (last 8 digits of the OCC symbol) must be positive",
    "duplicate_ticker": "duplicate ticker",
    "numeric": "not a number",
    "non_zero": "quantity must be non-zero (positive = long, negative = short)",
    "whole_contracts": "an option quantity must be a whole number of contracts",
    "positive": "entry price must be positive",
    "target_positive": "target price must be positive",
    "downside_positive": "downside price must be positive",
    "downside_needs_target": "a downside_price needs a target_price on the same row",
    "iso_date": "not an ISO date (YYYY-MM-DD)",
    "real_date": "not a real calendar date",
    "not_future": "entry date is in the future",
    "option_expired": "entry date is after the option's expiry",
}


class PortfolioCSVError(ValueError):
    """A rejected portfolio file; `errors` lists every problem found."""

    def __init__(self, path: Path | str, errors: list[RowError], shown: int = 5) -> None:
        self.path = Path(path)
        self.errors = list(errors)
        lines = [f"  {error}" for error in self.errors[:shown]]
        if len(self.errors) > shown:
            lines.append(f"  ... and {len(self.errors) - shown} more")
        count = len(self.errors)
        summary = f"{self.path}: rejected, {count} error{'s' if count != 1 else ''}"
        super().__init__("\n".join([summary, *lines]))


@dataclass(frozen=True, eq=False)
class ParsedPortfolio:
    """A validated portfolio file: one row per position, columns POSITION_COLUMNS."""

    path: Path
    positions: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return len(self.positions)


def error_report(
    path: Path | str, errors: list[RowError], rejected_at: datetime | None = None
) -> dict:
    """The JSON-serializable report written next to a rejected file (`<file>.errors.json`)."""
    when = rejected_at or datetime.now(UTC)
    return {
        "file": str(path),
        "rejected_at": when.isoformat(),
        "error_count": len(errors),
        "errors": [asdict(error) for error in errors],
    }


def read_portfolio_csv(
    path: Path | str, today: date | None = None, allow_empty: bool = False
) -> ParsedPortfolio:
    """Parse and validate a portfolio CSV; PortfolioCSVError lists every problem found.
    `allow_empty`: a header without rows is a valid file with no positions."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PortfolioCSVError(
            path,
            [
                RowError(
                    None,
                    "file",
                    None,
                    f"file is {size:,} bytes; the limit is "
                    f"{MAX_FILE_BYTES:,} bytes ({MAX_FILE_BYTES // 2**20} MB)",
                )
            ],
        )
    return validate_portfolio_text(
        path.read_bytes(), path=path, today=today, allow_empty=allow_empty
    )


def validate_portfolio_text(
    data: bytes | str,
    path: Path | str = "<memory>",
    today: date | None = None,
    allow_empty: bool = False,
) -> ParsedPortfolio:
    """`read_portfolio_csv` on content already in memory (bytes as read from disk, or text)."""
    path = Path(path)
    today = today or date.today()
    if isinstance(data, bytes) and len(data) > MAX_FILE_BYTES:
        raise PortfolioCSVError(path, [RowError(None, "file", None, "file is too large")])
    text, error = decode_text(data)
    if error is not None:
        raise PortfolioCSVError(path, [error])
    table = tokenize(text, MAX_ROWS, allow_empty=allow_empty)
    if table.fatal:
        raise PortfolioCSVError(path, table.errors)
    checks = _Checks(table.cells, today)
    errors = sorted(table.errors + _validate(table, checks), key=_error_order)
    if errors:
        raise PortfolioCSVError(path, errors)
    return ParsedPortfolio(path, _positions(checks))


# ---------------------------------------------------------------------------------------------
# Validation


class _Checks:
    """Each column parsed once, vectorized; the pandera checks read these masks."""

    def __init__(self, cells: pd.DataFrame, today: date) -> None:
        self.cells = cells
        self.today = today
        empty = pd.Series("", index=cells.index, dtype=object)
        col = {name: cells.get(name, empty) for name in COLUMNS}
        self.blank = {name: col[name] == "" for name in COLUMNS}
        self.symbol = normalize_symbols(col["ticker"])
        self.occ = parse_occ_symbols(self.symbol)
        self.is_stock = stock_symbol_mask(self.symbol, self.occ)
        unknown = ~self.is_stock & ~self.occ["is_occ"]
        like = option_like_mask(self.symbol[unknown])
        self.option_like = like.reindex(cells.index, fill_value=False).astype(bool)
        self.quantity = to_number(col["quantity"])
        self.entry_price = to_number(col["entry_price"])
        self.iso = match_mask(col["entry_date"], ISO_DATE)
        self.entry_date = pd.to_datetime(
            col["entry_date"].where(self.iso), format="%Y-%m-%d", errors="coerce"
        )
        self.tags = col["tags"]
        self.target_price = to_number(col["target_price"])
        self.downside_price = to_number(col["downside_price"])

        self._masks: dict[str, pd.Series] = {}
        duplicated = self.symbol[self.symbol.duplicated(keep=False) & ~self.blank["ticker"]]
        self.duplicates = {
            s: [int(r) for r in rows] for s, rows in duplicated.groupby(duplicated).groups.items()
        }

    def _passes(self, name: str) -> pd.Series:
        occ, is_option = self.occ, self.occ["is_occ"]
        quantity, entry_date = self.quantity, self.entry_date
        if name == "ticker_malformed_occ":
            return self.is_stock | is_option | ~self.option_like
        if name == "ticker_format":
            return self.is_stock | is_option | self.option_like
        if name == "occ_expiry_date":
            return ~is_option | occ["expiry"].notna()
        if name == "occ_strike":
            return ~is_option | (occ["strike"] > 0)
        if name == "duplicate_ticker":
            return ~self.symbol.duplicated(keep=False)
        if name == "quantity_numeric":
            return quantity.notna()
        if name == "non_zero":
            return quantity.isna() | (quantity != 0)
        if name == "whole_contracts":
            return ~is_option | quantity.isna() | (quantity == np.round(quantity))
        if name == "entry_price_numeric":
            return self.entry_price.notna()
        if name == "positive":
            return self.entry_price.isna() | (self.entry_price > 0)
        if name == "target_price_numeric":
            return self.target_price.notna()
        if name == "target_positive":
            return self.target_price.isna() | (self.target_price > 0)
        if name == "downside_price_numeric":
            return self.downside_price.notna()
        if name == "downside_positive":
            return self.downside_price.isna() | (self.downside_price > 0)
        if name == "downside_needs_target":
            return ~self.blank["target_price"]
        if name == "iso_date":
            return self.iso
        if name == "real_date":
            return ~self.iso | entry_date.notna()
        if name == "not_future":
            return entry_date.isna() | (entry_date <= pd.Timestamp(self.today))
        if name == "option_expired":
            return (
                ~is_option
                | entry_date.isna()
                | occ["expiry"].isna()
                | (entry_date <= occ["expiry"])
            )
        raise KeyError(name)

    def mask(self, name: str) -> pd.Series:
        """True where the row passes check `name` (blank cells pass all but `required_*`)."""
        if name not in self._masks:
            blank = self.blank[_CHECK_COLUMN[name]]
            passes = ~blank if name.startswith("required") else self._passes(name) | blank
            self._masks[name] = passes.astype(bool)
        return self._masks[name]


# check name -> the column it belongs to
_CHECK_COLUMN = {
    "required_ticker": "ticker",
    "ticker_malformed_occ": "ticker",
    "ticker_format": "ticker",
    "occ_expiry_date": "ticker",
    "occ_strike": "ticker",
    "duplicate_ticker": "ticker",
    "required_quantity": "quantity",
    "quantity_numeric": "quantity",
    "non_zero": "quantity",
    "whole_contracts": "quantity",
    "required_entry_price": "entry_price",
    "entry_price_numeric": "entry_price",
    "positive": "entry_price",
    "required_entry_date": "entry_date",
    "iso_date": "entry_date",
    "real_date": "entry_date",
    "not_future": "entry_date",
    "option_expired": "entry_date",
    "target_price_numeric": "target_price",
    "target_positive": "target_price",
    "downside_price_numeric": "downside_price",
    "downside_positive": "downside_price",
    "downside_needs_target": "downside_price",
}


def _reason(name: str) -> str:
    if name.startswith("required"):
        return REASONS["required"]
    if name.endswith("_numeric"):
        return REASONS["numeric"]
    return REASONS[name]


def _schema(checks: _Checks) -> pa.DataFrameSchema:
    """The file's schema: required/optional columns, nothing else, and every row-level check."""

    def check(name: str) -> pa.Check:
        return pa.Check(
            lambda s: checks.mask(name).reindex(s.index),
            name=name,
            error=name,
            ignore_na=False,
        )

    def column(name: str) -> pa.Column:
        names = [c for c, col in _CHECK_COLUMN.items() if col == name]
        return pa.Column(
            checks=[check(c) for c in names],
            required=name in REQUIRED_COLUMNS,
            nullable=False,
        )

    return pa.DataFrameSchema(
        {name: column(name) for name in COLUMNS}, strict=True, name="portfolio CSV"
    )


def _validate(table: Table, checks: _Checks) -> list[RowError]:
    """Run the schema lazily and turn its failure cases into RowErrors sorted by line."""
    try:
        _schema(checks).validate(table.cells, lazy=True)
        return []
    except SchemaErrors as exc:
        failures = exc.failure_cases
    return [_row_error(f, table, checks) for f in failures.itertuples(index=False)]


def _error_order(error: RowError) -> tuple[int, int]:
    """File-level errors first, then by line, then in column order."""
    column = COLUMNS.index(error.field) if error.field in COLUMNS else -1
    return (error.row or 0, column)


def _row_error(failure, table: Table, checks: _Checks) -> RowError:
    """One pandera failure case as a RowError with a reason a person can act on."""
    name = str(failure.check)
    if name == "column_in_schema":
        column = str(failure.failure_case)
        close = difflib.get_close_matches(column, COLUMNS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        optional = ", ".join(OPTIONAL_COLUMNS)
        reason = f"unknown column ({hint}expected {', '.join(COLUMNS)}; {optional} optional)"
        return RowError(table.header_line, column, None, reason)
    if name == "column_in_dataframe":
        column = str(failure.failure_case)
        return RowError(table.header_line, column, None, "required column is missing")
    row = int(failure.index)
    column = str(failure.column)
    value = shorten(table.cells.at[row, column])
    if name not in _CHECK_COLUMN:  # a built-in pandera check: keep its own wording
        return RowError(row, column, value, name)
    reason = _reason(name)
    if name == "duplicate_ticker":
        symbol = checks.symbol.at[row]
        others = [r for r in checks.duplicates.get(symbol, []) if r != row]
        shown = ", ".join(map(str, others[:5])) + (", ..." if len(others) > 5 else "")
        reason = f"duplicate ticker {symbol} (also on line{'s' if len(others) > 1 else ''} {shown})"
    elif name == "not_future":
        reason = f"{REASONS['not_future']} (today is {checks.today.isoformat()})"
    elif name == "option_expired":
        expiry = checks.occ["expiry"].at[row].date().isoformat()
        reason = f"{REASONS['option_expired']} ({expiry}, from {checks.symbol.at[row]})"
    return RowError(row, column, value, reason)


# ---------------------------------------------------------------------------------------------
# The result


def _split_tags(cells: pd.Series) -> list[list[str]]:
    """Comma-separated tags: stripped, empty ones dropped, duplicates dropped, order kept."""
    split: dict[str, list[str]] = {}
    for cell in pd.unique(cells.to_numpy(dtype=object)):  # few distinct cells in practice
        parts = (part.strip() for part in cell.split(","))
        split[cell] = list(dict.fromkeys(part for part in parts if part))
    return [split[cell].copy() for cell in cells.tolist()]


def _positions(checks: _Checks) -> pd.DataFrame:
    """The validated rows as POSITION_COLUMNS (index 0..n-1, file order; `line` kept)."""
    index = checks.cells.index
    described = describe_positions(checks.symbol, checks.quantity, occ=checks.occ)
    positions = pd.DataFrame(
        {
            "symbol": checks.symbol.to_numpy(dtype=object),
            "quantity": checks.quantity.to_numpy(dtype=float),
            "entry_price": checks.entry_price.to_numpy(dtype=float),
            "entry_date": checks.entry_date.dt.date.to_numpy(dtype=object),
            "tags": pd.Series(_split_tags(checks.tags), index=index, dtype=object).to_numpy(),
            "target_price": checks.target_price.to_numpy(dtype=float),
            "downside_price": checks.downside_price.to_numpy(dtype=float),
        }
    )
    for name in ("position_type", "underlying", "option_right", "strike", "expiry", "multiplier"):
        positions[name] = described[name].to_numpy()
    positions["line"] = index.to_numpy(dtype=int)
    return positions[POSITION_COLUMNS]
