"""The `files` market data provider on a small, real-looking folder the tests write."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from sigmasight_pipeline.resources import files
from sigmasight_pipeline.resources.files import FilesMarketData
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    ISSUE_COLUMNS,
    SECURITY_INFO_COLUMNS,
    SPLIT_COLUMNS,
    MarketDataProvider,
    MarketDataResource,
    _provider,
    provider_name,
)
from sigmasight_pipeline_tests.market_files import OPTION, MarketFiles, write_market_files

HELD = ["AAPL", "MSFT", "SPY", "BRK.B", "NVDA", OPTION, "AAPL250718P00150000"]


@pytest.fixture
def folder(tmp_path: Path) -> MarketFiles:
    return write_market_files(tmp_path / "market")


def wanted(symbols: list[str], days: list[date]) -> pd.DataFrame:
    return pd.DataFrame([(s, d) for s in symbols for d in days], columns=["symbol", "trade_date"])


def issue(result, symbol: str, day: date) -> pd.Series:
    rows = result.issues[(result.issues["symbol"] == symbol) & (result.issues["trade_date"] == day)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_chosen_by_environment_with_clear_errors(folder, monkeypatch, tmp_path):
    monkeypatch.setenv("SIGMASIGHT_MARKET_DATA", "files")
    monkeypatch.setenv("SIGMASIGHT_MARKET_DATA_DIR", str(folder.folder))
    assert provider_name() == "files"
    _provider.cache_clear()
    try:
        provider = MarketDataResource().get_provider()
        assert isinstance(provider, FilesMarketData) and isinstance(provider, MarketDataProvider)
        assert provider.directory == folder.folder.resolve()
        other = MarketDataResource(provider="files", market_data_dir=str(tmp_path)).get_provider()
        assert other.directory == tmp_path.resolve()
        monkeypatch.delenv("SIGMASIGHT_MARKET_DATA_DIR")
        with pytest.raises(ValueError, match="SIGMASIGHT_MARKET_DATA_DIR is not set"):
            FilesMarketData.from_env()
        with pytest.raises(ValueError, match="no such folder"):
            FilesMarketData(tmp_path / "nowhere")
        monkeypatch.setenv("SIGMASIGHT_MARKET_DATA", "bloomberg")
        with pytest.raises(ValueError, match=r"'files'.*'yfinance'"):
            provider_name()
    finally:
        _provider.cache_clear()


def test_bars_and_every_planted_fault(folder, caplog):
    market = FilesMarketData(folder.folder)
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.files"):
        result = market.fetch_bars(wanted(HELD, folder.days))
    bars = result.bars
    assert list(bars.columns) == BAR_COLUMNS and list(result.issues.columns) == ISSUE_COLUMNS
    assert set(bars["source"]) == {"files"} and result.fatal is None
    assert (bars["close"] > 0).all() and not bars.duplicated(["symbol", "trade_date"]).any()

    # Good rows are the written closes, for exactly the wanted days the files have.
    for symbol, closes in folder.closes.items():
        got = bars[bars["symbol"] == symbol.replace("BRK-B", "BRK.B")]
        got = got.set_index("trade_date")["close"]
        assert len(got) > 0
        pd.testing.assert_series_equal(got, closes.loc[got.index], check_names=False)
    aapl_days = set(bars.loc[bars["symbol"] == "AAPL", "trade_date"])
    assert aapl_days == set(folder.days) - {folder.zero_close[1], folder.gap[1]}
    assert set(bars.loc[bars["symbol"] == OPTION, "trade_date"]) == set(folder.option_days)
    aapl = bars[bars["symbol"] == "AAPL"].iloc[0]
    assert aapl[["open", "high", "low", "volume"]].notna().all()
    spy = bars[bars["symbol"] == "SPY"].iloc[0]
    assert spy[["open", "high", "low", "volume"]].isna().all()  # optional columns absent

    zero = issue(result, *folder.zero_close)
    assert zero.kind == "rejected"
    assert f"{folder.folder / 'AAPL.csv'} line 12: close 0.0 is not a positive" in zero.detail
    twin = issue(result, *folder.duplicate)
    assert twin.kind == "rejected" and "2 different bars" in twin.detail
    assert "MSFT.parquet row 16" in twin.detail and "MSFT.parquet row 17" in twin.detail
    undated = issue(result, *folder.undated)
    assert undated.kind == "rejected"
    assert f"SPY.csv line {folder.bad_date_line}: date '06/31/2025' is not a date" in undated.detail
    bad_close = issue(result, "BRK.B", folder.bad_close[1])
    assert bad_close.kind == "rejected"
    assert "BRK-B.csv line 7: close 'n/a' is not a number" in bad_close.detail
    nvda = result.issues[result.issues["symbol"] == "NVDA"]
    assert len(nvda) == len(folder.days) and (nvda["kind"] == "failed").all()
    assert nvda["detail"].iloc[0] == (
        f"no file {folder.folder / 'NVDA.csv'} or {folder.folder / 'NVDA.parquet'}"
    )
    # Nothing else: the gap, the untraded option days and the put without a file are absent.
    assert len(result.issues) == 4 + len(folder.days)
    assert "AAPL250718P00150000" not in set(bars["symbol"]) | set(result.issues["symbol"])
    assert folder.gap not in set(
        zip(result.issues["symbol"], result.issues["trade_date"], strict=True)
    )
    assert not any("SPY.csv" in m for m in caplog.messages)  # the bad row is an issue instead


def test_only_wanted_dates_and_each_file_read_once(folder, monkeypatch):
    reads: list[Path] = []
    real = files.read_market_file

    def counting(path: Path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(files, "read_market_file", counting)
    market = FilesMarketData(folder.folder)
    one_day = market.fetch_bars(wanted(["AAPL", "MSFT"], folder.days[30:31]))
    assert len(one_day.bars) == 2 and one_day.issues.empty
    market.fetch_bars(wanted(["AAPL", "MSFT"], folder.days[:5]))
    market.daily_bars(wanted(["AAPL"], folder.days))
    assert sorted(p.name for p in reads) == ["AAPL.csv", "MSFT.parquet"]
    # A file that changes is read again.
    path = folder.folder / "AAPL.csv"
    path.write_text("date,close\n2025-06-30,201.5\n")
    again = market.daily_bars(wanted(["AAPL"], folder.days[-1:]))
    assert again["close"].tolist() == [201.5] and len(reads) == 3


def test_the_unreadable_date_is_only_a_warning_when_no_wanted_day_lacks_a_row(folder, caplog):
    market = FilesMarketData(folder.folder)
    days = [d for d in folder.days if d != folder.undated[1]]
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.files"):
        result = market.fetch_bars(wanted(["SPY"], days))
    assert result.issues.empty and len(result.bars) == len(days)
    assert any("SPY.csv line 7: date '06/31/2025'" in m for m in caplog.messages)
    # Days after the file's last readable date cannot be the unreadable row (in the middle).
    later = market.fetch_bars(wanted(["SPY"], [date(2025, 8, 1), date(2025, 8, 4)]))
    assert later.bars.empty and later.issues.empty


def test_unusable_files_fail_with_the_reason(folder):
    (folder.folder / "KO.csv").write_text("day,price\n2025-06-30,70.1\n")
    (folder.folder / "PG.csv").write_text("date,close\n2025-06-30,160\n")
    (folder.folder / "PG.parquet").write_bytes(b"not parquet")
    (folder.folder / "XOM.parquet").write_bytes(b"not parquet either")
    result = FilesMarketData(folder.folder).fetch_bars(
        wanted(["KO", "PG", "XOM"], [date(2025, 6, 30)])
    )
    assert result.bars.empty and (result.issues["kind"] == "failed").all()
    details = result.issues.set_index("symbol")["detail"]
    assert "KO.csv has no 'date' or 'close' column" in details["KO"]
    assert "both" in details["PG"] and "keep one" in details["PG"]
    assert details["XOM"].startswith(f"cannot read {folder.folder / 'XOM.parquet'}")


def test_parquet_with_timestamps(folder):
    frame = pd.DataFrame(
        {
            "Date": pd.to_datetime(["2025-06-27", "2025-06-30"]).tz_localize("America/New_York"),
            "Close": [100.25, 101.5],
        }
    )
    frame.to_parquet(folder.folder / "TZ.parquet")
    bars = FilesMarketData(folder.folder).daily_bars(
        wanted(["TZ"], [date(2025, 6, 27), date(2025, 6, 30)])
    )
    assert bars["close"].tolist() == [100.25, 101.5]
    assert bars["trade_date"].tolist() == [date(2025, 6, 27), date(2025, 6, 30)]


def test_security_info_splits_and_no_short_interest(folder, caplog):
    market = FilesMarketData(folder.folder)
    info = market.security_info(["AAPL", "SPY", "NVDA", OPTION])
    assert list(info.columns) == SECURITY_INFO_COLUMNS
    rows = info.set_index("symbol")
    assert tuple(rows.loc["AAPL"]) == (
        "Information Technology",
        "Technology Hardware, Storage & Peripherals",
    )
    assert rows.loc["SPY", "sector"] == "ETF"
    assert rows.loc["NVDA"].isna().all() and rows.loc[OPTION].isna().all()
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.files"):
        splits = market.splits(["NVDA", "AAPL", "MSFT"], date(2020, 1, 1), date(2025, 6, 30))
    assert list(splits.columns) == SPLIT_COLUMNS
    assert list(splits.itertuples(index=False, name=None)) == [
        ("AAPL", date(2020, 8, 31), 1.0, 4.0),
        ("NVDA", date(2024, 6, 10), 1.0, 10.0),
    ]
    assert any("splits.csv line 4" in m for m in caplog.messages)
    assert market.splits(["NVDA"], date(2025, 1, 1), date(2025, 6, 30)).empty
    assert market.short_interest(["AAPL"], folder.days).empty
    (folder.folder / "securities.csv").unlink()
    assert market.security_info(["AAPL"])["sector"].isna().all()
