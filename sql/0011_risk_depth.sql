-- depends: 0010_scale
-- Issue 11 (risk depth): volatility, correlation, concentration and sectors, rate beta,
-- factor-vs-specific risk decomposition, stress tests with options revalued. Per-position-day
-- and per-pair results are stored compactly (arrays in one row per portfolio-day or
-- position-day); views give them the contract's long shape.

-- Symbol level ------------------------------------------------------------------------------

CREATE TABLE sigmasight.symbol_volatility (
    trade_date          date NOT NULL,
    symbol              text NOT NULL,
    vol_21d             double precision,  -- realized, annualized, over 21 sessions
    vol_63d             double precision,
    vol_252d            double precision,
    vol_ewma            double precision,  -- RiskMetrics, lambda 0.94
    vol_har_21d         double precision,  -- HAR-RV forecast of the next 21 sessions (Corsi 2009)
    vol_percentile_252d double precision,  -- today's 21-day vol within its last 252 sessions (0-100)
    n_obs               smallint NOT NULL,
    reason              text,
    PRIMARY KEY (trade_date, symbol)
);

-- The factor model's risk: each symbol's specific (residual) variance over 60 sessions, from
-- the same regression as its betas, and the covariance of the factor returns (daily units).
CREATE TABLE sigmasight.specific_risk (
    trade_date        date NOT NULL,
    symbol            text NOT NULL,
    specific_variance double precision,
    n_obs             smallint NOT NULL,
    reason            text,
    PRIMARY KEY (trade_date, symbol)
);
CREATE TABLE sigmasight.factor_covariance (
    trade_date date NOT NULL,
    factor_a   text NOT NULL,
    factor_b   text NOT NULL,
    covariance double precision,
    n_obs      smallint NOT NULL,
    reason     text,
    PRIMARY KEY (trade_date, factor_a, factor_b)
);

-- Stress scenarios (loaded from data/stress_scenarios.yaml by the stress_scenarios asset) and
-- the historical episodes' return of every symbol.
CREATE TABLE sigmasight.stress_scenarios (
    scenario_id          text PRIMARY KEY,
    ordinal              smallint NOT NULL UNIQUE,
    name                 text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('factor', 'replay')),
    description          text,
    vol_multiplier       double precision NOT NULL,
    start_date           date,
    end_date             date,
    shock_market         double precision,
    shock_momentum       double precision,
    shock_value          double precision,
    shock_growth         double precision,
    shock_quality        double precision,
    shock_size           double precision,
    shock_low_volatility double precision,
    shock_rates_bp       double precision
);
CREATE TABLE sigmasight.stress_episodes (
    symbol         text NOT NULL,
    scenario_id    text NOT NULL,
    start_date     date NOT NULL,  -- the episode's dates when it was fetched (an edited
    end_date       date NOT NULL,  -- scenario is fetched again)
    episode_return double precision,
    reason         text,
    PRIMARY KEY (symbol, scenario_id)
);

-- Portfolio level ---------------------------------------------------------------------------

CREATE TABLE sigmasight.portfolio_volatility (
    trade_date          date NOT NULL,
    portfolio_id        integer NOT NULL,
    vol_21d             double precision,
    vol_63d             double precision,
    vol_252d            double precision,
    vol_ewma            double precision,
    vol_har_21d         double precision,
    vol_percentile_252d double precision,
    vol_ex_ante         double precision,  -- fraction: vol_ex_ante_usd / gross value
    vol_ex_ante_usd     double precision,  -- sqrt(252 e'Se), 60-session covariance of underlyings
    n_obs               smallint NOT NULL,
    reason              text,
    PRIMARY KEY (portfolio_id, trade_date)
);

-- One row per portfolio-day: the portfolio's underlyings, the upper triangle of their 90-session
-- correlation matrix (row by row, NaN below the minimum overlap), the overlap of each pair,
-- each symbol's cluster, and the summary measures. The views below give the long shape.
CREATE TABLE sigmasight.portfolio_correlation_matrices (
    trade_date               date NOT NULL,
    portfolio_id             integer NOT NULL,
    symbols                  text[] NOT NULL,
    correlations             real[] NOT NULL,
    pair_obs                 smallint[] NOT NULL,
    cluster_ids              smallint[] NOT NULL,
    avg_pairwise_correlation double precision,
    avg_pnl_correlation      double precision,
    effective_number_of_bets double precision,
    n_clusters               smallint,
    reason                   text,
    PRIMARY KEY (portfolio_id, trade_date)
);
CREATE VIEW sigmasight.portfolio_correlations AS
SELECT m.trade_date, m.portfolio_id, m.symbols[i] AS symbol_a, m.symbols[j] AS symbol_b,
       m.correlations[(i - 1) * n - (i - 1) * i / 2 + (j - i)]::double precision AS correlation,
       m.pair_obs[(i - 1) * n - (i - 1) * i / 2 + (j - i)] AS n_obs,
       CASE WHEN m.correlations[(i - 1) * n - (i - 1) * i / 2 + (j - i)] IS NULL THEN
           CASE WHEN m.pair_obs[(i - 1) * n - (i - 1) * i / 2 + (j - i)] < 20
                THEN m.pair_obs[(i - 1) * n - (i - 1) * i / 2 + (j - i)]
                     || ' common sessions < 20'
                ELSE 'a series is constant on the common sessions' END
       END AS reason
FROM sigmasight.portfolio_correlation_matrices m
CROSS JOIN LATERAL (SELECT cardinality(m.symbols) AS n) size
CROSS JOIN LATERAL generate_series(1, size.n) AS i
CROSS JOIN LATERAL generate_series(i + 1, size.n) AS j;
CREATE VIEW sigmasight.correlation_clusters AS
SELECT m.trade_date, m.portfolio_id, s.symbol, s.cluster_id
FROM sigmasight.portfolio_correlation_matrices m
CROSS JOIN LATERAL unnest(m.symbols, m.cluster_ids) AS s (symbol, cluster_id);

CREATE TABLE sigmasight.portfolio_concentration (
    trade_date           date NOT NULL,
    portfolio_id         integer NOT NULL,
    gross_exposure_usd   double precision,
    n_names              integer NOT NULL,
    hhi                  double precision,  -- of gross-exposure weights by name (0..1]
    effective_n          double precision,  -- 1 / hhi
    top5_weight          double precision,
    top10_weight         double precision,
    largest_symbol       text,
    largest_weight       double precision,
    largest_exposure_usd double precision,
    n_missing_exposure   integer NOT NULL,
    reason               text,
    PRIMARY KEY (portfolio_id, trade_date)
);

CREATE TABLE sigmasight.portfolio_sector_exposures (
    trade_date         date NOT NULL,
    portfolio_id       integer NOT NULL,
    sector             text NOT NULL,
    long_exposure_usd  double precision,
    short_exposure_usd double precision,
    gross_exposure_usd double precision,
    net_exposure_usd   double precision,
    gross_weight       double precision,  -- of the portfolio's gross
    net_weight         double precision,  -- sector net / portfolio gross
    benchmark_weight   double precision,  -- S&P 500 GICS weight (data/benchmark_sector_weights.csv)
    active_weight      double precision,  -- net_weight - benchmark_weight
    n_names            integer NOT NULL,
    benchmark_as_of    date,
    reason             text,
    PRIMARY KEY (portfolio_id, trade_date, sector)
);

CREATE TABLE sigmasight.portfolio_risk_decomposition (
    trade_date           date NOT NULL,
    portfolio_id         integer NOT NULL,
    component            text NOT NULL,  -- a factor, or 'specific'
    exposure_usd         double precision,
    variance_usd2        double precision,  -- annualized
    share_of_variance    double precision,
    vol_contribution_usd double precision,  -- sums to total_vol_usd over components
    total_vol_usd        double precision,
    coverage             double precision,
    reason               text,
    PRIMARY KEY (portfolio_id, trade_date, component)
);
CREATE TABLE sigmasight.position_risk_contributions (
    trade_date        date NOT NULL,
    position_id       integer NOT NULL,
    portfolio_id      integer NOT NULL,
    exposure_usd      double precision,
    marginal_vol_usd  double precision,  -- d(portfolio vol) / d(exposure)
    component_vol_usd double precision,  -- exposure x marginal: sums to the portfolio's vol
    factor_vol_usd    double precision,
    specific_vol_usd  double precision,
    share_of_risk     double precision,
    reason            text,
    PRIMARY KEY (portfolio_id, trade_date, position_id)
);
CREATE INDEX position_risk_contributions_trade_date_brin
    ON sigmasight.position_risk_contributions USING brin (trade_date);

CREATE TABLE sigmasight.portfolio_stress_results (
    trade_date             date NOT NULL,
    portfolio_id           integer NOT NULL,
    scenario_id            text NOT NULL,
    pnl_usd                double precision,
    pnl_usd_delta_gamma    double precision,
    pnl_pct_of_gross       double precision,  -- a fraction of gross exposure
    gross_exposure_usd     double precision,
    worst_position_id      integer,
    worst_position_pnl_usd double precision,
    method                 text,
    n_positions            integer NOT NULL,
    n_missing              integer NOT NULL,
    reason                 text,
    PRIMARY KEY (portfolio_id, trade_date, scenario_id)
);
-- One row per position-day with the P&L of every scenario of its scenario set, in the set's
-- order: 20 scenarios in one row instead of 20 rows (float4: seven significant digits). The
-- view below gives the long shape.
CREATE TABLE sigmasight.stress_scenario_sets (
    set_id       serial PRIMARY KEY,
    scenario_ids text[] NOT NULL UNIQUE
);
CREATE TABLE sigmasight.position_stress_pnl (
    trade_date          date NOT NULL,
    position_id         integer NOT NULL,
    portfolio_id        integer NOT NULL,
    set_id              integer NOT NULL REFERENCES sigmasight.stress_scenario_sets (set_id),
    pnl_usd             real[] NOT NULL,
    pnl_usd_delta_gamma real[] NOT NULL,
    PRIMARY KEY (portfolio_id, trade_date, position_id)
);
CREATE INDEX position_stress_pnl_trade_date_brin
    ON sigmasight.position_stress_pnl USING brin (trade_date);
CREATE VIEW sigmasight.position_stress_results AS
SELECT p.trade_date, p.position_id, p.portfolio_id, s.scenario_id,
       s.pnl_usd::double precision AS pnl_usd,
       s.pnl_usd_delta_gamma::double precision AS pnl_usd_delta_gamma
FROM sigmasight.position_stress_pnl p
JOIN sigmasight.stress_scenario_sets z USING (set_id)
CROSS JOIN LATERAL unnest(z.scenario_ids, p.pnl_usd, p.pnl_usd_delta_gamma)
    AS s (scenario_id, pnl_usd, pnl_usd_delta_gamma);

-- Rate beta: dollars lost or made per +100 bp of long Treasury yields (TLT duration, settings).
ALTER TABLE sigmasight.position_factor_exposures ADD COLUMN pnl_usd_per_100bp double precision;
ALTER TABLE sigmasight.portfolio_snapshots
    ADD COLUMN beta_rates double precision,
    ADD COLUMN pnl_usd_per_100bp double precision;
