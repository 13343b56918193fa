"""Benchmark: batched rolling factor betas against a per-symbol, per-window statsmodels loop.

Run with ``uv run python -m sigmasight_pipeline.benchmarks.factors``. 500 synthetic symbols,
252 end dates, 60-day windows. The statsmodels loop (two OLS fits per symbol and window: the
univariate market beta and the multivariate spread regression) would take minutes, so it is
timed on the first REFERENCE_WINDOWS end dates and extrapolated linearly (the notes say so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.factors import FACTOR_NAMES, rolling_factor_betas, spread_design
from sigmasight_pipeline.calendar import last_sessions
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS
from sigmasight_pipeline.resources.synthetic import SyntheticMarket

N_SYMBOLS = 500
N_END_DATES = 252
WINDOW = 60
LAST_DAY = "2025-12-31"
REPEATS = 3
REFERENCE_WINDOWS = 8
GAP_SYMBOLS = 50  # symbols given scattered missing days in the "with gaps" case
ETFS = list(FACTOR_ETFS.values())


def make_returns() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic daily returns: (assets: dates x N_SYMBOLS, factor ETFs: dates x 7)."""
    days = last_sessions(LAST_DAY, N_END_DATES + WINDOW)
    symbols = [f"B{i:03d}" for i in range(N_SYMBOLS)]
    wanted = pd.DataFrame(
        [(s, d.date()) for s in [*ETFS, *symbols] for d in days], columns=["symbol", "trade_date"]
    )
    bars = SyntheticMarket().daily_bars(wanted)
    closes = bars.pivot(index="trade_date", columns="symbol", values="close")
    closes.index = pd.DatetimeIndex(closes.index)
    returns = closes.pct_change().iloc[1:]
    return returns[symbols], returns[ETFS]


def _with_gaps(assets: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = assets.copy()
    values = out.to_numpy(copy=True)
    holes = rng.random((len(out), GAP_SYMBOLS)) < 0.02
    values[:, :GAP_SYMBOLS][holes] = np.nan
    return pd.DataFrame(values, index=out.index, columns=out.columns)


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _statsmodels_loop(
    assets: pd.DataFrame, etfs: pd.DataFrame, ends: pd.DatetimeIndex
) -> pd.DataFrame:
    """The reference: two statsmodels OLS fits per (end date, symbol)."""
    import statsmodels.api as sm

    design = spread_design(etfs)
    rows = []
    for end in ends:
        p = assets.index.get_loc(end)
        window_x = design.iloc[p - WINDOW + 1 : p + 1]
        for symbol in assets.columns:
            y = assets[symbol].iloc[p - WINDOW + 1 : p + 1]
            ok = y.notna().to_numpy()
            x = window_x.to_numpy()[ok]
            multi = sm.OLS(y.to_numpy()[ok], sm.add_constant(x, has_constant="add")).fit()
            uni = sm.OLS(y.to_numpy()[ok], sm.add_constant(x[:, 0], has_constant="add")).fit()
            betas = [uni.params[1], *multi.params[2:]]
            ses = [uni.bse[1], *multi.bse[2:]]
            r2s = [uni.rsquared] + [multi.rsquared] * (len(FACTOR_NAMES) - 1)
            for factor, b, s, r2 in zip(FACTOR_NAMES, betas, ses, r2s, strict=True):
                rows.append((end.date(), symbol, factor, b, s, r2))
    return pd.DataFrame(
        rows, columns=["trade_date", "symbol", "factor", "beta", "std_err", "r_squared"]
    )


def _max_abs_diff(ours: pd.DataFrame, ref: pd.DataFrame) -> float:
    keys = ["trade_date", "symbol", "factor"]
    both = ours.merge(ref, on=keys, suffixes=("", "_ref"), validate="one_to_one")
    assert len(both) == len(ref)
    cols = ["beta", "std_err", "r_squared"]
    diffs = [np.abs(both[c] - both[f"{c}_ref"]).max() for c in cols]
    return float(max(diffs))


def _case(name: str, assets: pd.DataFrame, etfs: pd.DataFrame) -> dict:
    ends = assets.index[-N_END_DATES:]
    ours_s, ours = _best_of(lambda: rolling_factor_betas(assets, etfs, ends, WINDOW), REPEATS)
    subset = ends[:REFERENCE_WINDOWS]
    sub_s, ref = _best_of(lambda: _statsmodels_loop(assets, etfs, subset), 1)
    ref_s = sub_s * len(ends) / len(subset)
    n_fits = 2 * len(subset) * assets.shape[1]
    return {
        "benchmark": f"{name}: {assets.shape[1]} symbols x {len(ends)} end dates, "
        f"{WINDOW}-day windows",
        "ours_s": ours_s,
        "reference": "statsmodels OLS loop",
        "reference_s": ref_s,
        "ratio": ref_s / ours_s,
        "max_abs_diff": _max_abs_diff(ours, ref),
        "notes": (
            f"ours: whole call incl. long-format DataFrame ({len(ours):,} rows), best of "
            f"{REPEATS}; reference: {n_fits:,} statsmodels fits (univariate market + spread "
            f"regression per symbol and window) timed on the first {len(subset)} of "
            f"{len(ends)} end dates ({sub_s:.2f} s) and extrapolated x{len(ends) / len(subset):.1f}"
            f"; max abs diff over beta, std_err, r_squared on that subset"
        ),
    }


def run() -> list[dict]:
    """Time the batched solve on complete data and on data with gaps."""
    assets, etfs = make_returns()
    gappy = _with_gaps(assets)
    return [
        _case("complete data", assets, etfs),
        _case(f"{GAP_SYMBOLS} symbols with 2 % missing days", gappy, etfs),
    ]


def main() -> None:
    for row in run():
        print(
            f"{row['benchmark']}: ours {row['ours_s']:.3f} s, {row['reference']} "
            f"{row['reference_s']:.1f} s, ratio {row['ratio']:,.0f}x, "
            f"max abs diff {row['max_abs_diff']:.2e}"
        )
        print(f"    {row['notes']}")


if __name__ == "__main__":
    main()
