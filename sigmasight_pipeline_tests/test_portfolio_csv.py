"""Portfolio CSV parsing and validation (pure: no database)."""

from __future__ import annotations

import csv
import io
import json
import random
import string
from datetime import UTC, date, datetime, timedelta
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigmasight_pipeline import csv_table, portfolio_csv
from sigmasight_pipeline.analytics.instruments import (
    SymbolError,
    classify_symbol,
    describe_positions,
    position_type,
)
from sigmasight_pipeline.portfolio_csv import (
    MAX_FILE_BYTES,
    POSITION_COLUMNS,
    ParsedPortfolio,
    PortfolioCSVError,
    RowError,
    error_report,
    read_portfolio_csv,
    validate_portfolio_text,
)

DATA = Path(__file__).parent / "data"
DEMO = Path(__file__).parents[1] / "data" / "portfolios"
TODAY = date(2026, 11, 21)
HEADER = "ticker,quantity,entry_price,entry_date,tags"


def rejected(path_or_text: Path | str, today: date = TODAY) -> list[RowError]:
    """The errors a file (or CSV text) is rejected with."""
    with pytest.raises(PortfolioCSVError) as info:
        if isinstance(path_or_text, Path):
            read_portfolio_csv(path_or_text, today=today)
        else:
            validate_portfolio_text(path_or_text, today=today)
    return info.value.errors


def where(errors: list[RowError]) -> list[tuple[int | None, str]]:
    return [(e.row, e.field) for e in errors]


def parse(text: str, today: date = TODAY) -> pd.DataFrame:
    return validate_portfolio_text(text, today=today).positions


def write_big_portfolio(path: Path, rows: int, seed: int = 0) -> Path:
    """A valid file of `rows` positions: 2/3 stocks (4-letter tickers), 1/3 options."""
    rnd = random.Random(seed)
    tickers = ("".join(t) for t in product(string.ascii_uppercase, repeat=4))
    lines = [HEADER]
    start = date(2026, 5, 1)
    for i in range(rows):
        entry = (start + timedelta(days=i % 120)).isoformat()
        tags = rnd.choice(['"momentum,tech"', "hedge", "", '"value, options"'])
        if i % 3 == 2:
            symbol = f"SPY{27 + i % 2}0121{'CP'[i % 2]}{100000 + i:08d}"
            lines.append(
                f"{symbol},{rnd.choice([-5, 3, 10])},{rnd.uniform(1, 30):.2f},{entry},{tags}"
            )
        else:
            price = rnd.uniform(5, 500)
            lines.append(
                f"{next(tickers)},{rnd.choice([-500, 100, 1000])},{price:.2f},{entry},{tags}"
            )
    path.write_text("\n".join(lines) + "\n")
    return path


# --- valid files ------------------------------------------------------------------------------


def test_seed_format_from_the_prd() -> None:
    text = (
        "ticker,quantity,entry_price,entry_date,tags\n"
        'AAPL,1000,150.00,2024-01-15,"momentum,tech"\n'
        'MSFT,-500,380.00,2024-01-20,"hedge,tech"\n'
        'AAPL240119C00150000,10,5.50,2024-01-10,"hedge,options"\n'
    )
    parsed = validate_portfolio_text(text, path="seed.csv", today=date(2024, 2, 1))
    assert isinstance(parsed, ParsedPortfolio)
    assert parsed.path == Path("seed.csv") and len(parsed) == 3
    p = parsed.positions
    assert list(p.columns) == POSITION_COLUMNS
    assert p["symbol"].tolist() == ["AAPL", "MSFT", "AAPL240119C00150000"]
    assert p["quantity"].tolist() == [1000.0, -500.0, 10.0]
    assert p["entry_price"].tolist() == [150.0, 380.0, 5.5]
    assert p["entry_date"].tolist() == [date(2024, 1, 15), date(2024, 1, 20), date(2024, 1, 10)]
    assert p["tags"].tolist() == [["momentum", "tech"], ["hedge", "tech"], ["hedge", "options"]]
    assert p["position_type"].tolist() == ["LONG", "SHORT", "LC"]
    assert p["underlying"].tolist() == ["AAPL", "MSFT", "AAPL"]
    assert p["option_right"].tolist() == [None, None, "C"]
    assert p["strike"].iloc[2] == 150.0 and np.isnan(p["strike"].iloc[0])
    assert p["expiry"].tolist() == [None, None, date(2024, 1, 19)]
    assert p["multiplier"].tolist() == [1, 1, 100]
    assert p["line"].tolist() == [2, 3, 4]
    assert p["quantity"].dtype == float and p["entry_price"].dtype == float


def test_messy_export_is_tolerated() -> None:
    """BOM, CRLF, spaces around headers and cells, header case, blank lines, `$1,234.50`,
    `1,000`, `(500)`, lower-case tickers, `O:` prefix and OSI space padding."""
    raw = (DATA / "messy_valid.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    p = read_portfolio_csv(DATA / "messy_valid.csv", today=TODAY).positions
    assert p["symbol"].tolist() == ["AAPL", "MSFT", "AAPL270115C00200000", "SPY270115P00450000"]
    assert p["quantity"].tolist() == [1000.0, -500.0, 10.0, -2.0]
    assert p["entry_price"].tolist() == [1234.5, 380.0, 5.5, 3.0]
    assert p["position_type"].tolist() == ["LONG", "SHORT", "LC", "SP"]
    assert p["tags"].tolist() == [["momentum", "tech"], [], ["hedge", "options"], ["hedge"]]
    assert p["line"].tolist() == [3, 4, 6, 7]  # blank lines 2 and 5 still count


def test_tags_column_is_optional_and_tags_are_cleaned() -> None:
    p = parse("ticker,quantity,entry_price,entry_date\nAAPL,1,2,2026-01-02\n")
    assert p["tags"].tolist() == [[]]
    p = parse(
        f'{HEADER}\nAAPL,1,2,2026-01-02," b , a,,b , c "\nMSFT,1,2,2026-01-02," b , a,,b , c "\n'
    )
    assert p["tags"].tolist() == [["b", "a", "c"], ["b", "a", "c"]]
    p["tags"].iloc[0].append("x")  # each row owns its list
    assert p["tags"].iloc[1] == ["b", "a", "c"]


def test_target_price_columns_are_optional() -> None:
    old = parse(f"{HEADER}\nAAPL,1,2,2026-01-02,\n")  # a file without them: as before
    assert old["target_price"].isna().all() and old["downside_price"].isna().all()
    p = parse(
        f"{HEADER},Target Price,downside_price\n"
        'AAPL,1,2,2026-01-02,,250,170\nMSFT,1,2,2026-01-02,,"$1,234.5",\nNVDA,1,2,2026-01-02,,,\n'
    )
    assert p["target_price"].tolist()[:2] == [250.0, 1234.5] and np.isnan(p["target_price"][2])
    assert p["downside_price"].tolist()[0] == 170.0 and p["downside_price"][1:].isna().all()
    assert p["target_price"].dtype == float and p["downside_price"].dtype == float


def test_bad_target_prices() -> None:
    errors = rejected(
        f"{HEADER},target_price,downside_price\n"
        "AAPL,1,2,2026-01-02,,abc,\nMSFT,1,2,2026-01-02,,-5,0\nNVDA,1,2,2026-01-02,,,90\n"
    )
    assert [(e.row, e.field, e.reason) for e in errors] == [
        (2, "target_price", "not a number"),
        (3, "target_price", "target price must be positive"),
        (3, "downside_price", "downside price must be positive"),
        (4, "downside_price", "a downside_price needs a target_price on the same row"),
    ]


def test_column_order_header_spelling_and_crlf_or_cr_line_ends() -> None:
    text = "Entry Date,TAGS,Entry-Price,QUANTITY,Ticker\r"
    text += "2026-01-02,tech,2,1,aapl\r2026-01-03,,3,-4,msft\r"
    p = parse(text)
    assert p["symbol"].tolist() == ["AAPL", "MSFT"]
    assert p["quantity"].tolist() == [1.0, -4.0]
    assert p["line"].tolist() == [2, 3]


def test_trailing_empty_columns_from_spreadsheets_are_ignored() -> None:
    p = parse(f"{HEADER},,\nAAPL,1,2,2026-01-02,tech,,\n")
    assert p["symbol"].tolist() == ["AAPL"]


def test_utf16_export_is_read() -> None:
    data = f"{HEADER}\r\nAAPL,1,2,2026-01-02,tech\r\n".encode("utf-16")
    assert validate_portfolio_text(data, today=TODAY).positions["symbol"].tolist() == ["AAPL"]


def test_demo_portfolios_are_valid() -> None:
    files = sorted(DEMO.glob("*.csv"))
    assert len(files) >= 3
    for path in files:
        p = read_portfolio_csv(path, today=TODAY).positions
        assert (p["entry_date"] <= TODAY).all()
        options = p[p["multiplier"] == 100]
        assert (options["expiry"] > TODAY).all(), path.name
    main = read_portfolio_csv(DEMO / "demo_user_1__Long-Short Equity.csv", today=TODAY).positions
    counts = main["position_type"].value_counts()
    assert counts["LONG"] == 20 and counts["SHORT"] == 15
    assert (
        counts[["LC", "LP", "SC", "SP"]].sum() == 15
        and (counts[["LC", "LP", "SC", "SP"]] > 0).all()
    )
    gross = (main["quantity"].abs() * main["entry_price"] * main["multiplier"]).sum()
    assert 2.7e6 < gross < 3.3e6
    core = read_portfolio_csv(DEMO / "demo_user_2__Core Long.csv", today=TODAY).positions
    assert (core["position_type"] == "LONG").all() and len(core) == 10


# --- invalid files: every error, with its line and field --------------------------------------


def test_bad_option_symbols() -> None:
    errors = rejected(DATA / "bad_occ.csv")
    assert where(errors) == [
        (3, "ticker"),
        (4, "ticker"),
        (5, "ticker"),
        (6, "ticker"),
        (7, "ticker"),
    ]
    reasons = [e.reason for e in errors]
    assert "malformed OCC option symbol" in reasons[0] and "YYMMDD" in reasons[0]
    assert "expiry" in reasons[1] and "not a real date" in reasons[1]
    assert "strike" in reasons[2] and "positive" in reasons[2]
    assert "not a stock ticker" in reasons[3]
    assert errors[0].value == "AAPL2701C00200000"


def test_bad_quantities_and_prices() -> None:
    errors = rejected(DATA / "zero_quantity.csv")
    assert where(errors) == [
        (3, "quantity"),
        (4, "quantity"),
        (5, "quantity"),
        (6, "entry_price"),
        (7, "entry_price"),
        (8, "quantity"),
    ]
    assert [e.value for e in errors] == ["0", "abc", "", "0", "-3", "1.5"]
    assert "non-zero" in errors[0].reason
    assert errors[1].reason == "not a number"
    assert errors[2].reason == "a value is required"
    assert "positive" in errors[3].reason
    assert "whole number of contracts" in errors[5].reason


def test_bad_dates() -> None:
    errors = rejected(DATA / "future_date.csv")
    assert where(errors) == [(n, "entry_date") for n in (3, 4, 5, 6, 7)]
    assert "future" in errors[0].reason and "2026-11-21" in errors[0].reason
    assert "YYYY-MM-DD" in errors[1].reason
    assert "not a real calendar date" in errors[2].reason
    assert errors[3].reason == "a value is required"
    assert "after the option's expiry (2026-01-16" in errors[4].reason


def test_today_is_a_parameter() -> None:
    text = f"{HEADER}\nAAPL,1,2,2026-11-22,\n"
    assert len(parse(text, today=date(2026, 11, 22))) == 1
    assert where(rejected(text, today=date(2026, 11, 21))) == [(2, "entry_date")]


def test_missing_and_unknown_columns() -> None:
    errors = rejected(DATA / "missing_column.csv")
    assert [(e.row, e.field, e.reason) for e in errors] == [
        (1, "entry_price", "required column is missing")
    ]
    errors = rejected(DATA / "unknown_column.csv")
    assert where(errors) == [(1, "notes"), (1, "broker")]
    assert all("unknown column" in e.reason for e in errors)
    errors = rejected("ticker,quantity,entry_price,entry_date,tag\nAAPL,1,2,2026-01-02,x\n")
    assert where(errors) == [(1, "tag")] and "did you mean tags?" in errors[0].reason


def test_missing_columns_do_not_hide_row_errors() -> None:
    errors = rejected("Ticker,Quantity,Extra\nAAPL,0,x\n")
    assert sorted(where(errors), key=str) == sorted(
        [(1, "entry_price"), (1, "entry_date"), (1, "extra"), (2, "quantity")], key=str
    )


def test_duplicate_tickers_after_normalization() -> None:
    errors = rejected(DATA / "duplicate_ticker.csv")
    assert where(errors) == [
        (2, "ticker"),
        (4, "ticker"),
        (5, "ticker"),
        (6, "ticker"),
        (7, "ticker"),
    ]
    assert errors[0].reason == "duplicate ticker AAPL (also on lines 4, 5)"
    assert errors[3].reason == "duplicate ticker NVDA270115C00150000 (also on line 7)"
    assert errors[4].value == "O:NVDA270115C00150000"


def test_duplicate_header_column() -> None:
    errors = rejected(f"{HEADER},Ticker\nAAPL,1,2,2026-01-02,,AAPL\n")
    assert [(e.row, e.field, e.reason) for e in errors] == [
        (1, "ticker", "column appears more than once")
    ]


def test_empty_and_header_only_files() -> None:
    assert [(e.row, e.field) for e in rejected(DATA / "empty.csv")] == [(None, "file")]
    assert "empty" in rejected(DATA / "empty.csv")[0].reason
    assert [(e.row, e.field) for e in rejected(DATA / "header_only.csv")] == [(1, "file")]
    assert "no data rows" in rejected(DATA / "header_only.csv")[0].reason
    assert "empty" in rejected("\r\n  \n\n")[0].reason
    assert "--allow-close-all" in rejected(DATA / "header_only.csv")[0].reason
    # Allowed (a file that closes every position): no positions, the columns still checked.
    empty = read_portfolio_csv(DATA / "header_only.csv", today=TODAY, allow_empty=True)
    assert len(empty) == 0 and list(empty.positions.columns) == POSITION_COLUMNS
    with pytest.raises(PortfolioCSVError) as info:
        validate_portfolio_text("ticker,quantity,entry_price\n", allow_empty=True)
    assert where(info.value.errors) == [(1, "entry_date")]
    assert "empty" in rejected("\n\n")[0].reason  # no header: never allowed


def test_every_error_is_collected_with_file_line_numbers() -> None:
    text = (
        "\n"  # line 1: blank, the header is on line 2
        f"{HEADER}\r\n"
        "AAPL,0,1,2026-01-02,\r\n"
        "\r\n"
        "BADTICKER1,1,-1,2026-01-02,\r\n"
        "MSFT,x,1,2099-01-01,\r\n"
    )
    errors = rejected(text)
    assert where(errors) == [
        (3, "quantity"),
        (5, "ticker"),
        (5, "entry_price"),
        (6, "quantity"),
        (6, "entry_date"),
    ]


def test_ragged_rows_and_unbalanced_quotes_are_reported_by_line() -> None:
    errors = rejected(f"{HEADER}\nAAPL,1,2,2026-01-02,tech,EXTRA\nMSFT,0,2,2026-01-02,\n")
    assert [(e.row, e.field) for e in errors] == [(2, "row"), (3, "quantity")]
    assert "6 fields but the header has 5" in errors[0].reason
    errors = rejected(
        f'{HEADER}\nAAPL,0,2,2026-01-02,tech\nMSFT,1,2,2026-01-02,"tech\nNVDA,1,2,x,\n'
    )
    assert [(e.row, e.field) for e in errors] == [(2, "quantity"), (3, "row")]
    assert "from line 3 to line 4" in errors[1].reason


def test_binary_and_non_utf8_files() -> None:
    assert "UTF-8" in rejected(b"ticker\n\x80\x81")[0].reason
    assert "NUL" in rejected(f"{HEADER}\nAAPL\x00,1,2,2026-01-02,\n")[0].reason


def test_file_too_large_is_rejected_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "huge.csv"
    with big.open("wb") as f:  # sparse: no 50 MB write
        f.truncate(MAX_FILE_BYTES + 1)
    errors = rejected(big)
    assert [(e.row, e.field) for e in errors] == [(None, "file")]
    assert "50 MB" in errors[0].reason


def test_too_many_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portfolio_csv, "MAX_ROWS", 2)
    text = f"{HEADER}\nAAPL,1,2,2026-01-02,\nMSFT,1,2,2026-01-02,\n\nNVDA,1,2,2026-01-02,\n"
    errors = rejected(text)
    assert len(errors) == 1 and "3 data rows; the limit is 2" in errors[0].reason
    monkeypatch.setattr(portfolio_csv, "MAX_ROWS", 3)
    assert len(parse(text)) == 3  # blank lines do not count


def test_long_values_are_shortened_in_errors() -> None:
    errors = rejected(f"{HEADER}\nAAPL,{'9' * 500}x,2,2026-01-02,\n")
    assert errors[0].value is not None and len(errors[0].value) == 200
    assert errors[0].value.endswith("...")


# --- the error object and the JSON report ----------------------------------------------------


def test_error_message_and_report() -> None:
    path = DATA / "zero_quantity.csv"
    with pytest.raises(PortfolioCSVError) as info:
        read_portfolio_csv(path, today=TODAY)
    error = info.value
    message = str(error)
    assert str(path) in message and "6 errors" in message
    assert "line 3, quantity '0': quantity must be non-zero" in message
    assert "... and 1 more" in message
    assert error.path == path and len(error.errors) == 6

    when = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)
    report = error_report(path, error.errors, rejected_at=when)
    assert json.loads(json.dumps(report)) == report
    assert report["file"] == str(path)
    assert report["rejected_at"] == "2026-11-21T18:00:00+00:00"
    assert report["error_count"] == 6
    assert report["errors"][0] == {
        "row": 3,
        "field": "quantity",
        "value": "0",
        "reason": "quantity must be non-zero (positive = long, negative = short)",
    }
    assert (
        error_report("x.csv", [RowError(None, "file", None, "empty")])["errors"][0]["row"] is None
    )


# --- speed -----------------------------------------------------------------------------------


def test_100k_rows_parse_and_validate(tmp_path: Path) -> None:
    """Speed is measured by `make bench` (intake); this checks the big file's content."""
    path = write_big_portfolio(tmp_path / "big.csv", 100_000)
    parsed = read_portfolio_csv(path, today=TODAY)
    assert len(parsed) == 100_000
    assert parsed.positions["position_type"].isin(["LONG", "SHORT", "LC", "LP", "SC", "SP"]).all()


def test_100k_rows_with_errors_are_all_reported(tmp_path: Path) -> None:
    path = write_big_portfolio(tmp_path / "big.csv", 100_000)
    text = path.read_text().replace(",2026-05-01,", ",2026-05-32,")
    errors = rejected(text)
    assert len(errors) == 834 and {e.reason for e in errors} == {"not a real calendar date"}


# --- properties ------------------------------------------------------------------------------

stock_symbols = st.from_regex(r"[A-Z]{1,5}", fullmatch=True)
option_symbols = st.builds(
    lambda root, d, right, strike: f"{root}{d:%y%m%d}{right}{strike:08d}",
    st.from_regex(r"[A-Z]{1,5}", fullmatch=True),
    st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    st.sampled_from("CP"),
    st.integers(1, 99_999_999),
)


@st.composite
def portfolios(draw: st.DrawFn) -> list[tuple[str, float, float, date, list[str]]]:
    symbols = draw(
        st.lists(st.one_of(stock_symbols, option_symbols), min_size=1, max_size=20, unique=True)
    )
    rows = []
    for symbol in symbols:
        is_option = len(symbol) > 9
        quantity = draw(
            st.integers(-10_000, 10_000).filter(bool).map(float)
            if is_option
            else st.floats(-1e6, 1e6).map(lambda q: round(q, 4)).filter(bool)
        )
        price = draw(st.floats(0.01, 1e5).map(lambda p: round(p, 4)))
        entry = draw(st.dates(date(2000, 1, 1), date(2026, 11, 21)))
        if is_option:
            expiry = classify_symbol(symbol).expiry  # type: ignore[union-attr]
            entry = min(entry, expiry)
        tags = draw(st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), max_size=3))
        rows.append((symbol, quantity, price, entry, list(dict.fromkeys(tags))))
    return rows


def _messy_number(value: float, draw: st.DrawFn) -> str:
    style = draw(st.sampled_from(["plain", "dollar", "thousands", "parens", "spaces"]))
    if style == "dollar":
        return ("-$" if value < 0 else "$") + f"{abs(value):.4f}"
    if style == "thousands":
        return f'"{value:,.4f}"'
    if style == "parens" and value < 0:
        return f'"(${abs(value):,.4f})"'
    if style == "spaces":
        return f"  {value!r}  "
    return repr(value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portfolios(), st.data())
def test_round_trip_with_tolerated_formatting(rows, data) -> None:
    """Whatever tolerated formatting a file uses, the parsed values are the ones written."""
    header = data.draw(
        st.sampled_from([HEADER, HEADER.title(), " ticker , QUANTITY ,Entry Price,entry_date,tags"])
    )
    newline = data.draw(st.sampled_from(["\n", "\r\n"]))
    lines = [header]
    for symbol, quantity, price, entry, tags in rows:
        shown = data.draw(st.sampled_from([symbol, symbol.lower(), f" {symbol} "]))
        if len(symbol) > 9 and data.draw(st.booleans()):
            shown = "O:" + symbol
        q = _messy_number(quantity, data.draw)
        p = _messy_number(price, data.draw)
        lines.append(f'{shown},{q},{p},{entry.isoformat()},"{", ".join(tags)}"')
        if data.draw(st.booleans()):
            lines.append(data.draw(st.sampled_from(["", "  ", ",,,,"])))
    body = newline.join(lines) + newline
    bom = data.draw(st.sampled_from(["", "\ufeff"]))
    p = validate_portfolio_text((bom + body).encode(), today=TODAY).positions
    assert p["symbol"].tolist() == [r[0] for r in rows]
    assert p["quantity"].tolist() == pytest.approx([r[1] for r in rows], rel=1e-9)
    assert p["entry_price"].tolist() == pytest.approx([r[2] for r in rows], rel=1e-9)
    assert p["entry_date"].tolist() == [r[3] for r in rows]
    assert p["tags"].tolist() == [r[4] for r in rows]


cell = st.text(alphabet=' ab,"\n', max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(cell, min_size=1, max_size=4), min_size=1, max_size=8))
def test_fast_and_slow_tokenizers_agree(records: list[list[str]]) -> None:
    """When pandas' tokenizer is used, it reads what the csv module reads, line by line."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(records)
    body = buffer.getvalue().lstrip()
    if not body.strip():
        return
    fast = csv_table.read_fast(body)
    slow, errors = csv_table.read_slow(body)
    if fast is None or errors:
        return
    assert fast.index.tolist() == slow.index.tolist()
    assert fast.to_numpy().tolist() == slow.to_numpy().tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(stock_symbols, option_symbols, st.text(max_size=22)), max_size=30))
def test_vectorized_symbols_match_the_scalar_parser(symbols: list[str]) -> None:
    """describe_positions (vectorized) agrees with classify_symbol/position_type per symbol."""
    series = pd.Series(symbols, dtype=object)
    quantities = pd.Series([(-1.0) ** i for i in range(len(symbols))])
    scalar = []
    for symbol, quantity in zip(symbols, quantities, strict=True):
        try:
            contract = classify_symbol(symbol)
        except SymbolError:
            with pytest.raises(SymbolError):
                describe_positions(series, quantities)
            return
        right = None if contract is None else contract.right
        scalar.append(position_type(quantity, right))
    if symbols:
        assert describe_positions(series, quantities)["position_type"].tolist() == scalar
