"""Benchmark: vectorized Black-Scholes Greeks / implied vol against per-option Python loops.

Run with ``uv run python -m sigmasight_pipeline.benchmarks.greeks``. The references (mibian,
vollib) are dev dependencies, imported only inside ``run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.greeks import GREEK_COLUMNS, bs_greeks, implied_vol

N_OPTIONS = 10_000
SEED = 20_240_601
REPEATS = 20
IV_REFERENCE_SUBSET = 1_000
REL_FLOOR = 1e-9  # relative differences are taken over |reference| > REL_FLOOR


def make_options(n: int = N_OPTIONS, seed: int = SEED) -> pd.DataFrame:
    """Seeded random contracts on a realistic grid (S 20..500, K/S 0.7..1.3, 1 day..2y, ...)."""
    rng = np.random.default_rng(seed)
    spot = rng.uniform(20.0, 500.0, n)
    days = rng.integers(1, 731, n)
    return pd.DataFrame(
        {
            "spot": spot,
            "strike": spot * rng.uniform(0.7, 1.3, n),
            "days": days,
            "t_years": days / 365.0,
            "rate": rng.uniform(0.0, 0.06, n),
            "vol": rng.uniform(0.10, 0.80, n),
            "is_call": rng.random(n) < 0.5,
        }
    )


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _diffs(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    both = np.isfinite(ours) & np.isfinite(ref)
    abs_diff = np.abs(ours - ref)[both]
    big = both & (np.abs(ref) > REL_FLOOR)
    rel = np.abs(ours - ref)[big] / np.abs(ref[big])
    return float(abs_diff.max(initial=0.0)), float(rel.max(initial=0.0))


def _ours(opts: pd.DataFrame) -> pd.DataFrame:
    return bs_greeks(
        opts["spot"].to_numpy(),
        opts["strike"].to_numpy(),
        opts["t_years"].to_numpy(),
        opts["rate"].to_numpy(),
        opts["vol"].to_numpy(),
        opts["is_call"].to_numpy(),
    )


def _mibian_loop(opts: pd.DataFrame) -> np.ndarray:
    import mibian

    out = np.empty((len(opts), len(GREEK_COLUMNS)))
    rows = zip(
        opts["spot"], opts["strike"], opts["rate"], opts["days"], opts["vol"], opts["is_call"],
        strict=True,
    )  # fmt: skip
    for i, (s, k, r, days, v, call) in enumerate(rows):
        # mibian: rate and vol in percent, time in days; computes every Greek for call and put.
        m = mibian.BS([s, k, r * 100.0, days], volatility=v * 100.0)
        if call:
            out[i] = (m.callPrice, m.callDelta, m.gamma, m.callTheta, m.vega, m.callRho)
        else:
            out[i] = (m.putPrice, m.putDelta, m.gamma, m.putTheta, m.vega, m.putRho)
    return out


def _vollib_loop(opts: pd.DataFrame) -> np.ndarray:
    from vollib.black_scholes import black_scholes
    from vollib.black_scholes.greeks.analytical import delta, gamma, rho, theta, vega

    funcs = (black_scholes, delta, gamma, theta, vega, rho)
    out = np.empty((len(opts), len(GREEK_COLUMNS)))
    rows = zip(
        opts["spot"], opts["strike"], opts["t_years"], opts["rate"], opts["vol"], opts["is_call"],
        strict=True,
    )  # fmt: skip
    for i, (s, k, t, r, v, call) in enumerate(rows):
        flag = "c" if call else "p"
        out[i] = [f(flag, s, k, t, r, v) for f in funcs]
    return out


def _vollib_iv_loop(prices: np.ndarray, opts: pd.DataFrame) -> np.ndarray:
    from vollib.black_scholes.implied_volatility import implied_volatility

    out = np.full(len(opts), np.nan)
    rows = zip(
        prices, opts["spot"], opts["strike"], opts["t_years"], opts["rate"], opts["is_call"],
        strict=True,
    )  # fmt: skip
    for i, (p, s, k, t, r, call) in enumerate(rows):
        try:
            out[i] = implied_volatility(p, s, k, t, r, "c" if call else "p")
        except Exception:  # vollib raises on prices below intrinsic / above maximum
            out[i] = np.nan
    return out


def _row(benchmark: str, ours_s: float, reference: str, reference_s: float, diffs, notes: str):
    max_abs, max_rel = diffs
    return {
        "benchmark": benchmark,
        "ours_s": ours_s,
        "reference": reference,
        "reference_s": reference_s,
        "ratio": reference_s / ours_s,
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "notes": notes,
    }


def run() -> list[dict]:
    """Time bs_greeks and implied_vol on 10,000 seeded options against Python loops."""
    opts = make_options()
    n = len(opts)
    rows = []

    ours_s, ours = _best_of(lambda: _ours(opts), REPEATS)
    ours_arr = ours[list(GREEK_COLUMNS)].to_numpy()
    for name, loop in (("mibian loop", _mibian_loop), ("vollib loop", _vollib_loop)):
        ref_s, ref = _best_of(lambda loop=loop: loop(opts), 1)
        diffs = _diffs(ours_arr, ref)
        per_col = ", ".join(
            f"{c} {_diffs(ours_arr[:, j], ref[:, j])[1]:.1e}" for j, c in enumerate(GREEK_COLUMNS)
        )
        rows.append(
            _row(
                f"Greeks, {n:,} options",
                ours_s,
                name,
                ref_s,
                diffs,
                f"price+delta+gamma+theta+vega+rho; ours best of {REPEATS}, reference 1 run; "
                f"rel diff over |ref| > {REL_FLOOR:g}; max rel per column: {per_col}",
            )
        )

    prices = ours["price"].to_numpy()
    args = tuple(opts[c].to_numpy() for c in ("spot", "strike", "t_years", "rate", "is_call"))
    iv_s, (iv, converged) = _best_of(lambda: implied_vol(prices, *args), REPEATS)
    subset = opts.iloc[:IV_REFERENCE_SUBSET]
    sub_s, ref_iv = _best_of(lambda: _vollib_iv_loop(prices[:IV_REFERENCE_SUBSET], subset), 1)
    ref_s = sub_s * n / IV_REFERENCE_SUBSET
    sub_conv = converged[:IV_REFERENCE_SUBSET]
    true_vol = opts["vol"].to_numpy()
    rows.append(
        _row(
            f"Implied vol, {n:,} options",
            iv_s,
            f"vollib loop ({IV_REFERENCE_SUBSET:,}, extrapolated x{n // IV_REFERENCE_SUBSET})",
            ref_s,
            _diffs(iv[:IV_REFERENCE_SUBSET][sub_conv], ref_iv[sub_conv]),
            f"ours best of {REPEATS}; converged {int(converged.sum()):,}/{n:,} (the rest are deep "
            f"ITM/OTM with no vol information left in the price, flagged); max |iv - true vol| "
            f"on converged rows {np.abs(iv - true_vol)[converged].max():.1e}; diffs vs vollib on "
            f"the converged subset rows; vollib loop {sub_s:.3f} s for {IV_REFERENCE_SUBSET:,}",
        )
    )
    return rows


def main() -> None:
    for row in run():
        print(
            f"{row['benchmark']}: ours {row['ours_s'] * 1e3:.3f} ms, {row['reference']} "
            f"{row['reference_s']:.3f} s, ratio {row['ratio']:,.0f}x, "
            f"max abs diff {row['max_abs_diff']:.2e}, max rel diff {row['max_rel_diff']:.2e}"
        )
        print(f"    {row['notes']}")


if __name__ == "__main__":
    main()
