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
from functools import cache
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from sigmasight_pipeline.analytics.risk import (
    DayStack,
    _date_index,
    _require_columns,
    _sorted_wide,
    stack_by_day,
)

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
# A stored correlation is the code round(rho x CORRELATION_CODE_SCALE) in a smallint (sql/0025).
CORRELATION_CODE_SCALE = 32767
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
    """One row per (trade_date, portfolio_id) in `matrices` (those keys, then `_ROW_COLUMNS`;
    the asset stores all but symbol_obs in portfolio_correlation_matrices): its symbols
    (sorted), the upper triangle of its correlation matrix row by row (`np.triu_indices`) with
    each pair's overlap, each symbol's cluster (0: none) and the summary columns. `pairs`,
    `clusters` and `summary` give the same as long frames (`CORRELATION_COLUMNS`,
    `CLUSTER_COLUMNS`, `CORRELATION_SUMMARY_COLUMNS`)."""

    matrices: pd.DataFrame
    min_overlap: int = MIN_OVERLAP

    @property
    def summary(self) -> pd.DataFrame:
        return self.matrices[list(CORRELATION_SUMMARY_COLUMNS)].reset_index(drop=True)

    @property
    def pairs(self) -> pd.DataFrame:
        m = self.matrices
        n_pairs = m["n_pairs"].to_numpy(dtype=np.int64)
        sym_a, sym_b = [], []
        for symbols in m["symbols"]:
            ia, ib = _upper_triangle(len(symbols))
            sym_a.append(symbols[ia])
            sym_b.append(symbols[ib])
        corr = _concat(m["correlations"], float)
        n_obs = _concat(m["pair_obs"], np.int64)
        reason = np.full(corr.size, None, dtype=object)
        undefined = ~np.isfinite(corr)
        short = undefined & (n_obs < self.min_overlap)
        reason[short] = [f"{k} common sessions < {self.min_overlap}" for k in n_obs[short]]
        reason[undefined & ~short] = "a series is constant on the common sessions"
        return pd.DataFrame(
            {
                "trade_date": np.repeat(m["trade_date"].to_numpy(), n_pairs),
                "portfolio_id": np.repeat(m["portfolio_id"].to_numpy(), n_pairs),
                "symbol_a": _concat(sym_a, object), "symbol_b": _concat(sym_b, object),
                "correlation": corr, "n_obs": n_obs, "reason": reason,
            }
        )  # fmt: skip

    @property
    def clusters(self) -> pd.DataFrame:
        m = self.matrices
        n_symbols = m["n_symbols"].to_numpy(dtype=np.int64)
        labels = _concat(m["cluster_ids"], np.int64)
        symbol_obs = _concat(m["symbol_obs"], np.int64)
        sizes = np.concatenate([np.bincount(c)[c] for c in m["cluster_ids"]] or [[]])
        none = labels == 0
        reason = np.full(labels.size, None, dtype=object)
        reason[none] = [
            f"{k} returns < {self.min_overlap} or constant in the window" for k in symbol_obs[none]
        ]
        return pd.DataFrame(
            {
                "trade_date": np.repeat(m["trade_date"].to_numpy(), n_symbols),
                "portfolio_id": np.repeat(m["portfolio_id"].to_numpy(), n_symbols),
                "symbol": _concat(m["symbols"], object),
                "cluster_id": pd.arrays.IntegerArray(labels, none),  # 0 = no cluster -> NULL
                "cluster_size": pd.arrays.IntegerArray(
                    np.where(none, 0, sizes).astype(np.int64), none
                ),
                "reason": reason,
            }
        )


def pairwise_correlation(
    block: np.ndarray, min_overlap: int = MIN_OVERLAP
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlations on pairwise-complete rows: (corr, n_obs), both (..., m, m).

    ``block`` is (..., rows, m) returns, NaN = missing (a stack of blocks gives a stack of
    matrices). ``n_obs[a, b]`` counts rows where both are present; ``corr`` is NaN where that
    is below ``min_overlap`` or either series is constant on those rows. The diagonal is 1
    where the series has ``min_overlap`` non-constant values. Vectorized: four m x m matrix
    products (series are first shifted by their window means, which leaves correlations
    unchanged and keeps the one-pass sums accurate).
    """
    x = np.asarray(block, dtype=float)
    valid = np.isfinite(x)
    v = valid.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.where(valid, x, 0.0).sum(axis=-2, keepdims=True) / valid.sum(
            axis=-2, keepdims=True
        )
    x0 = np.where(valid, x - np.nan_to_num(centre), 0.0)
    x0_t = np.swapaxes(x0, -1, -2)
    n = np.swapaxes(v, -1, -2) @ v
    sx = x0_t @ v  # [a, b]: sum of a over rows where a and b are present
    sxx = np.swapaxes(x0 * x0, -1, -2) @ v
    sab = x0_t @ x0
    sx_t = np.swapaxes(sx, -1, -2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sx * sx_t / n
        var_a = sxx - sx * sx / n
        var_b = np.swapaxes(var_a, -1, -2)
        corr = cov / np.sqrt(var_a * var_b)
    tiny = 1e-14 * np.maximum(sxx, np.swapaxes(sxx, -1, -2))  # relative zero test
    constant = (var_a <= tiny) | (var_b <= tiny)
    bad = (n < min_overlap) | constant | ~np.isfinite(corr)
    corr = np.where(bad, np.nan, np.clip(corr, -1.0, 1.0))
    return corr, n.astype(np.int64)


def stack_correlations(
    stack: DayStack, min_overlap: int = MIN_OVERLAP
) -> tuple[np.ndarray, np.ndarray]:
    """`pairwise_correlation` of each portfolio of a `DayStack`: (corr, n_obs), (P, M, M).

    Computed the cheaper way: per portfolio (P x M^2 pairs, padding included), or once for
    the day's U symbols (U^2 pairs) and gathered per portfolio. A daily run's 1,000 portfolios
    of about 40 underlyings share 600: 1.6 M pairs against 0.36 M; a backfill's chunk of 50
    portfolios is the other way round. Both give the same numbers: a pair's correlation
    depends only on the two series (to rounding, 1e-16)."""
    used = np.unique(stack.columns[stack.columns >= 0])
    portfolios, width = stack.columns.shape
    if used.size**2 >= portfolios * width * width:
        return pairwise_correlation(stack.returns, min_overlap)
    nothing = np.full((len(stack.window), 1), np.nan)  # the column of padding, unknown symbols
    corr, n_obs = pairwise_correlation(np.hstack([stack.window[:, used], nothing]), min_overlap)
    at = np.where(stack.columns >= 0, np.searchsorted(used, stack.columns), used.size)
    rows, cols = at[:, :, None], at[:, None, :]
    return corr[rows, cols], n_obs[rows, cols]


def cluster_labels(corr: np.ndarray, threshold: float = CLUSTER_THRESHOLD) -> np.ndarray:
    """Cluster id (1..k, largest cluster first) per symbol; 0 for a symbol with NaN diagonal.

    Complete linkage on 1 - |rho| cut at 1 - threshold: members of a cluster are pairwise
    |rho| >= threshold (see the module docstring). Undefined off-diagonal entries count as
    distance 1. Ties in size are ordered by the cluster's first member index.
    """
    return stack_cluster_labels(np.asarray(corr, dtype=float)[None], threshold)[0]


def stack_cluster_labels(corr: np.ndarray, threshold: float = CLUSTER_THRESHOLD) -> np.ndarray:
    """`cluster_labels` of each matrix of a stack: (P, M, M) -> (P, M).

    Every merge at or below the cut joins symbols linked by |rho| >= threshold, so each
    cluster lies inside one connected component of that graph, and complete linkage runs on
    each component of three or more symbols alone (the same merges, in the same order): the
    components of the whole stack are found at once, and a matrix with no such component
    needs no linkage at all. A cluster is named by its first member until it is ranked.
    """
    corr = np.asarray(corr, dtype=float)
    count, m = corr.shape[0], corr.shape[-1]
    usable = np.isfinite(np.diagonal(corr, axis1=-2, axis2=-1))
    dist = 1.0 - np.abs(np.nan_to_num(corr, nan=0.0))
    dist = np.clip((dist + np.swapaxes(dist, -1, -2)) / 2.0, 0.0, 1.0)
    diagonal = np.arange(m)
    dist[:, diagonal, diagonal] = 0.0
    cut = 1.0 - threshold
    linked = (dist <= cut) & usable[:, :, None] & usable[:, None, :]
    linked[:, diagonal, diagonal] = False
    raw = _components(linked)  # (P, M): each symbol's component, named by its first member
    named = np.arange(count)[:, None] * m + raw
    sizes = np.bincount(named.ravel(), minlength=count * m).reshape(count, m)
    for k, c in zip(*np.nonzero(sizes >= 3), strict=True):
        members = np.flatnonzero(raw[k] == c)
        within = dist[k][np.ix_(members, members)]
        tree = linkage(squareform(within, checks=False), method="complete")
        raw[k, members] = members[_cut_tree(tree, members.size, cut)]
    named = np.arange(count)[:, None] * m + raw
    sizes = np.bincount(named[usable], minlength=count * m).reshape(count, m)
    stack_of, first = np.nonzero(sizes)
    order = np.lexsort((first, -sizes[stack_of, first], stack_of))  # size desc, first member
    in_order = stack_of[order]
    rank = np.zeros((count, m), dtype=np.int64)
    rank[in_order, first[order]] = np.arange(order.size) - np.searchsorted(in_order, in_order) + 1
    return np.where(usable, np.take_along_axis(rank, raw, axis=1), 0)


def _components(linked: np.ndarray) -> np.ndarray:
    """Connected components of a symmetric boolean adjacency matrix (..., m, m), a stack of
    them giving a stack: each node's component named by its smallest member. The reachability
    matrices are squared until they stop changing (log2 of the longest path steps); for a
    portfolio's few dozen symbols this is a few small matrix products, where scipy's
    `connected_components` spends most of its time validating the graph."""
    reach = (linked | np.eye(linked.shape[-1], dtype=bool)).astype(np.float32)
    while True:
        wider = ((reach @ reach) > 0).astype(np.float32)
        if np.array_equal(wider, reach):
            return reach.argmax(axis=-1)
        reach = wider


def _cut_tree(tree: np.ndarray, m: int, cut: float) -> np.ndarray:
    """For each of the `m` leaves of a linkage `tree`, the index (0..m-1) of a leaf standing for
    its flat cluster when merges above `cut` are undone (fcluster's 'distance' criterion)."""
    parent = np.arange(2 * m - 1)
    merged = np.flatnonzero(tree[:, 2] <= cut)
    children = tree[merged, :2].astype(np.int64)
    parent[children[:, 0]] = m + merged
    parent[children[:, 1]] = m + merged
    root = np.arange(m)
    while True:
        up = parent[root]
        if (up == root).all():
            break
        root = up
    _, leaf = np.unique(root, return_inverse=True)
    first_leaf = np.zeros(leaf.max() + 1, dtype=np.int64)
    first_leaf[leaf[::-1]] = np.arange(m)[::-1]
    return first_leaf[leaf]


def effective_number_of_bets(
    corr: np.ndarray, exposures: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Effective rank of diag(w) R diag(w), w = exposures / sum|exposures| (module docstring).

    ``corr`` (..., m, m) must be free of NaN; ``exposures`` (..., m): a stack of portfolios
    gives a stack of results (zero exposures pad a smaller portfolio: they add a zero
    eigenvalue, which does not count). Returns (enb, clipped): clipped is True when negative
    eigenvalues (a non-PSD pairwise matrix) beyond rounding were set to 0. NaN with no
    exposure.
    """
    e = np.asarray(exposures, dtype=float)
    gross = np.abs(e).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = e / gross[..., None]
    w = np.where(gross[..., None] > 0, w, 0.0)
    c = np.asarray(corr, dtype=float) * w[..., :, None] * w[..., None, :]
    eig = np.linalg.eigvalsh((c + np.swapaxes(c, -1, -2)) / 2.0)
    top = np.maximum(eig.max(axis=-1), 0.0)
    clipped = (eig < -EIGEN_TOLERANCE * np.maximum(top, 1e-300)[..., None]).any(axis=-1)
    eig = np.clip(eig, 0.0, None)
    total = eig.sum(axis=-1)
    ok = (gross > 0) & (total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = eig / np.where(ok, total, 1.0)[..., None]
        entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)
    return np.where(ok, np.exp(entropy), np.nan), clipped & (gross > 0)


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


@cache
def _upper_triangle(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(m, k=1)


def _concat(parts, dtype) -> np.ndarray:
    parts = list(parts)
    return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)


class _DaySummary(NamedTuple):
    """The summary columns of a day's stacked portfolios, (P,) each (`_day_summary`)."""

    n_defined: np.ndarray
    avg: np.ndarray
    avg_pnl: np.ndarray
    labels: np.ndarray  # (P, M)


def _day_summary(
    corr: np.ndarray, exposure: np.ndarray, members: np.ndarray, threshold: float
) -> _DaySummary:
    """Per portfolio of a stack: its defined pairs a < b, their plain and exposure-weighted
    mean correlations (module docstring) and its clusters; ``members`` (P, M, M): both
    symbols of the pair belong to the portfolio (not padding)."""
    m = corr.shape[-1]
    defined = members & np.triu(np.ones((m, m), dtype=bool), k=1) & np.isfinite(corr)
    n_defined = defined.sum(axis=(1, 2))
    rho = np.where(defined, corr, 0.0)
    both = np.where(defined, exposure[:, :, None] * exposure[:, None, :], 0.0)
    weight = np.abs(both).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(n_defined > 0, rho.sum(axis=(1, 2)) / n_defined, np.nan)
        avg_pnl = np.where(weight > 0, (both * rho).sum(axis=(1, 2)) / weight, np.nan)
    labels = stack_cluster_labels(np.where(members, corr, np.nan), threshold)  # padding: 0
    return _DaySummary(n_defined, avg, avg_pnl, labels)


def _portfolio_row(
    symbols: np.ndarray,
    e: np.ndarray,
    corr: np.ndarray,
    n_obs: np.ndarray,
    summary: tuple[int, float, float, np.ndarray],
    enb: tuple[float, bool] | None,
) -> tuple:
    """One portfolio-day's matrix columns and summary (`_ROW_COLUMNS`); ``summary``: its
    defined pairs, average correlations and cluster labels from `_day_summary`. ``enb``: its
    effective number of bets when computed with the others of its day (every correlation
    defined), else None."""
    n_defined, avg, avg_pnl, labels = summary
    m = len(symbols)
    ia, ib = _upper_triangle(m)
    notes: list[str] = []
    if m < 2:
        notes.append("fewer than 2 underlyings")
    elif not n_defined:
        notes.append("no pair has a defined correlation")
    if enb is None:
        keep = _complete_subset(corr, n_obs)
        left_out = [symbols[k] for k in np.setdiff1d(np.arange(m), keep)]
        if left_out:
            notes.append(
                f"left out of effective_number_of_bets (undefined correlations): {left_out}"
            )
        enb = (np.nan, False)
        if keep.size:
            value, clipped = effective_number_of_bets(corr[np.ix_(keep, keep)], e[keep])
            enb = (float(value), bool(clipped))
        usable = keep.size > 0
    else:
        usable = True
    if usable and not np.isfinite(enb[0]):
        notes.append("effective_number_of_bets: no exposure on the usable underlyings")
    if enb[1]:
        notes.append("correlation matrix not PSD: negative eigenvalues clipped to 0")
    return (
        symbols, corr[ia, ib], n_obs[ia, ib], labels, np.diag(n_obs), m, int(ia.size),
        n_defined, avg, avg_pnl, enb[0], int(labels.max(initial=0)),
        "; ".join(notes) if notes else None,
    )  # fmt: skip


_ROW_COLUMNS = (
    "symbols", "correlations", "pair_obs", "cluster_ids", "symbol_obs", "n_symbols", "n_pairs",
    "n_pairs_defined", "avg_pairwise_correlation", "avg_pnl_correlation",
    "effective_number_of_bets", "n_clusters", "reason",
)  # fmt: skip


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
    defaults to every date in ``exposures``. The portfolios of a day are computed together
    (stacked matrices); clusters and the rest per portfolio.
    """
    if min_overlap < 3 or window < min_overlap:
        raise ValueError(f"need 3 <= min_overlap <= window, got {min_overlap}, {window}")
    _require_columns(
        exposures, ("trade_date", "portfolio_id", "underlying", "exposure"), "exposures"
    )
    frame = exposures[["trade_date", "portfolio_id", "underlying", "exposure"]].copy()
    frame["trade_date"] = _date_index(frame["trade_date"], "exposures.trade_date")
    frame["exposure"] = frame["exposure"].astype(float)
    frame["underlying"] = frame["underlying"].astype(str)
    frame = frame.groupby(["trade_date", "portfolio_id", "underlying"], as_index=False)[
        "exposure"
    ].sum()
    if trade_dates is not None:
        frame = frame[frame["trade_date"].isin(_date_index(trade_dates, "trade_dates"))]
    frame = frame.rename(columns={"underlying": "symbol"})
    symbols = frame["symbol"].to_numpy(dtype=object)
    exposure = frame["exposure"].to_numpy(dtype=float)
    ports = frame["portfolio_id"].to_numpy()
    rows: list[tuple] = []
    keys: list[tuple] = []
    for stack in stack_by_day(frame, _sorted_wide(returns, "returns"), window):
        corr, n_obs = stack_correlations(stack, min_overlap)
        pair_inside = stack.inside[:, :, None] & stack.inside[:, None, :]
        complete = (np.isfinite(corr) | ~pair_inside).all(axis=(1, 2))  # every pair defined
        enb, clipped = effective_number_of_bets(np.nan_to_num(corr), stack.exposure)
        day = _day_summary(corr, stack.exposure, pair_inside, threshold)
        for k, (start, n) in enumerate(zip(stack.starts, stack.sizes, strict=True)):
            group = slice(start, start + n)
            row = _portfolio_row(
                symbols[group], exposure[group], corr[k, :n, :n], n_obs[k, :n, :n],
                (int(day.n_defined[k]), float(day.avg[k]), float(day.avg_pnl[k]),
                 day.labels[k, :n]),
                (float(enb[k]), bool(clipped[k])) if complete[k] else None,
            )  # fmt: skip
            if stack.row < 0:
                row = (*row[:-1], "no return row for the trade date")
            rows.append(row)
            keys.append((stack.day, ports[start]))
    matrices = pd.DataFrame(rows, columns=list(_ROW_COLUMNS))
    key_frame = pd.DataFrame(keys, columns=["trade_date", "portfolio_id"])
    matrices.insert(0, "trade_date", pd.to_datetime(key_frame["trade_date"], cache=False))
    matrices.insert(1, "portfolio_id", key_frame["portfolio_id"])
    matrices["reason"] = matrices["reason"].astype(object)
    return CorrelationResult(matrices, min_overlap)


def correlation_codes(correlations: np.ndarray) -> np.ma.MaskedArray:
    """Correlations as their stored codes, round(rho x CORRELATION_CODE_SCALE) (int16, within
    0.5 / CORRELATION_CODE_SCALE of rho); masked where rho is undefined (NaN)."""
    values = np.asarray(correlations, dtype=float)
    defined = np.isfinite(values)
    codes = np.rint(np.where(defined, values, 0.0) * CORRELATION_CODE_SCALE).astype(np.int16)
    return np.ma.MaskedArray(codes, mask=~defined)
