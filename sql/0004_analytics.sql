-- depends: 0003_portfolio
-- Analytics assets: short interest, Greeks, factor betas and exposures, risk metrics; snapshots
-- gain the aggregated Greeks, the main factor exposures and the risk metrics.
CREATE TABLE sigmasight.short_interest (
    symbol                  text NOT NULL,
    trade_date              date NOT NULL,
    short_interest_pct_float double precision,
    days_to_cover           double precision,
    source                  text NOT NULL,
    PRIMARY KEY (symbol, trade_date)
);
CREATE INDEX short_interest_trade_date_idx ON sigmasight.short_interest (trade_date);

CREATE TABLE sigmasight.position_greeks (
    trade_date         date NOT NULL,
    position_id        integer NOT NULL,
    portfolio_id       integer NOT NULL,
    symbol             text NOT NULL,
    position_type      text NOT NULL,
    quantity           double precision NOT NULL,
    multiplier         integer NOT NULL,
    underlying         text NOT NULL,
    underlying_price   double precision,
    strike             double precision,
    t_years            double precision,
    rate               double precision,
    volatility         double precision,
    -- 'implied' (solved from the option's price), 'realized' (underlying's 30-session
    -- realized volatility), NULL for stocks and fallback rows
    volatility_source  text CHECK (volatility_source IN ('implied', 'realized')),
    iv_converged       boolean,
    option_price       double precision,
    delta              double precision NOT NULL,
    gamma              double precision NOT NULL,
    theta              double precision NOT NULL,
    vega               double precision NOT NULL,
    rho                double precision NOT NULL,
    position_delta     double precision NOT NULL,
    position_gamma     double precision NOT NULL,
    position_theta     double precision NOT NULL,
    position_vega      double precision NOT NULL,
    position_rho       double precision NOT NULL,
    dollar_delta       double precision,
    delta_adjusted_exposure double precision,
    -- 'model' (Black-Scholes), 'fallback' (seed table, inputs missing), 'expired', 'stock'
    source             text NOT NULL CHECK (source IN ('model', 'fallback', 'expired', 'stock')),
    reason             text,
    PRIMARY KEY (trade_date, position_id)
);
CREATE INDEX position_greeks_portfolio_idx ON sigmasight.position_greeks (portfolio_id, trade_date);

CREATE TABLE sigmasight.portfolio_greeks (
    trade_date   date NOT NULL,
    portfolio_id integer NOT NULL,
    view         text NOT NULL CHECK (view IN ('portfolio', 'longs', 'shorts')),
    delta        double precision NOT NULL,
    gamma        double precision NOT NULL,
    theta        double precision NOT NULL,
    vega         double precision NOT NULL,
    rho          double precision NOT NULL,
    dollar_delta double precision NOT NULL,
    delta_adjusted_exposure double precision NOT NULL,
    fallback_count integer NOT NULL,
    position_count integer NOT NULL,
    PRIMARY KEY (trade_date, portfolio_id, view)
);

CREATE TABLE sigmasight.factor_betas (
    trade_date date NOT NULL,
    symbol     text NOT NULL,
    factor     text NOT NULL,
    beta       double precision,
    n_obs      integer NOT NULL,
    r_squared  double precision,
    std_err    double precision,
    reason     text,
    PRIMARY KEY (trade_date, symbol, factor)
);

CREATE TABLE sigmasight.position_factor_exposures (
    trade_date      date NOT NULL,
    position_id     integer NOT NULL,
    portfolio_id    integer NOT NULL,
    symbol          text NOT NULL,
    underlying      text NOT NULL,
    factor          text NOT NULL,
    beta            double precision,
    n_obs           integer NOT NULL,
    -- exposure used for the weight: signed exposure for stocks, delta-adjusted for options
    exposure        double precision,
    dollar_exposure double precision,
    reason          text,
    PRIMARY KEY (trade_date, position_id, factor)
);
CREATE INDEX position_factor_exposures_portfolio_idx
    ON sigmasight.position_factor_exposures (portfolio_id, trade_date);

CREATE TABLE sigmasight.portfolio_factor_exposures (
    trade_date      date NOT NULL,
    portfolio_id    integer NOT NULL,
    factor          text NOT NULL,
    beta            double precision,
    dollar_exposure double precision,
    coverage        double precision,
    PRIMARY KEY (trade_date, portfolio_id, factor)
);

CREATE TABLE sigmasight.portfolio_risk_metrics (
    trade_date      date NOT NULL,
    portfolio_id    integer NOT NULL,
    beta            double precision,
    volatility_ann  double precision,
    sharpe          double precision,
    sortino         double precision,
    max_drawdown    double precision,
    var_95_1d       double precision,
    cvar_95_1d      double precision,
    var_95_1d_hist  double precision,
    cvar_95_1d_hist double precision,
    var_95_1d_hist_usd  double precision,
    cvar_95_1d_hist_usd double precision,
    n_obs           integer NOT NULL,
    reason          text,
    PRIMARY KEY (trade_date, portfolio_id)
);

ALTER TABLE sigmasight.portfolio_snapshots
    ADD COLUMN delta double precision,
    ADD COLUMN gamma double precision,
    ADD COLUMN theta double precision,
    ADD COLUMN vega double precision,
    ADD COLUMN dollar_delta double precision,
    ADD COLUMN delta_adjusted_exposure double precision,
    ADD COLUMN beta_market double precision,
    ADD COLUMN beta_momentum double precision,
    ADD COLUMN beta_value double precision,
    ADD COLUMN beta_growth double precision,
    ADD COLUMN beta_quality double precision,
    ADD COLUMN beta_size double precision,
    ADD COLUMN beta_low_volatility double precision,
    ADD COLUMN short_interest_exposure double precision,
    ADD COLUMN volatility_ann double precision,
    ADD COLUMN sharpe double precision,
    ADD COLUMN max_drawdown double precision,
    ADD COLUMN var_95_1d double precision,
    ADD COLUMN cvar_95_1d double precision;
