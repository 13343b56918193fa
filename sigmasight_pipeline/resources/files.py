"""The `files` market data provider: real data offline, from a folder of one file per symbol.

SIGMASIGHT_MARKET_DATA_DIR holds `<SYMBOL>.csv` or `<SYMBOL>.parquet` (OCC option symbols use
their OCC name, e.g. `AAPL250620C00150000.csv`; class shares may be spelled `BRK.B` or
`BRK-B`). Columns: `date` (YYYY-MM-DD) and `close` are required; `open`, `high`, `low` and
`volume` are optional. Closes are taken as split-adjusted. Optional side files:
`securities.csv` (symbol,sector,industry) feeds `security_info`, `splits.csv`
(symbol,execution_date,split_from,split_to) feeds `splits`.

What `fetch_bars` reports: a held stock or ETF with no file is "failed" (the detail names the
missing path; it is looked for again next run); an option with no file is simply absent (the
pipeline model-prices it). A row with a close <= 0 or not a number, or two different rows for
one date, is "rejected", naming the file, line (CSV) or row (Parquet) and field. A row whose
date cannot be read makes every wanted day the file lacks between the readable dates around it
"rejected" (it may be that day's bar). Each file is read once per process (re-read if it
changes); only the wanted dates are returned.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.instruments import is_option_symbol
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    FAILED,
    REJECTED,
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    SPLIT_COLUMNS,
    BarsResult,
    concat_issues,
    empty_frame,
    issues_for,
    normalize_wanted,
    screen_bars,
)

__all__ = ["FilesMarketData", "MarketFile", "read_market_file"]

logger = logging.getLogger(__name__)

SOURCE = "files"
SUFFIXES = (".csv", ".parquet")
REQUIRED = ("date", "close")
OPTIONAL = ("open", "high", "low", "volume")
SECURITIES_FILE = "securities.csv"
SPLITS_FILE = "splits.csv"


class MarketFileError(ValueError):
    """A file that cannot be used at all (unreadable, a required column missing)."""


@dataclass(frozen=True)
class MarketFile:
    """One symbol's file, parsed.

    `rows`: usable rows, `trade_date` (date), `close`, `open`, `high`, `low`, `volume` (float)
    and `origin` ("<path> line N" for CSV, "<path> row N" for Parquet). `unpriced`: rows with a
    date but a close that is not a number (`trade_date`, `origin`, `problem`). `undated`: rows
    whose date cannot be read (`origin`, `problem`); they may stand for any day from
    `undated_span[0]` to `undated_span[1]` (the readable dates around them; None: open end).
    """

    path: Path
    rows: pd.DataFrame
    unpriced: pd.DataFrame
    undated: pd.DataFrame
    undated_span: tuple[date | None, date | None] = (None, None)


def read_market_file(path: Path) -> MarketFile:
    """Parse one `<SYMBOL>.csv|parquet` file; raises MarketFileError if it is unusable."""
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path)
            numbering, first = "row", 1
        else:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
            numbering, first = "line", 2  # the header is line 1
    except (OSError, ValueError, ImportError) as exc:
        raise MarketFileError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise MarketFileError(
            f"{path} has no {' or '.join(repr(c) for c in missing)} column (it has "
            f"{', '.join(raw.columns) or 'none'}; required: date (YYYY-MM-DD) and close)"
        )
    raw = raw.reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "trade_date": _dates(raw["date"]),
            **{c: _numbers(raw[c]) if c in raw.columns else np.nan for c in ("close", *OPTIONAL)},
            "origin": [f"{path} {numbering} {i}" for i in range(first, first + len(raw))],
        }
    )
    undated = frame["trade_date"].isna()
    close_text = raw["close"].map(_text).str.strip()
    not_a_number = frame["close"].isna() & close_text.ne("") & close_text.str.lower().ne("nan")
    unpriced = not_a_number & ~undated
    dated = np.flatnonzero(~undated.to_numpy())
    lost = np.flatnonzero(undated.to_numpy())
    span: tuple[date | None, date | None] = (None, None)
    if len(dated) and len(lost):
        known = frame["trade_date"][~undated]
        span = (
            None if lost[0] < dated[0] else known.min().date(),
            None if lost[-1] > dated[-1] else known.max().date(),
        )
    frame["trade_date"] = frame["trade_date"].dt.date
    return MarketFile(
        path,
        rows=frame[~undated & ~unpriced].reset_index(drop=True),
        unpriced=pd.DataFrame(
            {
                "trade_date": frame.loc[unpriced, "trade_date"],
                "origin": frame.loc[unpriced, "origin"],
                "problem": [f"close {t!r} is not a number" for t in close_text[unpriced]],
            }
        ),
        undated=pd.DataFrame(
            {
                "origin": frame.loc[undated, "origin"],
                "problem": [
                    f"date {_text(t)!r} is not a date (YYYY-MM-DD)" for t in raw["date"][undated]
                ],
            }
        ),
        undated_span=span,
    )


def _dates(column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        out = pd.to_datetime(column)
        if out.dt.tz is not None:
            out = out.dt.tz_localize(None)
        return out.dt.normalize()
    text = column.map(lambda v: v.isoformat() if isinstance(v, date) else str(v).strip())
    return pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")


def _numbers(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column.replace("", np.nan), errors="coerce").astype(float)


def _text(value: object) -> str:
    return "" if value is None else str(value)


class FilesMarketData:
    """MarketDataProvider reading `directory` (see the module docstring)."""

    name = "files"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().resolve()
        if not self.directory.is_dir():
            raise ValueError(
                f"SIGMASIGHT_MARKET_DATA_DIR={self.directory}: no such folder. The 'files' market "
                "data provider reads one <SYMBOL>.csv or <SYMBOL>.parquet per symbol from it."
            )
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[tuple[int, int], MarketFile | MarketFileError]] = {}
        self._side: dict[str, tuple[tuple[int, int], pd.DataFrame]] = {}

    @classmethod
    def from_env(cls, directory: str | None = None) -> FilesMarketData:
        """`directory`, else SIGMASIGHT_MARKET_DATA_DIR (required)."""
        directory = directory or os.environ.get("SIGMASIGHT_MARKET_DATA_DIR", "").strip()
        if not directory:
            raise ValueError(
                "SIGMASIGHT_MARKET_DATA_DIR is not set: the 'files' market data provider reads "
                "one <SYMBOL>.csv or <SYMBOL>.parquet (date, close; open/high/low/volume "
                "optional) per symbol from that folder"
            )
        return cls(directory)

    # -- bars ------------------------------------------------------------------------------

    def daily_bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        return self.fetch_bars(wanted).bars

    def fetch_bars(self, wanted: pd.DataFrame) -> BarsResult:
        """Bars of the wanted pairs found in the files; missing files and bad rows as issues."""
        pairs = normalize_wanted(wanted)
        frames: list[pd.DataFrame] = []
        issues: list[pd.DataFrame] = []
        for symbol, mine in pairs.groupby("symbol", sort=True):
            symbol = str(symbol)
            try:
                path = self.path_of(symbol)
            except MarketFileError as exc:
                issues.append(issues_for(mine, FAILED, str(exc)))
                continue
            if path is None:
                if not is_option_symbol(symbol):
                    names = " or ".join(str(self.directory / f"{symbol}{s}") for s in SUFFIXES)
                    issues.append(issues_for(mine, FAILED, f"no file {names}"))
                continue  # an option without a file: absent (model-priced downstream)
            try:
                found = self._read(path)
            except MarketFileError as exc:
                issues.append(issues_for(mine, FAILED, str(exc)))
                continue
            days = set(mine["trade_date"])
            rows = found.rows[found.rows["trade_date"].isin(days)]
            frames.append(rows.assign(symbol=symbol, source=SOURCE))
            unpriced = found.unpriced[found.unpriced["trade_date"].isin(days)]
            issues.append(
                issues_for(
                    unpriced.assign(symbol=symbol),
                    REJECTED,
                    [
                        f"{o}: {p}"
                        for o, p in zip(unpriced["origin"], unpriced["problem"], strict=True)
                    ],
                )
            )
            if not found.undated.empty:
                # A row without a readable date may be any day the file lacks: flag those.
                dated = set(found.rows["trade_date"]) | set(found.unpriced["trade_date"])
                first, last = found.undated_span
                day = mine["trade_date"]
                near = ~day.isin(dated)
                if first is not None:
                    near &= day >= first
                if last is not None:
                    near &= day <= last
                lacking = mine[near]
                detail = "no bar for the day, and " + "; ".join(
                    f"{o}: {p}" for o, p in found.undated.itertuples(index=False)
                )
                issues.append(issues_for(lacking, REJECTED, detail))
                if lacking.empty:
                    logger.warning("%s", detail.removeprefix("no bar for the day, and "))
        frames = [f for f in frames if not f.empty]
        raw = (
            pd.concat(frames, ignore_index=True)[[*BAR_COLUMNS, "origin"]]
            if frames
            else empty_frame(BAR_COLUMNS)
        )
        bars, rejected = screen_bars(pairs, raw)
        return BarsResult(bars, concat_issues([*issues, rejected]))

    def path_of(self, symbol: str) -> Path | None:
        """The symbol's file, None if there is none; MarketFileError if two could be meant."""
        names = dict.fromkeys([symbol, symbol.replace("-", "."), symbol.replace(".", "-")])
        for name in names:
            found = [self.directory / f"{name}{s}" for s in SUFFIXES]
            found = [p for p in found if p.is_file()]
            if len(found) > 1:
                raise MarketFileError(
                    f"both {found[0]} and {found[1]} exist for {symbol}: keep one of them"
                )
            if found:
                return found[0]
        return None

    def _read(self, path: Path) -> MarketFile:
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._files.get(path)
            if cached is None or cached[0] != version:
                try:
                    parsed: MarketFile | MarketFileError = read_market_file(path)
                except MarketFileError as exc:
                    parsed = exc
                self._files[path] = (version, parsed)
            result = self._files[path][1]
        if isinstance(result, MarketFileError):
            raise result
        return result

    # -- side files ------------------------------------------------------------------------

    def _side_file(self, name: str, columns: Sequence[str]) -> pd.DataFrame:
        """`securities.csv` / `splits.csv` as strings (empty if absent; logged if unusable)."""
        path = self.directory / name
        if not path.is_file():
            return pd.DataFrame(columns=list(columns))
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._side.get(name)
            if cached is not None and cached[0] == version:
                return cached[1]
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
            frame.columns = [str(c).strip().lower() for c in frame.columns]
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"no {', '.join(missing)} column (needs {', '.join(columns)})")
            frame = frame[list(columns)].apply(lambda c: c.str.strip())
            frame["line"] = range(2, len(frame) + 2)
        except (OSError, ValueError) as exc:
            logger.warning("%s is not used: %s", path, exc)
            frame = pd.DataFrame(columns=[*columns, "line"])
        with self._lock:
            self._side[name] = (version, frame)
        return frame

    def security_info(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Sector and industry from `securities.csv`; None for symbols it does not list."""
        table = self._side_file(SECURITIES_FILE, SECURITY_INFO_COLUMNS)
        known = {
            r.symbol: (r.sector or None, r.industry or None) for r in table.itertuples(index=False)
        }
        rows = [(s, *known.get(s, (None, None))) for s in dict.fromkeys(symbols)]
        return pd.DataFrame(rows, columns=SECURITY_INFO_COLUMNS)

    def short_interest(self, symbols: Sequence[str], days: Sequence[date]) -> pd.DataFrame:
        """The files provider has no short interest: always empty."""
        return empty_frame(SHORT_INTEREST_COLUMNS)

    def splits(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """Splits from `splits.csv` executed from `start` to `end` (bad rows are logged)."""
        table = self._side_file(SPLITS_FILE, SPLIT_COLUMNS)
        table = table[table["symbol"].isin(set(symbols))]
        if table.empty:
            return empty_frame(SPLIT_COLUMNS)
        when = pd.to_datetime(table["execution_date"], format="%Y-%m-%d", errors="coerce")
        ratio_from = pd.to_numeric(table["split_from"], errors="coerce")
        ratio_to = pd.to_numeric(table["split_to"], errors="coerce")
        usable = when.notna() & ratio_from.gt(0) & ratio_to.gt(0)
        for line in table.loc[~usable, "line"]:
            logger.warning(
                "%s line %s: needs execution_date YYYY-MM-DD and positive split_from, split_to",
                self.directory / SPLITS_FILE,
                line,
            )
        out = pd.DataFrame(
            {
                "symbol": table["symbol"],
                "execution_date": when.dt.date,
                "split_from": ratio_from.astype(float),
                "split_to": ratio_to.astype(float),
            }
        )[usable.to_numpy()]
        out = out[(out["execution_date"] >= start) & (out["execution_date"] <= end)]
        return out.sort_values(["symbol", "execution_date"], ignore_index=True)[SPLIT_COLUMNS]
