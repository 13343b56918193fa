"""Instruments: OCC option symbols, position types and contract multipliers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

POSITION_TYPES = ("LONG", "SHORT", "LC", "LP", "SC", "SP")
OPTION_TYPES = ("LC", "LP", "SC", "SP")
OPTION_MULTIPLIER = 100
STOCK_MULTIPLIER = 1

# OCC: root (1-6 chars, letters/digits/dot), YYMMDD, C|P, strike x 1000 as 8 digits.
OCC_REGEX = r"(?P<root>[A-Z][A-Z0-9.]{0,5})(?P<yymmdd>\d{6})(?P<right>[CP])(?P<strike>\d{8})"
STOCK_REGEX = r"[A-Z][A-Z0-9]{0,5}(?:[.-][A-Z]{1,2})?"
OCC_PATTERN = re.compile(f"^{OCC_REGEX}$")
STOCK_PATTERN = re.compile(f"^{STOCK_REGEX}$")
# Loosely option-shaped (root, digits, C/P, digits): worth a specific "malformed OCC" message.
OPTION_LIKE_REGEX = r"[A-Z][A-Z0-9.]{0,5}\d{4,}[CP]\d+"
OCC_MIN_LENGTH = 16  # 1-char root + YYMMDD + C/P + 8 digits; stock symbols are shorter
OCC_FORMAT_HINT = "ROOT + YYMMDD + C/P + 8-digit strike x1000, e.g. AAPL270115C00200000"


class SymbolError(ValueError):
    """A ticker that is neither a stock symbol nor a well-formed OCC option symbol."""


@dataclass(frozen=True)
class OptionContract:
    symbol: str
    underlying: str
    expiry: date
    right: str  # "C" or "P"
    strike: float

    @property
    def polygon_ticker(self) -> str:
        return f"O:{self.symbol}"


def parse_occ(symbol: str) -> OptionContract:
    """Parse an OCC symbol such as `AAPL250620C00150000` (an `O:` prefix is accepted)."""
    raw = symbol.strip().upper().removeprefix("O:")
    match = OCC_PATTERN.match(raw)
    if not match:
        raise SymbolError(
            f"{symbol!r} is not an OCC option symbol (ROOT + YYMMDD + C/P + 8-digit strike x1000, "
            "e.g. AAPL250620C00150000)"
        )
    yymmdd = match["yymmdd"]
    try:
        expiry = date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError as exc:
        raise SymbolError(f"{symbol!r}: expiry {yymmdd} is not a real date") from exc
    strike = int(match["strike"]) / 1000.0
    if strike <= 0:
        raise SymbolError(f"{symbol!r}: strike must be positive")
    return OptionContract(raw, match["root"], expiry, match["right"], strike)


def is_option_symbol(symbol: str) -> bool:
    return bool(OCC_PATTERN.match(symbol.strip().upper().removeprefix("O:")))


def is_stock_symbol(symbol: str) -> bool:
    return bool(STOCK_PATTERN.match(symbol.strip().upper()))


def classify_symbol(symbol: str) -> OptionContract | None:
    """None for a stock symbol, the parsed contract for an option; SymbolError otherwise."""
    if is_option_symbol(symbol):
        return parse_occ(symbol)
    if is_stock_symbol(symbol):
        return None
    raise SymbolError(
        f"{symbol!r} is neither a stock ticker (1-6 letters/digits, optional .A class suffix) nor "
        "an OCC option symbol"
    )


def position_type(quantity: float, option_right: str | None) -> str:
    """LONG/SHORT for stocks, LC/LP/SC/SP for options, from the sign of the quantity."""
    if quantity == 0:
        raise ValueError("quantity must be non-zero")
    long = quantity > 0
    if option_right is None:
        return "LONG" if long else "SHORT"
    return ("L" if long else "S") + option_right


def _joined(values: np.ndarray) -> str | None:
    """The values newline-joined, or None if one holds a newline (the joined checks need one
    line per value). A regex over this one string runs in C: the fast path for 100k rows."""
    joined = "\n".join(values)
    return joined if joined.count("\n") == max(len(values) - 1, 0) else None


def _as_str(values: pd.Series) -> pd.Series:
    """Object Series of str ("" for missing values)."""
    return values.astype(object).where(values.notna(), "").astype(str).astype(object)


def _unnamed(regex: str) -> str:
    return re.sub(r"\(\?P<\w+>", "(?:", regex)


def match_mask(values: pd.Series, regex: str) -> pd.Series:
    """Vectorized `fullmatch` of string values (all strings): one regex over the joined values
    when they all match (the common case), per value otherwise."""
    if values.empty:
        return pd.Series(False, index=values.index, dtype=bool)
    joined = _joined(values.to_numpy(dtype=object))
    if joined is not None:
        one = f"(?:{_unnamed(regex)})"
        if re.fullmatch(f"{one}(?:\n{one})*", joined):
            return pd.Series(True, index=values.index, dtype=bool)
    return values.str.fullmatch(regex).fillna(False).astype(bool)


def normalize_symbols(symbols: pd.Series) -> pd.Series:
    """Upper-cased, stripped symbols; `O:` dropped and OSI space padding removed from options.

    Each pass runs only if a check over the joined values says it changes something.
    """
    s = _as_str(symbols)
    joined = "\n".join(s.to_numpy())
    if re.search(r"(?:^|\n)[^\S\n]|[^\S\n](?:\n|$)", joined):
        s = s.str.strip()
    if joined.upper() != joined:
        s = s.str.upper()
    if "O:" in joined.upper():
        s = s.str.removeprefix("O:")
    if re.search(r"[^\S\n]", joined):
        squeezed = s.str.replace(r"\s+", "", regex=True)
        s = s.where(~match_mask(squeezed, OCC_REGEX), squeezed)
    return s


def parse_occ_symbols(symbols: pd.Series) -> pd.DataFrame:
    """Vectorized OCC parsing of normalized symbols (see `normalize_symbols`).

    Columns: `is_occ` (shaped like an OCC symbol), `valid` (is_occ, a real expiry date and a
    positive strike), `underlying`, `option_right`, `expiry` (datetime64, NaT unless a real
    date), `strike` (float, NaN unless is_occ). Rows that are not OCC-shaped have NA parts.
    """
    values = _as_str(symbols)
    lengths = np.fromiter(map(len, values.to_numpy()), dtype=np.int64, count=len(values))
    candidates = values[lengths >= OCC_MIN_LENGTH]  # only these can be OCC: regex on them only
    if candidates.empty:
        columns = ["root", "yymmdd", "right", "strike"]
        parts = pd.DataFrame(np.nan, index=symbols.index, columns=columns).astype(object)
    else:
        parts = _extract_occ(candidates).reindex(symbols.index).astype(object)
    is_occ = parts["root"].notna().to_numpy(dtype=bool)
    expiry = pd.to_datetime("20" + parts["yymmdd"], format="%Y%m%d", errors="coerce")
    strike = pd.to_numeric(parts["strike"], errors="coerce").astype(float) / 1000.0
    valid = is_occ & expiry.notna().to_numpy() & (strike > 0).to_numpy()
    return pd.DataFrame(
        {
            "is_occ": is_occ,
            "valid": valid,
            "underlying": parts["root"],
            "option_right": parts["right"],
            "expiry": expiry,
            "strike": strike,
        },
        index=symbols.index,
    )


def _extract_occ(values: pd.Series) -> pd.DataFrame:
    """OCC parts of each value; one C-level findall over the joined values when all match."""
    joined = _joined(values.to_numpy(dtype=object))
    if joined is not None and match_mask(values, OCC_REGEX).all():
        rows = re.findall(f"^{OCC_REGEX}$", joined, flags=re.MULTILINE)
        if len(rows) == len(values):
            columns = list(re.compile(OCC_REGEX).groupindex)
            return pd.DataFrame(rows, index=values.index, columns=columns, dtype=object)
    return values.str.extract(OCC_REGEX)


def stock_symbol_mask(symbols: pd.Series, occ: pd.DataFrame | None = None) -> pd.Series:
    """True where a normalized symbol is a stock ticker (`occ`: its parse, to skip options)."""
    rest = symbols if occ is None else symbols[~occ["is_occ"].to_numpy()]
    mask = match_mask(_as_str(rest), STOCK_REGEX)
    return mask.reindex(symbols.index, fill_value=False).astype(bool)


def option_like_mask(symbols: pd.Series) -> pd.Series:
    """True where a normalized symbol looks like an (maybe malformed) option symbol."""
    return match_mask(_as_str(symbols), OPTION_LIKE_REGEX)


def describe_positions(
    symbols: pd.Series, quantities: pd.Series, occ: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per position: position_type, underlying, option_right, strike, expiry, multiplier.

    Vectorized. Raises SymbolError naming the first bad symbol and ValueError for a zero
    quantity; validation that collects every bad row happens before this (`portfolio_csv`).
    `occ` may pass `parse_occ_symbols(normalize_symbols(symbols))` when already computed.
    """
    normalized = normalize_symbols(symbols)
    if occ is None:
        occ = parse_occ_symbols(normalized)
    is_option = occ["is_occ"].to_numpy()
    bad = ~is_option & ~stock_symbol_mask(normalized, occ).to_numpy()
    bad |= is_option & ~occ["valid"].to_numpy()
    if bad.any():
        classify_symbol(str(symbols[bad].iloc[0]))  # raises with the specific reason
    qty = pd.to_numeric(quantities, errors="coerce").to_numpy(dtype=float)
    if (qty == 0).any() or np.isnan(qty).any():
        raise ValueError("quantity must be a non-zero number")
    side = np.where(qty > 0, "L", "S")
    right = occ["option_right"].to_numpy(dtype=object)
    option_type = np.char.add(side, np.where(is_option, right, "").astype(str))
    ptype = np.where(is_option, option_type, np.where(qty > 0, "LONG", "SHORT")).astype(object)
    expiry = np.full(len(normalized), None, dtype=object)
    expiry[is_option] = occ["expiry"][is_option].dt.date.to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "position_type": ptype,
            "underlying": np.where(is_option, occ["underlying"].to_numpy(dtype=object), normalized),
            "option_right": np.where(is_option, right, None),
            "strike": occ["strike"].where(is_option).to_numpy(dtype=float),
            "expiry": expiry,
            "multiplier": np.where(is_option, OPTION_MULTIPLIER, STOCK_MULTIPLIER).astype(int),
        },
        index=symbols.index,
    )
