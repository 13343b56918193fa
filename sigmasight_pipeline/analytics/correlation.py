"""Correlations of each portfolio's underlyings, clusters, average correlation and bets.

Pure numpy/pandas/scipy; no Dagster, no SQL. Everything is per portfolio: a portfolio's
matrix covers its own underlyings only, so memory is bounded by the largest portfolio, never
universe x universe.

Conventions
-----------
* Window: the last ``window`` (90) rows of the returns frame at or before the trade date
  (trading days). Correlations are Pearson on pairwise-complete observations: each pair uses
  the sessions where both returns are present (what ``pandas.DataFrame.corr`` does); fewer than
  ``min_overlap`` (20) common sessions, or a constant series, give NaN with a reason. A
  pairwise-complete matrix need not be positive semi-definite.
* Clusters: scipy hierarchical clustering with COMPLETE linkage on the distance 1 - |rho|, cut
  at distance 1 - threshold (0.3). Complete linkage merges two groups at the LARGEST distance
  between their members, so the cut means exactly: every pair of symbols in one cluster has
  |rho| >= threshold (0.7), pairwise; a symbol with no such partner is a singleton. |rho| makes
  a strongly negatively correlated pair (a hedge) one cluster. An undefined correlation counts
  as distance 1 (unrelated). Cluster ids are 1..k per (day, portfolio), largest cluster first
  (ties: alphabetically by first member); symbols with too little data get no cluster.
* ``avg_pairwise_correlation``: the plain (unweighted) mean of the defined correlations over
  pairs a < b of the portfolio's underlyings. ``avg_pnl_correlation``: the exposure-weighted
  mean correlation of the positions' dollar P&L, sum_{a<b} e_a e_b rho_ab / sum_{a<b} |e_a e_b|
  (a short flips the sign: long A / short B with rho = 0.9 is -0.9, a hedge).
* ``effective_number_of_bets``: the effective rank (Roy & Vetterli 2007, "The effective rank:
  a measure of effective dimensionality", EUSIPCO) of the exposure-weighted correlation matrix
  C = W R W, W = diag(e / sum|e|): exp(-sum_k p_k ln p_k) with p_k = lambda_k / sum(lambda) over
  C's eigenvalues. C is the covariance of the positions' dollar P&L (per underlying, net) if
  every underlying had the same volatility, so this counts the independent drivers of the
  positions' P&L, each weighted by its size: N equal, uncorrelated exposures give N;
  exposures on perfectly correlated (or anti-correlated) names give 1 (netting inside a driver
  does not change the count); the signs of the exposures do not matter (diag(sign) is a
  similarity). It applies the entropy idea of Meucci's (2009, "Managing diversification", Risk
  22(5)) effective number of bets to eigenvalues only, which keeps it well defined when
  eigenvalues repeat (Meucci's principal-portfolio version is not, e.g. for R = I).
  Negative eigenvalues of a non-PSD pairwise matrix are clipped to 0 (noted in the reason);
  symbols with undefined correlations are left out (named in the reason).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from sigmasight_pipeline.analytics.risk import _date_index, _require_columns, _sorted_wide

__all__ = [
    "CLUSTER_COLUMNS",
    "CORRELATION_COLUMNS",
    "CORRELATION_SUMMARY_COLUMNS",
    "CorrelationResult",
    "cluster_labels",
    "effective_number_of_bets",
    "pairwise_correlation",
    "portfolio_correlations",
]

CORRELATION_WINDOW = 90
MIN_OVERLAP = 20
CLUSTER_THRESHOLD = 0.7
EIGEN_TOLERANCE = 1e-10
CORRELATION_COLUMNS = (
    "trade_date", "portfolio_id", "symbol_a", "symbol_b", "correlation", "n_obs", "reason",
)  # fmt: skip
CLUSTER_COLUMNS = ("trade_date", "portfolio_id", "symbol", "cluster_id", "cluster_size", "reason")
CORRELATION_SUMMARY_COLUMNS = (
    "trade_date", "portfolio_id", "n_symbols", "n_pairs", "n_pairs_defined",
    "avg_pairwise_correlation", "avg_pnl_correlation", "effective_number_of_bets", "n_clusters",
    "reason",
)  # fmt: skip


class CorrelationResult(NamedTuple):
    """Long frames: pairs (`CORRELATION_COLUMNS`), clusters (`CLUSTER_COLUMNS`) and one summary
    row per (trade_date, portfolio_id) (`CORRELATION_SUMMARY_COLUMNS`)."""

    pairs: pd.DataFrame
    clusters: pd.DataFrame
    summary: pd.DataFrame


def pairwise_correlation(
    block: np.ndarray, min_overlap: int = MIN_OVERLAP
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlations on pairwise-complete rows: (corr, n_obs), both m x m.

    ``block`` is rows x m returns, NaN = missing. ``n_obs[a, b]`` counts rows where both are
    present; ``corr`` is NaN where that is below ``min_overlap`` or either series is constant
    on those rows. The diagonal is 1 where the series has ``min_overlap`` non-constant values.
    Vectorized: four m x m matrix products (series are first shifted by their window means,
    which leaves correlations unchanged and keeps the one-pass sums accurate).
    """
    x = np.asarray(block, dtype=float)
    valid = np.isfinite(x)
    v = valid.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.where(valid, x, 0.0).sum(axis=0) / valid.sum(axis=0)
    x0 = np.where(valid, x - np.nan_to_num(centre), 0.0)
    n = v.T @ v
    sx = x0.T @ v  # [a, b]: sum of a over rows where a and b are present
    sxx = (x0 * x0).T @ v
    sab = x0.T @ x0
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sx * sx.T / n
        var_a = sxx - sx * sx / n
        denom = np.sqrt(var_a * var_a.T)
        corr = cov / denom
    tiny = 1e-14 * np.maximum(sxx, sxx.T)  # relative zero test for the variances
    var_b = var_a.T
    constant = (var_a <= tiny) | (var_b <= tiny)
    bad = (n < min_overlap) | constant | ~np.isfinite(corr)
    corr = np.where(bad, np.nan, np.clip(corr, -1.0, 1.0))
    return corr, n.astype(np.int64)


def cluster_labels(corr: np.ndarray, threshold: float = CLUSTER_THRESHOLD) -> np.ndarray:
    """Cluster id (1..k, largest cluster first) per symbol; 0 for a symbol with NaN diagonal.

    Complete linkage on 1 - |rho| cut at 1 - threshold: members of a cluster are pairwise
    |rho| >= threshold (see the module docstring). Undefined off-diagonal entries count as
    distance 1. Ties in size are ordered by the cluster's first member index.
    """
    corr = np.asarray(corr, dtype=float)
    m = corr.shape[0]
    labels = np.zeros(m, dtype=np.int64)
    usable = np.flatnonzero(np.isfinite(np.diag(corr)))
    if usable.size == 0:
        return labels
    if usable.size == 1:
        labels[usable] = 1
        return labels
    sub = corr[np.ix_(usable, usable)]
    dist = 1.0 - np.abs(np.nan_to_num(sub, nan=0.0))
    dist = np.clip((dist + dist.T) / 2.0, 0.0, 1.0)
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(dist, checks=False), method="complete")
    raw = fcluster(tree, t=1.0 - threshold, criterion="distance")
    ids, first, sizes = np.unique(raw, return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))  # size desc, then first member
    relabel = {ids[k]: rank + 1 for rank, k in enumerate(order)}
    labels[usable] = [relabel[c] for c in raw]
    return labels


def effective_number_of_bets(corr: np.ndarray, exposures: np.ndarray) -> tuple[float, bool]:
    """Effective rank of diag(w) R diag(w), w = exposures / sum|exposures| (module docstring).

    ``corr`` must be free of NaN. Returns (enb, clipped): clipped is True when negative
    eigenvalues (a non-PSD pairwise matrix) beyond rounding were set to 0. NaN with no exposure.
    """
    e = np.asarray(exposures, dtype=float)
    gross = np.abs(e).sum()
    if not gross > 0:
        return float("nan"), False
    w = e / gross
    c = np.asarray(corr, dtype=float) * np.outer(w, w)
    eig = np.linalg.eigvalsh((c + c.T) / 2.0)
    top = max(eig.max(), 0.0)
    clipped = bool((eig < -EIGEN_TOLERANCE * max(top, 1e-300)).any())
    eig = np.clip(eig, 0.0, None)
    total = eig.sum()
    if not total > 0:
        return float("nan"), clipped
    p = eig[eig > 0] / total
    return float(np.exp(-(p * np.log(p)).sum())), clipped


def _complete_subset(corr: np.ndarray, n_obs: np.ndarray) -> np.ndarray:
    """Indices of a largest-first greedy subset whose correlations are all defined."""
    keep = np.flatnonzero(np.isfinite(np.diag(corr)))
    while keep.size:
        sub = corr[np.ix_(keep, keep)]
        missing = (~np.isfinite(sub)).sum(axis=0)
        if not missing.any():
            break
        # Drop the symbol with the most undefined pairs (ties: the fewest observations).
        worst = np.lexsort((np.diag(n_obs)[keep], -missing))[0]
        keep = np.delete(keep, worst)
    return keep


def _portfolio_frames(
    symbols: list[str],
    e: np.ndarray,
    block: np.ndarray,
    min_overlap: int,
    threshold: float,
) -> tuple[dict, dict, tuple]:
    """One portfolio's pair columns, cluster columns (cluster_id 0 = none) and summary."""
    corr, n_obs = pairwise_correlation(block, min_overlap)
    m = len(symbols)
    ia, ib = np.triu_indices(m, k=1)
    pair_corr = corr[ia, ib]
    pair_n = n_obs[ia, ib]
    diag_n = np.diag(n_obs)
    pair_reason = np.full(ia.size, None, dtype=object)
    undefined = ~np.isfinite(pair_corr)
    short = undefined & (pair_n < min_overlap)
    pair_reason[short] = [f"{k} common sessions < {min_overlap}" for k in pair_n[short]]
    pair_reason[undefined & ~short] = "a series is constant on the common sessions"
    sym = np.asarray(symbols, dtype=object)
    pairs = {
        "symbol_a": sym[ia], "symbol_b": sym[ib], "correlation": pair_corr, "n_obs": pair_n,
        "reason": pair_reason,
    }  # fmt: skip

    labels = cluster_labels(corr, threshold)
    sizes = np.bincount(labels)
    no_data = labels == 0
    cluster_reason = np.full(m, None, dtype=object)
    cluster_reason[no_data] = [
        f"{k} returns < {min_overlap} or constant in the window" for k in diag_n[no_data]
    ]
    clusters = {
        "symbol": sym, "cluster_id": labels, "cluster_size": np.where(no_data, 0, sizes[labels]),
        "reason": cluster_reason,
    }  # fmt: skip

    notes: list[str] = []
    defined = np.isfinite(pair_corr)
    avg = float(pair_corr[defined].mean()) if defined.any() else np.nan
    we = e[ia] * e[ib]
    wsum = np.abs(we[defined]).sum()
    avg_pnl = float((we[defined] * pair_corr[defined]).sum() / wsum) if wsum > 0 else np.nan
    if m < 2:
        notes.append("fewer than 2 underlyings")
    elif not defined.any():
        notes.append("no pair has a defined correlation")
    keep = _complete_subset(corr, n_obs)
    left_out = [symbols[k] for k in np.setdiff1d(np.arange(m), keep)]
    if left_out:
        notes.append(f"left out of effective_number_of_bets (undefined correlations): {left_out}")
    enb, clipped = (np.nan, False)
    if keep.size:
        enb, clipped = effective_number_of_bets(corr[np.ix_(keep, keep)], e[keep])
        if not np.isfinite(enb):
            notes.append("effective_number_of_bets: no exposure on the usable underlyings")
    if clipped:
        notes.append("correlation matrix not PSD: negative eigenvalues clipped to 0")
    summary = (
        m, int(ia.size), int(defined.sum()), avg, avg_pnl, enb, int(labels.max()),
        "; ".join(notes) if notes else None,
    )  # fmt: skip
    return pairs, clusters, summary


def portfolio_correlations(
    exposures: pd.DataFrame,
    returns: pd.DataFrame,
    trade_dates: Iterable | None = None,
    window: int = CORRELATION_WINDOW,
    min_overlap: int = MIN_OVERLAP,
    threshold: float = CLUSTER_THRESHOLD,
) -> CorrelationResult:
    """Per (trade date, portfolio): pairwise correlations, clusters and a summary row.

    ``exposures``: trade_date, portfolio_id, underlying, exposure (signed dollars, options at
    delta-adjusted exposure; e.g. `analytics.exposures.risk_exposures` for a chunk of
    portfolios); rows are summed per underlying, and every underlying held that day takes part
    (a net-zero exposure still gets correlations and a cluster, and weight 0 in the weighted
    measures). ``returns``: sessions x symbols daily returns covering the window before each
    trade date; an underlying missing from it has no data (NaN with a reason). ``trade_dates``
    defaults to every date in ``exposures``.
    """
    if min_overlap < 3 or window < min_overlap:
        raise ValueError(f"need 3 <= min_overlap <= window, got {min_overlap}, {window}")
    _require_columns(
        exposures, ("trade_date", "portfolio_id", "underlying", "exposure"), "exposures"
    )
    frame = exposures[["trade_date", "portfolio_id", "underlying", "exposure"]].copy()
    frame["trade_date"] = _date_index(frame["trade_date"], "exposures.trade_date")
    frame["exposure"] = frame["exposure"].astype(float)
    frame = frame.groupby(["trade_date", "portfolio_id", "underlying"], as_index=False)[
        "exposure"
    ].sum()
    if trade_dates is not None:
        frame = frame[frame["trade_date"].isin(_date_index(trade_dates, "trade_dates"))]
    wide = _sorted_wide(returns, "returns")
    values = wide.to_numpy(dtype=float)

    pair_cols: dict[str, list] = {c: [] for c in CORRELATION_COLUMNS}
    cluster_cols: dict[str, list] = {c: [] for c in CLUSTER_COLUMNS}
    summaries = []
    for day, day_rows in frame.groupby("trade_date", sort=True):
        pos = wide.index.get_indexer([day])[0]
        window_rows = values[max(0, pos - window + 1) : pos + 1] if pos >= 0 else values[:0]
        for portfolio_id, group in day_rows.groupby("portfolio_id", sort=True):
            symbols = group["underlying"].astype(str).tolist()
            where = wide.columns.get_indexer(symbols)
            block = np.where(where >= 0, window_rows[:, where], np.nan)
            pairs, clusters, summary = _portfolio_frames(
                symbols, group["exposure"].to_numpy(), block, min_overlap, threshold
            )
            if pos < 0:
                summary = (*summary[:-1], "no return row for the trade date")
            for cols, part in ((pair_cols, pairs), (cluster_cols, clusters)):
                n = len(next(iter(part.values())))
                cols["trade_date"].append(np.repeat(np.datetime64(day, "ns"), n))
                cols["portfolio_id"].append(np.repeat(np.asarray([portfolio_id], object), n))
                for name, array in part.items():
                    cols[name].append(array)
            summaries.append((day, portfolio_id, *summary))

    pairs = _frame(pair_cols)
    clusters = _frame(cluster_cols)
    for name in ("cluster_id", "cluster_size"):
        ids = clusters[name].to_numpy(dtype=np.int64)
        clusters[name] = pd.arrays.IntegerArray(ids, ids == 0)  # 0 = no cluster -> NULL
    summary = pd.DataFrame(summaries, columns=list(CORRELATION_SUMMARY_COLUMNS))
    summary["trade_date"] = pd.to_datetime(summary["trade_date"])
    summary["reason"] = summary["reason"].astype(object)
    return CorrelationResult(pairs, clusters, summary)


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    """One DataFrame from per-portfolio column arrays (concatenated once)."""
    data = {
        name: np.concatenate(parts) if parts else np.array([], dtype=object)
        for name, parts in columns.items()
    }
    out = pd.DataFrame(data)
    out["trade_date"] = pd.to_datetime(out["trade_date"])
    out["reason"] = out["reason"].astype(object)
    return out
