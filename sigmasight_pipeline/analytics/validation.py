"""Input checks shared by the `analytics` functions: contract violations fail loudly.

Every public function in `analytics` that takes dates, returns or prices runs its inputs
through these checks, so bad input is a `ValueError` naming where it is, never a quiet NaN:

* dates are tz-naive (a tz-aware index raises; mixing aware and naive dates would otherwise
  match nothing and give all-null results with a misleading reason);
* a session axis is sorted (sorted here, since the order carries no information) and unique
  (duplicates raise, naming the first few);
* a (key, key) pair appears once in long input (duplicates raise, naming the first few pairs)
  instead of a pivot silently keeping one of them;
* returns are finite where present (NaN means missing and is allowed, +-inf raises) and never
  below -100 % (a price cannot go below zero).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "MAX_NAMED",
    "is_price",
    "naive_dates",
    "require_finite",
    "require_returns",
    "require_unique_pairs",
    "session_index",
    "sorted_unique_rows",
    "unique_pivot",
]

MAX_NAMED = 5  # how many offending rows / pairs an error message names


def _format_key(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else str(value)
    return str(value)


def _named(items: Sequence[object], total: int) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    more = f" (and {total - MAX_NAMED} more)" if total > MAX_NAMED else ""
    return shown + more


def naive_dates(values: Iterable | pd.Index | pd.Series, name: str) -> pd.DatetimeIndex:
    """Dates (date, str, Timestamp) as naive midnight timestamps; a tz-aware input raises."""
    if isinstance(values, pd.Series):
        values = pd.Index(values)
    raw = values if isinstance(values, pd.Index) else pd.Index(list(values))
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"{name}: expected tz-naive dates, got timezone {raw.dtype.tz}")
    if isinstance(raw, pd.DatetimeIndex):  # already dates: no parsing (a chunk's rows)
        return raw.normalize()
    try:
        index = pd.DatetimeIndex(pd.to_datetime(raw))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not dates ({exc})") from exc
    if index.tz is not None:
        raise ValueError(f"{name}: expected tz-naive dates, got timezone {index.tz}")
    return index.normalize()


def session_index(sessions: Iterable, name: str = "sessions") -> pd.DatetimeIndex:
    """A session axis: tz-naive, normalized, sorted; duplicate sessions raise."""
    index = naive_dates(sessions, name)
    if index.has_duplicates:
        dupes = index[index.duplicated()].unique()
        raise ValueError(
            f"{name} has duplicate dates: {_named([_format_key(d) for d in dupes], len(dupes))}"
        )
    return index.sort_values().rename("trade_date")


def sorted_unique_rows(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """A copy of a dates x columns frame on a `session_index` (rows sorted, unique, naive)."""
    out = frame.copy()
    out.index = naive_dates(out.index, f"{name} index")
    session_index(out.index, f"{name} index")  # raises on duplicates
    return out.sort_index()


def require_unique_pairs(frame: pd.DataFrame, keys: Sequence[str], name: str) -> None:
    """Raise if a combination of `keys` appears more than once, naming the first few."""
    dupes = frame.loc[frame.duplicated(list(keys), keep=False), list(keys)].drop_duplicates()
    if dupes.empty:
        return
    pairs = [
        "(" + ", ".join(_format_key(v) for v in row) + ")"
        for row in dupes.itertuples(index=False, name=None)
    ]
    raise ValueError(
        f"{name} has duplicate ({', '.join(keys)}) rows: {_named(pairs, len(pairs))}; "
        "each must appear once"
    )


def unique_pivot(
    frame: pd.DataFrame, index: str | list[str], columns: str, values: str, name: str
) -> pd.DataFrame:
    """`frame.pivot(...)` that raises a ValueError naming the duplicate keys (never picks one)."""
    keys = [*([index] if isinstance(index, str) else index), columns]
    require_unique_pairs(frame, keys, name)
    return frame.pivot(index=index, columns=columns, values=values)


def is_price(values: np.ndarray | pd.DataFrame | pd.Series) -> np.ndarray:
    """True where a value can be a market price: finite and > 0 (a close <= 0 never is)."""
    array = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(array) & (array > 0)


def _where(mask: np.ndarray, frame: pd.DataFrame | pd.Series | np.ndarray) -> tuple[list, int]:
    """Labels '(row, column)' of the True cells of mask (first few) and their count."""
    if mask.ndim == 1:
        rows = np.flatnonzero(mask)
        cols = np.zeros_like(rows)
    else:
        rows, cols = np.nonzero(mask)
    total = len(rows)
    labels: list[str] = []
    for i, j in zip(rows[:MAX_NAMED], cols[:MAX_NAMED], strict=True):
        if isinstance(frame, pd.DataFrame):
            labels.append(f"({_format_key(frame.index[i])}, {_format_key(frame.columns[j])})")
        elif isinstance(frame, pd.Series):
            labels.append(_format_key(frame.index[i]))
        else:
            labels.append(f"row {i}" if mask.ndim == 1 else f"({i}, {j})")
    return labels, total


def require_finite(
    values: pd.DataFrame | pd.Series | np.ndarray, name: str, allow_nan: bool = True
) -> None:
    """Raise if any value is +-inf (or NaN when `allow_nan` is False), naming where."""
    array = np.asarray(values, dtype=float)
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad.any():
        labels, total = _where(bad, values)
        what = "infinite" if allow_nan else "non-finite"
        raise ValueError(f"{name} has {total} {what} value(s) at {_named(labels, total)}")


def require_returns(values: pd.DataFrame | pd.Series | np.ndarray, name: str) -> None:
    """Returns must be finite where present (NaN = missing) and >= -1 (-100 %)."""
    require_finite(values, name)
    array = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        below = array < -1.0
    if below.any():
        labels, total = _where(below, values)
        raise ValueError(
            f"{name} has {total} return(s) below -100 % at {_named(labels, total)}: "
            "a price cannot fall below zero (check for a close <= 0 or a wrong base)"
        )
