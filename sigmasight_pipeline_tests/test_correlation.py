"""Correlations against pandas, clusters, average correlations, effective number of bets."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from sigmasight_pipeline.analytics.correlation import (
    CLUSTER_COLUMNS,
    CORRELATION_COLUMNS,
    CORRELATION_SUMMARY_COLUMNS,
    _components,
    cluster_labels,
    effective_number_of_bets,
    pairwise_correlation,
    portfolio_correlations,
    stack_cluster_labels,
    stack_correlations,
)
from sigmasight_pipeline.analytics.risk import stack_by_day


def _block_returns(n: int = 140, seed: int = 5) -> pd.DataFrame:
    """Two tight blocks (A*, B*; B3 is B1's mirror image), a loner L and gappy columns."""
    rng = np.random.default_rng(seed)
    fa, fb = rng.normal(0, 0.01, (2, n))
    noise = lambda s: rng.normal(0, s, n)  # noqa: E731
    cols = {
        "A1": fa + noise(0.002), "A2": fa + noise(0.002), "A3": 0.8 * fa + noise(0.002),
        "B1": fb + noise(0.002), "B2": fb + noise(0.003), "B3": -fb + noise(0.002),
        "L": noise(0.01),
    }  # fmt: skip
    frame = pd.DataFrame(cols, index=pd.bdate_range("2024-01-02", periods=n))
    frame.loc[frame.index[rng.random(n) < 0.2], "A2"] = np.nan
    frame["SHORT"] = fa + noise(0.002)
    frame.loc[frame.index[:-25], "SHORT"] = np.nan  # 25 returns, 15 of them overlap "SPARSE"
    frame["SPARSE"] = np.where(np.arange(n) % 5 == 0, fb, np.nan)
    frame["FLAT"] = 0.001
    return frame


def test_pairwise_correlation_matches_pandas_min_periods() -> None:
    frame = _block_returns().iloc[-90:]
    corr, n_obs = pairwise_correlation(frame.to_numpy(), min_overlap=20)
    expected = frame.corr(min_periods=20).to_numpy()
    off_diagonal = ~np.eye(len(frame.columns), dtype=bool)
    np.testing.assert_allclose(corr[off_diagonal], expected[off_diagonal], rtol=0, atol=1e-12)
    valid = frame.notna().astype(int)
    np.testing.assert_array_equal(n_obs, valid.T @ valid)
    assert np.isnan(corr[frame.columns.get_loc("SHORT"), frame.columns.get_loc("SPARSE")])
    assert np.isnan(np.diag(corr)[frame.columns.get_loc("FLAT")])  # pandas: NaN for constants
    assert np.isnan(expected[frame.columns.get_loc("FLAT"), 0])


def _exposures(day: pd.Timestamp) -> pd.DataFrame:
    rows = [
        (1, "A1", 100.0), (1, "A2", 50.0), (1, "A3", 25.0), (1, "B1", 80.0), (1, "B3", 40.0),
        (1, "L", 10.0), (1, "SHORT", 5.0), (1, "SPARSE", 5.0), (1, "A1", -20.0),
        (2, "B1", 10.0), (2, "B2", -10.0),
        (3, "L", 10.0),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["portfolio_id", "underlying", "exposure"])
    return frame.assign(trade_date=day)


def test_portfolio_pairs_equal_pandas_on_the_90_session_window() -> None:
    frame = _block_returns()
    day = frame.index[-1]
    result = portfolio_correlations(_exposures(day), frame)
    assert list(result.pairs.columns) == list(CORRELATION_COLUMNS)
    assert list(result.clusters.columns) == list(CLUSTER_COLUMNS)
    assert list(result.summary.columns) == list(CORRELATION_SUMMARY_COLUMNS)
    window = frame.iloc[-90:]
    for portfolio_id, group in _exposures(day).groupby("portfolio_id"):
        symbols = list(dict.fromkeys(group["underlying"]))
        pairs = result.pairs[result.pairs["portfolio_id"] == portfolio_id]
        assert len(pairs) == len(symbols) * (len(symbols) - 1) // 2
        assert (pairs["symbol_a"] < pairs["symbol_b"]).all()
        expected = window[symbols].corr(min_periods=20)
        for row in pairs.itertuples():
            want = expected.loc[row.symbol_a, row.symbol_b]
            if np.isnan(want):
                assert np.isnan(row.correlation) and row.reason is not None
            else:
                assert row.correlation == pytest.approx(want, abs=1e-12)
                both = window[[row.symbol_a, row.symbol_b]].notna().all(axis=1).sum()
                assert row.n_obs == both and row.reason is None
    short = result.pairs.query("symbol_a == 'SHORT' and symbol_b == 'SPARSE'").iloc[0]
    assert short["reason"] == f"{short['n_obs']} common sessions < 20"


def test_window_ignores_older_history() -> None:
    frame = _block_returns()
    day = frame.index[-1]
    changed = frame.copy()
    changed.iloc[:-90] = np.random.default_rng(0).normal(0, 0.05, changed.iloc[:-90].shape)
    a = portfolio_correlations(_exposures(day), frame).pairs
    b = portfolio_correlations(_exposures(day), changed).pairs
    pd.testing.assert_frame_equal(a, b)


def test_clusters_are_pairwise_above_threshold() -> None:
    frame = _block_returns()
    day = frame.index[-1]
    result = portfolio_correlations(_exposures(day), frame)
    clusters = result.clusters[result.clusters["portfolio_id"] == 1].set_index("symbol")
    members = clusters.groupby("cluster_id").groups
    ids = clusters["cluster_id"]
    # The planted blocks; B3 (the mirror of B1) joins B1 through |rho|; A1's short history
    # partner SHORT (25 returns, tracks A) joins the A block.
    assert ids["A1"] == ids["A2"] == ids["A3"] == ids["SHORT"]
    assert ids["B1"] == ids["B3"] != ids["A1"]
    assert clusters.loc["A1", "cluster_size"] == 4
    assert ids["A1"] == 1  # largest cluster first
    assert pd.isna(ids["SPARSE"]) and "returns < 20" in clusters.loc["SPARSE", "reason"]
    corr = portfolio_correlations(_exposures(day), frame).pairs.set_index(["symbol_a", "symbol_b"])
    for cluster in members.values():
        for a, b in itertools.combinations(sorted(cluster), 2):
            assert abs(corr.loc[(a, b), "correlation"]) >= 0.7
    summary = result.summary.set_index("portfolio_id")
    assert summary.loc[1, "n_clusters"] == 3  # A block, B block, L


def test_cluster_cut_is_complete_linkage() -> None:
    # A chain: x~y and y~z at 0.8, x~z at 0.3. Single/average linkage could chain x and z;
    # complete linkage keeps every pair in a cluster >= 0.7.
    corr = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.8], [0.3, 0.8, 1.0]])
    labels = cluster_labels(corr, 0.7)
    assert sorted(np.bincount(labels)[1:]) == [1, 2]
    assert cluster_labels(np.array([[1.0, -0.95], [-0.95, 1.0]])).tolist() == [1, 1]
    assert cluster_labels(np.array([[1.0, 0.69], [0.69, 1.0]])).tolist() == [1, 2]


def test_average_correlations() -> None:
    frame = _block_returns()
    day = frame.index[-1]
    result = portfolio_correlations(_exposures(day), frame)
    pairs = result.pairs[result.pairs["portfolio_id"] == 1].dropna(subset=["correlation"])
    summary = result.summary.set_index("portfolio_id")
    assert summary.loc[1, "avg_pairwise_correlation"] == pytest.approx(pairs["correlation"].mean())
    net = _exposures(day).groupby(["portfolio_id", "underlying"])["exposure"].sum().loc[1]
    w = pairs["symbol_a"].map(net).to_numpy() * pairs["symbol_b"].map(net).to_numpy()
    expected = (w * pairs["correlation"]).sum() / np.abs(w).sum()
    assert summary.loc[1, "avg_pnl_correlation"] == pytest.approx(expected)
    # Portfolio 2: long B1, short B2 (rho ~ 0.95): a hedge, P&L correlation ~ -0.95.
    assert summary.loc[2, "avg_pnl_correlation"] == pytest.approx(
        -summary.loc[2, "avg_pairwise_correlation"]
    )
    assert summary.loc[2, "avg_pnl_correlation"] < -0.9
    assert np.isnan(summary.loc[3, "avg_pairwise_correlation"])
    assert summary.loc[3, "reason"] == "fewer than 2 underlyings"
    assert summary.loc[3, "effective_number_of_bets"] == pytest.approx(1.0)


def test_effective_number_of_bets_known_cases() -> None:
    n = 5
    enb, clipped = effective_number_of_bets(np.eye(n), np.ones(n))
    assert enb == pytest.approx(n) and not clipped
    assert effective_number_of_bets(np.ones((n, n)), np.ones(n))[0] == pytest.approx(1.0)
    # Two perfectly (anti-)correlated blocks with the same sum of squared weights: 2 bets,
    # whatever the signs; unequal blocks count by their eigenvalues sum(w^2) = 3 and 4.5.
    block = np.kron(np.eye(2), np.ones((3, 3)))
    block[0, 1] = block[1, 0] = -1.0
    block[0, 2] = block[2, 0] = -1.0
    e = np.array([-1.0, 1.0, 1.0, 1.0, -1.0, 1.0])
    assert effective_number_of_bets(block, e)[0] == pytest.approx(2.0)
    e = np.array([-1.0, 1.0, 1.0, 2.0, -0.5, 0.5])
    p = np.array([3.0, 4.5]) / 7.5
    assert effective_number_of_bets(block, e)[0] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    # Uncorrelated names: exp(entropy) of the squared weights.
    w = np.array([0.5, 0.3, 0.2])
    p = w**2 / (w**2).sum()
    assert effective_number_of_bets(np.eye(3), w)[0] == pytest.approx(
        np.exp(-(p * np.log(p)).sum())
    )
    assert np.isnan(effective_number_of_bets(np.eye(2), np.zeros(2))[0])


def test_effective_number_of_bets_flags_a_non_psd_matrix() -> None:
    corr = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])  # not PSD
    enb, clipped = effective_number_of_bets(corr, np.ones(3))
    assert clipped and 1.0 <= enb <= 3.0


def test_summary_leaves_out_symbols_with_undefined_correlations() -> None:
    frame = _block_returns()
    day = frame.index[-1]
    summary = portfolio_correlations(_exposures(day), frame).summary.set_index("portfolio_id")
    reason = summary.loc[1, "reason"]
    assert "left out of effective_number_of_bets" in reason and "SPARSE" in reason
    assert 1.5 < summary.loc[1, "effective_number_of_bets"] < 4.0
    assert summary.loc[1, "n_symbols"] == 8
    assert summary.loc[1, "n_pairs"] == 28


def _fcluster_labels(corr: np.ndarray, threshold: float) -> np.ndarray:
    """scipy's complete linkage over every symbol and fcluster's cut, relabelled largest first
    (ties by first member): the reference `cluster_labels` must equal."""
    dist = np.clip(1.0 - np.abs(corr), 0.0, 1.0)
    np.fill_diagonal(dist, 0.0)
    raw = fcluster(
        linkage(squareform(dist, checks=False), method="complete"),
        t=1.0 - threshold,
        criterion="distance",
    )
    ids, first, sizes = np.unique(raw, return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    relabel = {ids[k]: rank + 1 for rank, k in enumerate(order)}
    return np.array([relabel[c] for c in raw])


@pytest.mark.parametrize("density", [0.0, 0.02, 0.05, 0.2, 1.0])
def test_components_equal_scipy_connected_components(density: float) -> None:
    rng = np.random.default_rng(int(density * 100))
    for m in (1, 2, 7, 40, 130):
        upper = np.triu(rng.random((m, m)) < density, k=1)
        linked = upper | upper.T
        _, expected = connected_components(linked, directed=False)
        got = _components(linked)
        # Same partition; each component named by its smallest member.
        assert len(set(zip(got, expected, strict=True))) == len(set(expected))
        assert all(got[k] == np.flatnonzero(got == got[k])[0] for k in range(m))
    path = np.eye(130, k=1, dtype=bool)  # one chain of 130: seven squarings to close
    assert not _components(path | path.T).any()


@pytest.mark.parametrize("seed", range(12))
def test_cluster_labels_equal_scipy_fcluster_on_the_whole_matrix(seed: int) -> None:
    # Planted blocks of different tightness and sizes (chains, pairs, loners): the
    # per-component linkage must cut exactly as complete linkage over all symbols does.
    rng = np.random.default_rng(seed)
    n, m = 90, 40
    factors = rng.normal(0, 0.01, (n, 6))
    member = rng.integers(0, 8, m)  # 6 factors and 2 groups of loners
    load = rng.uniform(0.3, 1.2, m) * rng.choice([-1.0, 1.0], m)
    noise = rng.uniform(0.001, 0.012, m)
    returns = np.where(member < 6, factors[:, np.minimum(member, 5)] * load, 0.0)
    returns = returns + rng.normal(0, 1, (n, m)) * noise
    corr, _ = pairwise_correlation(returns)
    for threshold in (0.5, 0.7, 0.9):
        np.testing.assert_array_equal(
            cluster_labels(corr, threshold), _fcluster_labels(corr, threshold)
        )


def test_stacked_cluster_labels_equal_each_matrix_by_scipy() -> None:
    # Matrices of different sizes padded with NaN (as a day's stack is), tight blocks, pairs,
    # loners and a symbol without data: each row of labels equals scipy's complete linkage
    # over that matrix alone, and the padding gets no cluster.
    rng = np.random.default_rng(7)
    sizes = [40, 1, 2, 17, 40, 9]
    stack = np.full((len(sizes), 40, 40), np.nan)
    for k, m in enumerate(sizes):
        factors = rng.normal(0, 0.01, (90, 4))
        member = rng.integers(0, 6, m)
        returns = np.where(member < 4, factors[:, np.minimum(member, 3)], 0.0)
        returns = returns + rng.normal(0, 1, (90, m)) * rng.uniform(0.001, 0.012, m)
        if m > 5:
            returns[:, 3] = np.nan  # no data: no cluster
        stack[k, :m, :m] = pairwise_correlation(returns)[0]
    labels = stack_cluster_labels(stack, 0.7)
    for k, m in enumerate(sizes):
        corr = stack[k, :m, :m]
        usable = np.flatnonzero(np.isfinite(np.diag(corr)))
        expected = np.zeros(m, dtype=np.int64)
        sub = corr[np.ix_(usable, usable)]
        expected[usable] = _fcluster_labels(sub, 0.7) if usable.size > 1 else 1
        np.testing.assert_array_equal(labels[k, :m], expected)
        assert not labels[k, m:].any()
    assert labels.max() > 1 and (np.bincount(labels[0])[1:] > 2).any()  # real clusters


def test_stacked_correlations_and_bets_equal_one_at_a_time() -> None:
    frame = _block_returns().iloc[-90:]
    blocks = np.stack([frame.to_numpy(), frame.to_numpy()[::-1] * 2.0])
    corr, n_obs = pairwise_correlation(blocks)
    for k in range(2):
        one, one_n = pairwise_correlation(blocks[k])
        np.testing.assert_array_equal(np.isnan(corr[k]), np.isnan(one))
        np.testing.assert_allclose(corr[k], one, rtol=0, atol=1e-14)
        np.testing.assert_array_equal(n_obs[k], one_n)
    rng = np.random.default_rng(3)
    exposures = rng.normal(0, 1, (3, 4))
    exposures[1, 3] = 0.0  # a smaller portfolio, padded with a zero exposure
    r = np.corrcoef(rng.normal(0, 1, (4, 50)))
    enb, clipped = effective_number_of_bets(np.stack([r, r, r]), exposures)
    for k in range(3):
        size = 3 if k == 1 else 4
        one, one_clipped = effective_number_of_bets(r[:size, :size], exposures[k, :size])
        assert enb[k] == pytest.approx(float(one), rel=1e-12)
        assert bool(clipped[k]) == bool(one_clipped)


@pytest.mark.parametrize("portfolios", [1, 60])
def test_day_correlations_computed_once_equal_each_portfolios_own(portfolios: int) -> None:
    """With 60 portfolios of a few of 10 symbols the day's matrix is computed once and
    gathered; with 1, each portfolio's own: both are `pairwise_correlation` of its block, gaps,
    a flat series, a symbol without returns ("NONE") and the padding included."""
    returns = _block_returns()
    rng = np.random.default_rng(portfolios)
    names = [*returns.columns, "NONE"]
    day = returns.index[-1]
    rows = [
        (day, p, symbol, float(rng.normal()))
        for p in range(portfolios)
        for symbol in sorted(rng.choice(names, size=int(rng.integers(1, 8)), replace=False))
    ]
    frame = pd.DataFrame(rows, columns=["trade_date", "portfolio_id", "symbol", "exposure"])
    (stack,) = stack_by_day(frame, returns, 90)
    used = np.unique(stack.columns[stack.columns >= 0]).size
    assert (used**2 < stack.columns.size * stack.columns.shape[1]) == (portfolios == 60)
    corr, n_obs = stack_correlations(stack)
    expected, expected_n = pairwise_correlation(stack.returns)
    np.testing.assert_array_equal(np.isnan(corr), np.isnan(expected))
    np.testing.assert_allclose(corr, expected, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(n_obs, expected_n)


def test_a_stored_code_is_within_half_a_step_of_its_correlation() -> None:
    """sql/0025: codes round(rho x 32767), decoded code / 32767 within 0.5 / 32767 of rho;
    -1, 0 and 1 exactly; an undefined correlation (NaN) masked, stored NULL."""
    from sigmasight_pipeline.analytics.correlation import (
        CORRELATION_CODE_SCALE,
        correlation_codes,
    )

    rho = np.r_[np.random.default_rng(7).uniform(-1, 1, 10_000), -1.0, 0.0, 1.0, np.nan]
    codes = correlation_codes(rho)
    decoded = codes.astype(float) / CORRELATION_CODE_SCALE
    assert codes.dtype == np.int16 and list(np.ma.getmaskarray(codes)) == [False] * 10_003 + [True]
    assert np.max(np.abs(decoded[:-1] - rho[:-1])) <= 0.5 / CORRELATION_CODE_SCALE
    assert list(decoded[-4:-1]) == [-1.0, 0.0, 1.0]
