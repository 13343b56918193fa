"""The synthetic market data provider: offline, deterministic, factor-structured.

Every number is a pure function of (ticker, NYSE session), so the same question gets the same
answer however it is asked (one day or a range, alone or with other tickers, in any order, in
any process). Seeds come from `zlib.crc32` of the upper-cased ticker, never from `hash()`.

The world:

* Returns live on the NYSE sessions from ANCHOR (2005-01-03) to the end of the calendar (2030);
  a ticker's whole history is generated at once (vectorized) and cached.
* Latent daily factor returns, seeded globally: the market (mean 0.03 %, sd 1 %) and six
  styles (sd 0.3-0.5 %, mean 0; Value and Growth correlated -0.5, the rest independent).
* ETFs: SPY = market + tiny noise; each style ETF (MTUM, VTV, VUG, QUAL, IWM, SPLV) = market
  + its style + tiny noise, so ETF_k - SPY isolates style k.
* Any other ticker: ``r = b_mkt * SPY + sum_k b_k * (ETF_k - SPY) + e`` with planted betas from
  the ticker (b_mkt in [0.5, 1.6], b_k in [-0.8, 0.8]) and idiosyncratic noise `e` of 1-2 %/day
  (a stationary AR(1) in log-price space, so idiosyncratic drift stays bounded over 26 years).
  `planted_betas` reports exactly these coefficients, i.e. what `analytics.factors` estimates.
* Prices: ``close = base * cumprod(1 + r)``, scaled so the close on BASE_PRICE_DAY equals the
  ticker's base price (10..500); open/high/low/volume are deterministic around the close.
* Options (OCC symbols): Black-Scholes (`analytics.greeks.bs_price`) on the synthetic
  underlying with rate SYNTHETIC_RATE and a per-underlying implied vol (`implied_vol_for`),
  t = calendar days to expiry / 365; intrinsic on expiry day, no bar after it. Open/high/low
  are priced off the underlying's open/high/low. A close of 0 (a worthless option) is not a
  market price: `fetch_bars` reports it as a "rejected" issue, like any provider.
* No splits: every price path is continuous, so `splits` is always empty.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.greeks import bs_price
from sigmasight_pipeline.analytics.instruments import is_option_symbol, parse_occ
from sigmasight_pipeline.calendar import CALENDAR_END, sessions
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    FACTOR_ETFS,
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    SPLIT_COLUMNS,
    BarsResult,
    normalize_wanted,
    screen_bars,
)

__all__ = [
    "ANCHOR",
    "BASE_PRICE_DAY",
    "SYNTHETIC_MISSING_TICKERS",
    "SYNTHETIC_RATE",
    "SyntheticMarket",
    "implied_vol_for",
]

ANCHOR = "2005-01-03"
BASE_PRICE_DAY = pd.Timestamp("2025-01-02")
SYNTHETIC_RATE = 0.04
SYNTHETIC_SOURCE = "synthetic"
SYNTHETIC_MISSING_TICKERS = frozenset({"NODATA", "NOPRICE", "DELISTED"})
GLOBAL_SEED = 20_050_103

FACTOR_NAMES = list(FACTOR_ETFS)  # Market first, then the six styles
STYLE_NAMES = FACTOR_NAMES[1:]
ETF_TICKERS = list(FACTOR_ETFS.values())  # SPY first
MARKET_MEAN = 0.0003
MARKET_VOL = 0.01
STYLE_VOLS = {
    "Momentum": 0.005,
    "Value": 0.004,
    "Growth": 0.004,
    "Quality": 0.003,
    "Size": 0.005,
    "Low Volatility": 0.0035,
}
VALUE_GROWTH_CORR = -0.5
ETF_NOISE_VOL = 0.0005
IDIO_AR_PHI = 0.996  # idiosyncratic log-price half-life ~170 sessions
OTHER_ETFS = frozenset(
    {"QQQ", "DIA", "IVV", "VOO", "VTI", "TLT", "GLD", "EFA", "EEM", "XLF", "XLK"}
)
ETFS = frozenset(ETF_TICKERS) | OTHER_ETFS

KNOWN_SECURITIES: dict[str, tuple[str, str]] = {
    "AAPL": ("Information Technology", "Technology Hardware, Storage & Peripherals"),
    "MSFT": ("Information Technology", "Software"),
    "NVDA": ("Information Technology", "Semiconductors & Semiconductor Equipment"),
    "AMD": ("Information Technology", "Semiconductors & Semiconductor Equipment"),
    "INTC": ("Information Technology", "Semiconductors & Semiconductor Equipment"),
    "ORCL": ("Information Technology", "Software"),
    "CRM": ("Information Technology", "Software"),
    "ADBE": ("Information Technology", "Software"),
    "CSCO": ("Information Technology", "Communications Equipment"),
    "GOOGL": ("Communication Services", "Interactive Media & Services"),
    "GOOG": ("Communication Services", "Interactive Media & Services"),
    "META": ("Communication Services", "Interactive Media & Services"),
    "NFLX": ("Communication Services", "Entertainment"),
    "DIS": ("Communication Services", "Entertainment"),
    "AMZN": ("Consumer Discretionary", "Broadline Retail"),
    "TSLA": ("Consumer Discretionary", "Automobiles"),
    "HD": ("Consumer Discretionary", "Specialty Retail"),
    "NKE": ("Consumer Discretionary", "Textiles, Apparel & Luxury Goods"),
    "MCD": ("Consumer Discretionary", "Hotels, Restaurants & Leisure"),
    "JPM": ("Financials", "Banks"),
    "BAC": ("Financials", "Banks"),
    "WFC": ("Financials", "Banks"),
    "GS": ("Financials", "Capital Markets"),
    "MS": ("Financials", "Capital Markets"),
    "V": ("Financials", "Financial Services"),
    "MA": ("Financials", "Financial Services"),
    "BRK.B": ("Financials", "Financial Services"),
    "XOM": ("Energy", "Oil, Gas & Consumable Fuels"),
    "CVX": ("Energy", "Oil, Gas & Consumable Fuels"),
    "JNJ": ("Health Care", "Pharmaceuticals"),
    "PFE": ("Health Care", "Pharmaceuticals"),
    "MRK": ("Health Care", "Pharmaceuticals"),
    "LLY": ("Health Care", "Pharmaceuticals"),
    "UNH": ("Health Care", "Health Care Providers & Services"),
    "ABBV": ("Health Care", "Biotechnology"),
    "PG": ("Consumer Staples", "Household Products"),
    "KO": ("Consumer Staples", "Beverages"),
    "PEP": ("Consumer Staples", "Beverages"),
    "WMT": ("Consumer Staples", "Consumer Staples Distribution & Retail"),
    "COST": ("Consumer Staples", "Consumer Staples Distribution & Retail"),
    "BA": ("Industrials", "Aerospace & Defense"),
    "CAT": ("Industrials", "Machinery"),
    "GE": ("Industrials", "Aerospace & Defense"),
    "UPS": ("Industrials", "Air Freight & Logistics"),
    "NEE": ("Utilities", "Electric Utilities"),
    "DUK": ("Utilities", "Electric Utilities"),
    "LIN": ("Materials", "Chemicals"),
    "AMT": ("Real Estate", "Specialized REITs"),
    "PLD": ("Real Estate", "Industrial REITs"),
}
GENERIC_INDUSTRIES: list[tuple[str, str]] = [
    ("Information Technology", "Software"),
    ("Information Technology", "Semiconductors & Semiconductor Equipment"),
    ("Communication Services", "Interactive Media & Services"),
    ("Consumer Discretionary", "Specialty Retail"),
    ("Consumer Discretionary", "Hotels, Restaurants & Leisure"),
    ("Consumer Staples", "Food Products"),
    ("Energy", "Oil, Gas & Consumable Fuels"),
    ("Financials", "Banks"),
    ("Financials", "Capital Markets"),
    ("Financials", "Insurance"),
    ("Health Care", "Biotechnology"),
    ("Health Care", "Health Care Equipment & Supplies"),
    ("Industrials", "Machinery"),
    ("Industrials", "Ground Transportation"),
    ("Materials", "Chemicals"),
    ("Real Estate", "Specialized REITs"),
    ("Utilities", "Electric Utilities"),
]


# --- deterministic randomness -------------------------------------------------------------


def _key(ticker: str) -> str:
    return ticker.strip().upper()


def _seed(key: str) -> int:
    return zlib.crc32(key.encode("utf-8"))


def _rng(key: str, stream: int) -> np.random.Generator:
    """A Generator for (ticker, stream); the same in every process and numpy session."""
    return np.random.default_rng([GLOBAL_SEED, _seed(key), stream])


def _unit_hash(seed: int, values: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per (seed, integer value), vectorized (splitmix64 finalizer)."""
    x = np.asarray(values, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class _Params:
    base_price: float
    idio_vol: float
    betas: np.ndarray  # FACTOR_NAMES order, spread parametrization
    base_volume: float


@cache
def _params(key: str) -> _Params:
    u = _rng(key, 1).random(10)
    if key in ETF_TICKERS:
        betas = np.zeros(len(FACTOR_NAMES))
        betas[0] = 1.0
        if key != FACTOR_ETFS["Market"]:
            betas[ETF_TICKERS.index(key)] = 1.0
        idio = ETF_NOISE_VOL
    else:
        betas = np.concatenate([[0.5 + 1.1 * u[2]], -0.8 + 1.6 * u[3:9]])
        idio = 0.01 + 0.01 * u[1]
    return _Params(
        base_price=float(np.exp(np.log(10.0) + u[0] * np.log(50.0))),
        idio_vol=float(idio),
        betas=betas,
        base_volume=float(np.exp(np.log(2e5) + u[9] * np.log(150.0))),
    )


@cache
def implied_vol_for(underlying: str) -> float:
    """The constant implied vol (0.20..0.60) synthetic options on `underlying` are priced at
    (cached: asked once per option contract, and a Generator costs 20 us to seed)."""
    return float(0.20 + 0.40 * _rng(_key(underlying), 2).random())


# --- the session index and the factor world ------------------------------------------------


@cache
def _session_ns() -> np.ndarray:
    """All sessions from ANCHOR to the calendar end, as int64 nanoseconds."""
    return sessions(ANCHOR, CALENDAR_END).asi8


@cache
def _etf_returns() -> np.ndarray:
    """Daily returns (sessions x 7) of SPY and the six style ETFs, in FACTOR_ETFS order."""
    n = len(_session_ns())
    z = _rng("__FACTORS__", 0).standard_normal((n, len(FACTOR_NAMES)))
    v, g = STYLE_NAMES.index("Value") + 1, STYLE_NAMES.index("Growth") + 1
    z[:, g] = VALUE_GROWTH_CORR * z[:, v] + np.sqrt(1 - VALUE_GROWTH_CORR**2) * z[:, g]
    market = MARKET_MEAN + MARKET_VOL * z[:, 0]
    out = np.empty((n, len(FACTOR_NAMES)))
    for j, ticker in enumerate(ETF_TICKERS):
        noise = ETF_NOISE_VOL * _rng(ticker, 0).standard_normal(n)
        style = STYLE_VOLS[FACTOR_NAMES[j]] * z[:, j] if j else 0.0
        out[:, j] = market + style + noise
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class _Path:
    returns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _ar1(eps: np.ndarray, phi: float, block: int = 128) -> np.ndarray:
    """y[t] = eps[t] + phi * y[t-1], y[-1] = 0: scipy.signal.lfilter([1], [1, -phi], eps) to
    1e-15, without importing scipy.signal (1.1 s, paid by every daily run). Within blocks of
    `block` steps y is phi**j times a cumulative sum of eps scaled by phi**-j (bounded for
    |phi| near 1, and kept within 1e6 by a shorter block for a smaller |phi|); each block then
    adds the previous block's last value, decayed."""
    n = eps.size
    digits = -np.log10(abs(phi)) if phi else np.inf  # phi**-j grows this many digits a step
    if digits > 0:
        block = max(1, min(block, int(6 / digits)))
    padded = np.zeros(-(-n // block) * block)
    padded[:n] = eps
    steps = np.arange(block)
    level = phi**steps * np.cumsum(padded.reshape(-1, block) * phi**-steps, axis=1)
    decay = phi ** (steps + 1)
    for b in range(1, level.shape[0]):
        level[b] += decay * level[b - 1, -1]
    return level.ravel()[:n]


@lru_cache(maxsize=1024)
def _path(key: str) -> _Path:
    """The whole-history price path of a stock or ETF (vectorized, cached per ticker: 314 KB,
    1.2 ms to compute). The prices step reads every stock's path, then every option's
    underlying's in the same order: a cache smaller than the universe (it held 512 paths;
    the 1,000-portfolio book has 600 underlyings) misses on every read of that second pass."""
    p = _params(key)
    etf = _etf_returns()
    n = etf.shape[0]
    if key in ETF_TICKERS:
        r = etf[:, ETF_TICKERS.index(key)].copy()
    else:
        eps = p.idio_vol * _rng(key, 0).standard_normal(n)
        level = _ar1(eps, IDIO_AR_PHI)  # stationary idiosyncratic log level
        idio = np.diff(level, prepend=0.0) + 0.5 * p.idio_vol**2  # no volatility drag
        spreads = etf[:, 1:] - etf[:, :1]
        r = p.betas[0] * etf[:, 0] + spreads @ p.betas[1:] + idio
    growth = np.cumprod(1.0 + r)
    ref = int(np.searchsorted(_session_ns(), BASE_PRICE_DAY.value))
    close = p.base_price * growth / growth[ref]
    z = _rng(key, 4).standard_normal((n, 4))
    prev = close / (1.0 + r)
    open_ = prev * np.exp(0.25 * np.log1p(r) + 0.004 * z[:, 0])
    high = np.maximum(open_, close) * np.exp(0.006 * np.abs(z[:, 1]))
    low = np.minimum(open_, close) * np.exp(-0.006 * np.abs(z[:, 2]))
    volume = np.rint(p.base_volume * np.exp(0.35 * z[:, 3]) * (1.0 + 25.0 * np.abs(r)))
    arrays = [r, open_, high, low, close, volume.astype(np.int64)]
    for a in arrays:
        a.setflags(write=False)
    return _Path(*arrays)


def _has_data(key: str) -> bool:
    return key not in SYNTHETIC_MISSING_TICKERS


def _session_positions(days: Iterable[object]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `days` in the session index and whether each day is a session."""
    ts = pd.to_datetime(pd.Index(list(days))).normalize()
    ns = ts.asi8 if len(ts) else np.empty(0, dtype=np.int64)
    sess = _session_ns()
    pos = np.searchsorted(sess, ns)
    clipped = np.minimum(pos, len(sess) - 1)
    ok = (pos < len(sess)) & (sess[clipped] == ns)
    return clipped, ok


class SyntheticMarket:
    """Deterministic, factor-structured market data for any ticker and any NYSE session.

    `missing` lists (symbol, day) pairs to leave out of every result (to exercise gap handling);
    tickers in SYNTHETIC_MISSING_TICKERS (and options on them) have no data at all.
    """

    name = "synthetic"

    def __init__(self, missing: set[tuple[str, date]] | None = None) -> None:
        self.missing: dict[str, set[date]] = {}
        for symbol, day in missing or ():
            self.missing.setdefault(symbol, set()).add(pd.Timestamp(day).date())

    # -- bars ------------------------------------------------------------------------------

    def fetch_bars(self, wanted: pd.DataFrame) -> BarsResult:
        """Bars for the wanted pairs that exist; a close <= 0 (a worthless option) is an issue
        "rejected" (the synthetic market never fails a call)."""
        raw = self._bars(normalize_wanted(wanted))  # only wanted pairs, once each
        bars, issues = screen_bars(None, raw.assign(origin="synthetic"))
        return BarsResult(bars, issues)

    def daily_bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        """`fetch_bars(wanted).bars`: valid bars sorted by symbol and trade_date."""
        return self.fetch_bars(wanted).bars

    def _bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        """OHLCV bars for the (symbol, trade_date) pairs of `wanted` that exist (BAR_COLUMNS),
        in `wanted` order, unscreened."""
        n = len(wanted)
        if n == 0:
            return _empty(BAR_COLUMNS)
        sym_codes, sym_uniques = pd.factorize(wanted["symbol"].astype(str), sort=False)
        day_codes, day_uniques = pd.factorize(wanted["trade_date"], sort=False)
        day_pos, day_ok = _session_positions(day_uniques)
        day_dates = np.array(
            [d.date() for d in pd.to_datetime(pd.Index(day_uniques))], dtype=object
        )
        pos = day_pos[day_codes]
        keep = day_ok[day_codes].copy()
        cols = {c: np.full(n, np.nan) for c in ("open", "high", "low", "close")}
        volume = np.zeros(n, dtype=np.int64)

        order = np.argsort(sym_codes, kind="stable")
        bounds = np.searchsorted(sym_codes[order], np.arange(len(sym_uniques) + 1))
        opt_rows: list[np.ndarray] = []
        opt_meta: list[tuple[str, str, float, int, bool]] = []
        for i, symbol in enumerate(sym_uniques):
            rows = order[bounds[i] : bounds[i + 1]]
            key = _key(symbol)
            if is_option_symbol(key):
                contract = parse_occ(key)
                if not _has_data(contract.underlying):
                    keep[rows] = False
                    continue
                expiry = int(np.datetime64(contract.expiry, "D").astype(np.int64))
                opt_rows.append(rows)
                opt_meta.append(
                    (
                        contract.symbol,
                        contract.underlying,
                        contract.strike,
                        expiry,
                        contract.right == "C",
                    )
                )
                continue
            if not _has_data(key):
                keep[rows] = False
                continue
            path = _path(key)
            p = pos[rows]
            cols["open"][rows] = path.open[p]
            cols["high"][rows] = path.high[p]
            cols["low"][rows] = path.low[p]
            cols["close"][rows] = path.close[p]
            volume[rows] = path.volume[p]

        if opt_rows:
            self._price_options(opt_rows, opt_meta, pos, keep, cols, volume)

        if self.missing:
            symbols = np.asarray(sym_uniques, dtype=object)[sym_codes]
            for symbol, days in self.missing.items():
                rows = np.flatnonzero(symbols == symbol)
                if rows.size:
                    gone = np.fromiter((d in days for d in day_dates[day_codes[rows]]), bool)
                    keep[rows[gone]] = False

        out = pd.DataFrame(
            {
                "symbol": np.asarray(sym_uniques, dtype=object)[sym_codes[keep]],
                "trade_date": day_dates[day_codes[keep]],
                **{c: v[keep] for c, v in cols.items()},
                "volume": volume[keep],
                "source": SYNTHETIC_SOURCE,
            },
            columns=BAR_COLUMNS,
        )
        return out.reset_index(drop=True)

    @staticmethod
    def _price_options(
        opt_rows: list[np.ndarray],
        opt_meta: list[tuple[str, str, float, int, bool]],
        pos: np.ndarray,
        keep: np.ndarray,
        cols: dict[str, np.ndarray],
        volume: np.ndarray,
    ) -> None:
        """Black-Scholes on the underlying's open/high/low/close for every option row at once."""
        rows = np.concatenate(opt_rows)
        sizes = [len(r) for r in opt_rows]
        strike = np.repeat([m[2] for m in opt_meta], sizes)
        expiry = np.repeat([m[3] for m in opt_meta], sizes)
        is_call = np.repeat([m[4] for m in opt_meta], sizes)
        vol = np.repeat([implied_vol_for(m[1]) for m in opt_meta], sizes)
        seeds = np.repeat([_seed(m[0]) for m in opt_meta], sizes)
        p = pos[rows]
        day = _session_ns()[p] // 86_400_000_000_000
        days_left = expiry - day
        live = days_left >= 0
        keep[rows[~live]] = False
        t = np.maximum(days_left, 0) / 365.0
        under = {c: np.empty(len(rows)) for c in ("open", "high", "low", "close")}
        start = 0
        for (_, underlying, *_rest), r in zip(opt_meta, opt_rows, strict=True):
            path = _path(underlying)
            stop = start + len(r)
            for c in under:
                under[c][start:stop] = getattr(path, c)[pos[r]]
            start = stop
        spots = np.stack([under["open"], under["high"], under["low"], under["close"]])
        prices = bs_price(spots, strike, t, SYNTHETIC_RATE, vol, is_call)
        at_open, at_high, at_low, close = prices
        hi = np.where(is_call, at_high, at_low)
        lo = np.where(is_call, at_low, at_high)
        cols["open"][rows] = at_open
        cols["close"][rows] = close
        cols["high"][rows] = np.maximum(hi, np.maximum(at_open, close))
        cols["low"][rows] = np.minimum(lo, np.minimum(at_open, close))
        activity = _unit_hash(0, seeds.astype(np.uint64) * np.uint64(1 << 20) + p.astype(np.uint64))
        volume[rows] = np.floor(5000.0 * activity**3).astype(np.int64)

    # -- reference data --------------------------------------------------------------------

    def security_info(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Sector and industry: GICS-like for well-known names, a deterministic pick otherwise."""
        rows = []
        for symbol in symbols:
            key = _key(symbol)
            if is_option_symbol(key) or not _has_data(key):
                sector, industry = None, None
            elif key in ETFS:
                sector, industry = "ETF", "Index ETF"
            elif key in KNOWN_SECURITIES:
                sector, industry = KNOWN_SECURITIES[key]
            else:
                sector, industry = GENERIC_INDUSTRIES[_seed(key) % len(GENERIC_INDUSTRIES)]
            rows.append((symbol, sector, industry))
        return pd.DataFrame(rows, columns=SECURITY_INFO_COLUMNS)

    def short_interest(self, symbols: Sequence[str], days: Sequence[date]) -> pd.DataFrame:
        """Short interest per (stock, session): % of float (1..25, in percent) and days to cover.

        Slowly varying (two slow sinusoids around a per-ticker level). ETFs, options, tickers
        without data, non-session days and `missing` pairs are absent.
        """
        day_list = list(days)
        if not day_list or not symbols:
            return _empty(SHORT_INTEREST_COLUMNS)
        _, ok = _session_positions(day_list)
        ts = pd.to_datetime(pd.Index(day_list)).normalize()[ok]
        day_dates = np.array([d.date() for d in ts], dtype=object)
        ordinal = (ts.asi8 // 86_400_000_000_000).astype(float)
        frames = []
        for symbol in dict.fromkeys(symbols):
            key = _key(symbol)
            if is_option_symbol(key) or key in ETFS or not _has_data(key) or not len(ts):
                continue
            u = _rng(key, 3).random(8)
            level = np.exp(np.log(2.0) + u[0] * np.log(8.0))  # 2..16 % of float
            phase1, phase2 = 2 * np.pi * u[1], 2 * np.pi * u[2]
            slow = 0.35 * np.sin(2 * np.pi * ordinal / (180 + 220 * u[3]) + phase1)
            fast = 0.08 * np.sin(2 * np.pi * ordinal / (60 + 60 * u[4]) + phase2)
            pct = np.clip(level * np.exp(slow + fast), 1.0, 25.0)
            dtc_level = 1.0 + 5.0 * u[5]
            dtc_wave = 0.3 * np.sin(2 * np.pi * ordinal / (60 + 90 * u[6]) + 2 * np.pi * u[7])
            dtc = np.clip(dtc_level * np.exp(dtc_wave + 0.5 * slow), 0.5, 10.0)
            frame = pd.DataFrame(
                {
                    "symbol": symbol,
                    "trade_date": day_dates,
                    "short_interest_pct_float": pct,
                    "days_to_cover": dtc,
                }
            )
            gone = self.missing.get(symbol)
            if gone:
                frame = frame[~frame["trade_date"].isin(gone)]
            frames.append(frame)
        if not frames:
            return _empty(SHORT_INTEREST_COLUMNS)
        return pd.concat(frames, ignore_index=True)[SHORT_INTEREST_COLUMNS]

    def splits(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """No synthetic ticker ever splits: always empty (SPLIT_COLUMNS)."""
        return _empty(SPLIT_COLUMNS)

    # -- ground truth for tests ------------------------------------------------------------

    def planted_betas(self, symbols: Sequence[str]) -> pd.DataFrame:
        """The betas each ticker was generated with (index symbol, columns FACTOR_ETFS names).

        Spread parametrization: ``r = Market * SPY + sum_k style_k * (ETF_k - SPY) + e``.
        NaN rows for options and tickers without data.
        """
        rows = []
        for symbol in symbols:
            key = _key(symbol)
            if is_option_symbol(key) or not _has_data(key):
                rows.append(np.full(len(FACTOR_NAMES), np.nan))
            else:
                rows.append(_params(key).betas.copy())
        return pd.DataFrame(
            rows, index=pd.Index(list(symbols), name="symbol"), columns=FACTOR_NAMES
        )


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
