"""Vectorized Black-Scholes prices, Greeks and implied volatility (European, no dividends).

Pure numpy/scipy. Conventions are those of mibian and vollib:

* time in years of 365 calendar days (``t_years = calendar_days / 365``);
* ``rate`` and ``vol`` as decimals (0.05, 0.20);
* theta per calendar day (annual theta / 365);
* vega per 1 volatility point (change in price for +0.01 of vol);
* rho per 1 rate point (change in price for +0.01 of rate).

Greeks are per long contract of one unit of underlying (multiply by the contract multiplier and
the signed quantity at the position level).

Invalid inputs never raise and never come back as 0: a row with a NaN/inf input, spot or strike
<= 0, or vol <= 0 on a live option (``t_years > 0``) is NaN in every output column. Rows with
``t_years <= 0`` (expiring today or expired) get the intrinsic value as price and 0 for every
Greek, delta included (the caller marks these rows "expired"); their vol is not used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import ndtr

__all__ = [
    "FALLBACK_GREEKS",
    "GREEK_COLUMNS",
    "bs_greeks",
    "bs_price",
    "implied_vol",
    "portfolio_greeks",
    "position_greeks",
]

DAYS_PER_YEAR = 365.0
# Option quotes are in cents: a quote is known to half a tick, and an implied vol counts as
# converged only if that half tick moves it by at most IV_ACCURACY (one vol point).
QUOTE_TICK = 0.01
IV_ACCURACY = 0.01
GREEK_COLUMNS = ("price", "delta", "gamma", "theta", "vega", "rho")
_INV_SQRT_2PI = 0.3989422804014327

# Seed PRD fallback Greeks per contract, used when inputs are missing (rows marked "fallback").
# NB: these are already signed for the position direction (short rows are negative delta etc.),
# unlike the model Greeks which are per long contract.
FALLBACK_GREEKS = pd.DataFrame(
    {
        "delta": [0.6, -0.4, -0.4, 0.3],
        "gamma": [0.02, -0.02, 0.02, -0.02],
        "theta": [-0.5, 0.5, -0.5, 0.5],
        "vega": [0.3, -0.3, 0.3, -0.3],
        "rho": [0.0, 0.0, 0.0, 0.0],
    },
    index=pd.Index(["LC", "SC", "LP", "SP"], name="position_type"),
)


def _prepare(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> tuple[np.ndarray, ...]:
    """Broadcast inputs to float arrays; return them with the call flag and row masks."""
    s, k, t, r, v, c = np.broadcast_arrays(
        np.asarray(spot, dtype=float),
        np.asarray(strike, dtype=float),
        np.asarray(t_years, dtype=float),
        np.asarray(rate, dtype=float),
        np.asarray(vol, dtype=float),
        np.asarray(is_call, dtype=bool),
    )
    # Comparisons with NaN are False, so NaN spot/strike/t/vol fail these tests.
    base_ok = (s > 0) & (k > 0) & np.isfinite(s) & np.isfinite(k) & np.isfinite(r) & (t < np.inf)
    expired = base_ok & (t <= 0)
    live = base_ok & (t > 0) & (v > 0) & (v < np.inf)
    return s, k, t, r, v, c, expired, live


def _intrinsic(s: np.ndarray, k: np.ndarray, call: np.ndarray) -> np.ndarray:
    return np.where(call, np.maximum(s - k, 0.0), np.maximum(k - s, 0.0))


def bs_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> np.ndarray:
    """Black-Scholes price on broadcastable arrays (float ndarray of the broadcast shape).

    ``t_years <= 0`` gives the intrinsic value; invalid rows give NaN (see module docstring).
    """
    s, k, t, r, v, call, expired, live = _prepare(spot, strike, t_years, rate, vol, is_call)
    with np.errstate(all="ignore"):
        sign = np.where(call, 1.0, -1.0)
        vs = v * np.sqrt(t)
        d1 = (np.log(s / k) + (r + 0.5 * v * v) * t) / vs
        d2 = d1 - vs
        # Call: S N(d1) - K e^-rt N(d2); put: K e^-rt N(-d2) - S N(-d1) (no 1 - N cancellation).
        price = sign * (s * ndtr(sign * d1) - k * np.exp(-r * t) * ndtr(sign * d2))
        out = np.where(live, price, np.nan)
        out = np.where(expired, _intrinsic(s, k, call), out)
    return out


def _index_of(*args: ArrayLike) -> pd.Index | None:
    for a in args:
        if isinstance(a, pd.Series | pd.Index):
            return a.index if isinstance(a, pd.Series) else a
    return None


def bs_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> pd.DataFrame:
    """Black-Scholes price and Greeks per contract, one row per (broadcast, flattened) option.

    Columns: price, delta, gamma, theta (per calendar day), vega (per vol point), rho (per rate
    point). If an input is a pandas Series (or Index) of the broadcast length, its index is
    reused. Expired rows (``t_years <= 0``): intrinsic price, all Greeks 0. Invalid rows: NaN.
    """
    s, k, t, r, v, call, expired, live = _prepare(spot, strike, t_years, rate, vol, is_call)
    with np.errstate(all="ignore"):
        sign = np.where(call, 1.0, -1.0)
        sqrt_t = np.sqrt(t)
        vs = v * sqrt_t
        d1 = (np.log(s / k) + (r + 0.5 * v * v) * t) / vs
        d2 = d1 - vs
        kdisc = k * np.exp(-r * t)
        n1 = ndtr(sign * d1)  # N(d1) for calls, N(-d1) for puts
        n2 = ndtr(sign * d2)
        pdf1 = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        k_n2 = kdisc * n2
        cols = {
            "price": sign * (s * n1 - k_n2),
            "delta": sign * n1,
            "gamma": pdf1 / (s * vs),
            "theta": (-s * pdf1 * v / (2.0 * sqrt_t) - sign * r * k_n2) / DAYS_PER_YEAR,
            "vega": s * pdf1 * sqrt_t * 0.01,
            "rho": sign * t * k_n2 * 0.01,
        }
        intrinsic = _intrinsic(s, k, call)
        for name, values in cols.items():
            values = np.where(live, values, np.nan)
            cols[name] = np.where(expired, intrinsic if name == "price" else 0.0, values).ravel()
    index = _index_of(spot, strike, t_years, rate, vol, is_call)
    if index is not None and len(index) != s.size:
        index = None
    return pd.DataFrame(cols, index=index)


def _price_vega(
    sigma: np.ndarray,
    s: np.ndarray,
    kdisc: np.ndarray,
    log_fk: np.ndarray,
    sqrt_t: np.ndarray,
    w: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Price and vega (per unit vol) from precomputed ln(F/K), sqrt(t); w = +1 call, -1 put."""
    vs = sigma * sqrt_t
    d1 = log_fk / vs + 0.5 * vs
    value = w * (s * ndtr(w * d1) - kdisc * ndtr(w * (d1 - vs)))
    vega = s * _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1) * sqrt_t
    return value, vega


def _resolved_at_tick(
    sigma: np.ndarray,
    q: np.ndarray,
    half_tick: np.ndarray,
    vol_accuracy: float,
    args: tuple[np.ndarray, ...],
) -> np.ndarray:
    """True where every (OTM) price within half a tick of q implies a vol within vol_accuracy
    of sigma: the price moves by at least half a tick over +-vol_accuracy."""
    above = _price_vega(sigma + vol_accuracy, *args)[0]
    low = sigma - vol_accuracy
    below = np.where(low > 0, _price_vega(np.where(low > 0, low, 1.0), *args)[0], 0.0)
    return (half_tick == 0) | ((above - q >= half_tick) & (q - below >= half_tick))


def implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    is_call: ArrayLike,
    lo: float = 1e-4,
    hi: float = 5.0,
    tol: float = 1e-8,
    max_iter: int = 100,
    tick: ArrayLike = QUOTE_TICK,
    vol_accuracy: float = IV_ACCURACY,
) -> tuple[np.ndarray, np.ndarray]:
    """Black-Scholes implied volatility, vectorized over all options; returns ``(vol, converged)``.

    Every price is first mapped by put-call parity to the out-of-the-money option of the same
    strike (its time value), then solved by safeguarded Newton on ``log(price)`` (nearly linear
    in vol, so deep OTM / short-dated options converge in a few steps) inside a per-option
    bracket that starts as ``[lo, hi]``; a step that leaves the bracket is replaced by bisection.
    Converged means the last step or the bracket width is <= ``tol`` (in vol) AND the vol is
    determined to ``tol`` by the price at double precision (vega * tol above the price rounding
    noise; deep ITM options with no time value left fail this) AND the quote pins the vol down:
    a quote is only known to half a ``tick`` (default one cent), so every price within half a
    tick of it must imply a vol within ``vol_accuracy`` of the solution, i.e.
    ``price(vol + vol_accuracy) - price >= tick / 2`` and ``price - price(vol - vol_accuracy)
    >= tick / 2`` (exact, since the price rises with vol; to first order
    ``vega * vol_accuracy >= tick / 2``).
    Cent-rounded quotes of options whose price hardly moves with vol (deep ITM, tiny time
    value) are therefore not converged. ``tick`` may be an array (one per quote); pass
    ``tick=0`` for prices known to double precision (model prices).

    NaN and ``converged=False``: invalid inputs, ``t_years <= 0``, prices not strictly inside
    the no-arbitrage bounds (discounted intrinsic, and S for calls / K e^-rt for puts), and
    prices whose implied vol lies outside ``[lo, hi]``. A row that does not converge (after
    ``max_iter`` or by the conditioning test) keeps its best estimate with ``converged=False``.
    """
    if not vol_accuracy > 0:
        raise ValueError(f"vol_accuracy must be > 0, got {vol_accuracy}")
    p, s, k, t, r, c, half_tick = np.broadcast_arrays(
        np.asarray(price, dtype=float),
        np.asarray(spot, dtype=float),
        np.asarray(strike, dtype=float),
        np.asarray(t_years, dtype=float),
        np.asarray(rate, dtype=float),
        np.asarray(is_call, dtype=bool),
        0.5 * np.asarray(tick, dtype=float),
    )
    if not (np.all(np.isfinite(half_tick)) and np.all(half_tick >= 0)):
        raise ValueError("tick must be finite and >= 0")
    shape = p.shape
    p, s, k, t, r, c, half_tick = (x.ravel() for x in (p, s, k, t, r, c, half_tick))
    vol = np.full(p.shape, np.nan)
    conv = np.zeros(p.shape, dtype=bool)
    eps = np.finfo(float).eps

    with np.errstate(all="ignore"):
        kdisc = k * np.exp(-r * t)
        lower = np.where(c, np.maximum(s - kdisc, 0.0), np.maximum(kdisc - s, 0.0))
        upper = np.where(c, s, kdisc)
        ok = (s > 0) & (k > 0) & (t > 0) & (t < np.inf) & np.isfinite(r) & np.isfinite(p)
        ok &= (p > lower) & (p < upper)
        # Out-of-the-money side: a call if F <= K, else a put; q is its price (time value).
        w = np.where(s <= kdisc, 1.0, -1.0)
        q = p - lower
        # Rounding noise of q: relative to p, plus the S - K e^-rt cancellation when ITM.
        noise = 2.0 * eps * (p + np.where(lower > 0, np.maximum(s, kdisc), 0.0))

        idx = np.flatnonzero(ok)
        q, s, t, kdisc, w, noise, half_tick = (
            x[idx] for x in (q, s, t, kdisc, w, noise, half_tick)
        )
        sqrt_t = np.sqrt(t)
        log_fk = np.log(s / kdisc)  # ln(F/K) with F = S e^{rt}

        args = (s, kdisc, log_fk, sqrt_t, w)
        inside = (_price_vega(np.full(idx.shape, lo), *args)[0] <= q) & (
            _price_vega(np.full(idx.shape, hi), *args)[0] >= q
        )
        idx = idx[inside]
        q, s, t, kdisc, w, noise, sqrt_t, log_fk, half_tick = (
            x[inside] for x in (q, s, t, kdisc, w, noise, sqrt_t, log_fk, half_tick)
        )
        a = np.full(idx.shape, lo)
        b = np.full(idx.shape, hi)
        # Manaster-Koehler start: the inflection point of price in vol.
        sigma = np.clip(np.sqrt(2.0 * np.abs(log_fk) / t), lo, hi)
        log_q = np.log(q)

        for _ in range(max_iter):
            if idx.size == 0:
                break
            value, vega = _price_vega(sigma, s, kdisc, log_fk, sqrt_t, w)
            f = value - q
            a = np.where(f <= 0, sigma, a)  # price increases with vol: f(a) <= 0 <= f(b)
            b = np.where(f >= 0, sigma, b)
            newton = sigma - (np.log(value) - log_q) * value / vega
            use_newton = (newton > a) & (newton < b) & np.isfinite(newton)
            new = np.where(f == 0, sigma, np.where(use_newton, newton, 0.5 * (a + b)))
            done = (np.abs(new - sigma) <= tol) | (b - a <= tol)
            sigma = new

            vol[idx] = sigma  # best estimate so far
            good = np.flatnonzero(done & (noise <= vega * tol))
            resolved = _resolved_at_tick(
                sigma[good], q[good], half_tick[good], vol_accuracy,
                (s[good], kdisc[good], log_fk[good], sqrt_t[good], w[good]),
            )  # fmt: skip
            conv[idx[good[resolved]]] = True
            keep = ~done
            idx = idx[keep]
            q, s, t, kdisc, w, noise, sqrt_t, log_fk, log_q, a, b, sigma, half_tick = (
                x[keep]
                for x in (q, s, t, kdisc, w, noise, sqrt_t, log_fk, log_q, a, b, sigma, half_tick)
            )

    return vol.reshape(shape), conv.reshape(shape)


POSITION_GREEK_COLUMNS = (
    "trade_date", "position_id", "portfolio_id", "symbol", "position_type", "quantity",
    "multiplier", "underlying", "underlying_price", "strike", "t_years", "rate", "volatility",
    "volatility_source", "iv_converged", "option_price", "delta", "gamma", "theta", "vega", "rho",
    "position_delta", "position_gamma", "position_theta", "position_vega", "position_rho",
    "dollar_delta", "delta_adjusted_exposure", "source", "reason",
)  # fmt: skip
_GREEKS = ("delta", "gamma", "theta", "vega", "rho")


def position_greeks(held: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Per-contract and position-level Greeks for every held position on every day.

    held: trade_date, position_id, portfolio_id, symbol, position_type, quantity, multiplier,
    underlying, option_right, strike, expiry, underlying_price, option_price,
    option_price_is_market (False when the price itself came from a model), realized_vol.

    Stocks: delta 1 per share, other Greeks 0 (source `stock`). Options: implied volatility
    from a market price where it converges (`implied_vol` with a one-cent quote tick: the
    quote must pin the vol to IV_ACCURACY), else the underlying's realized volatility; expired
    (t <= 0): all zero (source `expired`); no spot or no usable volatility: the seed's fallback
    table (source `fallback`, with the reason). Position Greeks = per-contract x quantity x
    multiplier (fallback values are already signed: x |quantity| x multiplier).
    delta_adjusted_exposure = position delta x underlying price (dollars of underlying);
    dollar_delta = the P&L of a 1% rise of the underlying = delta_adjusted_exposure / 100.
    """
    if held.empty:
        return pd.DataFrame(columns=POSITION_GREEK_COLUMNS)
    out = held.copy()
    qty = out["quantity"].to_numpy(float)
    mult = out["multiplier"].to_numpy(float)
    spot = out["underlying_price"].to_numpy(float)
    is_option = out["position_type"].isin(["LC", "LP", "SC", "SP"]).to_numpy()
    is_call = out["option_right"].eq("C").to_numpy()
    t_years = np.where(
        is_option,
        (
            pd.to_datetime(out["expiry"], cache=False)
            - pd.to_datetime(out["trade_date"], cache=False)
        ).dt.days
        / DAYS_PER_YEAR,
        np.nan,
    )
    strike = out["strike"].to_numpy(float)
    market_price = np.where(
        out["option_price_is_market"].fillna(False).to_numpy(bool),
        out["option_price"].to_numpy(float),
        np.nan,
    )
    iv = np.full(len(out), np.nan)
    converged = np.zeros(len(out), dtype=bool)
    solve = is_option & np.isfinite(market_price) & (t_years > 0)
    if solve.any():
        iv[solve], converged[solve] = implied_vol(
            market_price[solve], spot[solve], strike[solve], t_years[solve], rate, is_call[solve]
        )
    realized = out["realized_vol"].to_numpy(float)
    use_iv = solve & converged
    vol = np.where(use_iv, iv, realized)
    vol_source = np.where(use_iv, "implied", np.where(np.isfinite(realized), "realized", None))

    greeks = bs_greeks(spot, strike, t_years, rate, vol, is_call)
    expired = is_option & (t_years <= 0)
    model_ok = is_option & ~expired & greeks["delta"].notna().to_numpy()
    fallback = is_option & ~expired & ~model_ok
    reason = np.full(len(out), None, dtype=object)
    reason[fallback & ~np.isfinite(spot)] = "no underlying price"
    reason[fallback & np.isfinite(spot) & ~np.isfinite(vol)] = (
        "no volatility: no converged implied vol and under 30 sessions of underlying history"
    )
    reason[expired] = "expired: Greeks are zero"

    per_contract = {g: np.zeros(len(out)) for g in _GREEKS}
    per_contract["delta"] = np.where(is_option, 0.0, 1.0)
    fb = FALLBACK_GREEKS.reindex(out["position_type"]).to_numpy()
    for i, g in enumerate(_GREEKS):
        values = np.where(model_ok, greeks[g].to_numpy(), per_contract[g])
        per_contract[g] = np.where(fallback, fb[:, i], values)
    size = np.where(fallback, np.abs(qty), qty) * mult

    result = pd.DataFrame(
        {
            "trade_date": out["trade_date"].to_numpy(),
            "position_id": out["position_id"].to_numpy(),
            "portfolio_id": out["portfolio_id"].to_numpy(),
            "symbol": out["symbol"].to_numpy(),
            "position_type": out["position_type"].to_numpy(),
            "quantity": qty,
            "multiplier": mult.astype(int),
            "underlying": out["underlying"].to_numpy(),
            "underlying_price": spot,
            "strike": np.where(is_option, strike, np.nan),
            "t_years": t_years,
            "rate": np.where(is_option, rate, np.nan),
            "volatility": np.where(model_ok, vol, np.nan),
            "volatility_source": np.where(model_ok, vol_source, None),
            "iv_converged": np.where(solve, converged, None),
            "option_price": np.where(is_option, out["option_price"].to_numpy(float), np.nan),
            **per_contract,
            **{f"position_{g}": per_contract[g] * size for g in _GREEKS},
        }
    )
    result["delta_adjusted_exposure"] = result["position_delta"] * spot
    result["dollar_delta"] = result["delta_adjusted_exposure"] / 100.0
    result["source"] = np.select(
        [~is_option, expired, fallback], ["stock", "expired", "fallback"], "model"
    )
    result["reason"] = reason
    return result[list(POSITION_GREEK_COLUMNS)]


def portfolio_greeks(position_level: pd.DataFrame) -> pd.DataFrame:
    """Sum of position Greeks per portfolio and day for the views portfolio, longs, shorts
    (longs: positive quantity, shorts: negative)."""
    columns = ["trade_date", "portfolio_id", "view", *_GREEKS, "dollar_delta",
               "delta_adjusted_exposure", "fallback_count", "position_count"]  # fmt: skip
    if position_level.empty:
        return pd.DataFrame(columns=columns)
    frame = position_level.assign(
        is_fallback=position_level["source"].eq("fallback").astype(int),
        **{g: position_level[f"position_{g}"] for g in _GREEKS},
    )
    views = {
        "portfolio": frame,
        "longs": frame[frame["quantity"] > 0],
        "shorts": frame[frame["quantity"] < 0],
    }
    parts = []
    for view, rows in views.items():
        agg = rows.groupby(["trade_date", "portfolio_id"]).agg(
            **{g: (g, "sum") for g in _GREEKS},
            dollar_delta=("dollar_delta", "sum"),
            delta_adjusted_exposure=("delta_adjusted_exposure", "sum"),
            fallback_count=("is_fallback", "sum"),
            position_count=("position_id", "count"),
        )
        parts.append(agg.reset_index().assign(view=view))
    return pd.concat(parts, ignore_index=True)[columns]
