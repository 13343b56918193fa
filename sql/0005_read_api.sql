-- depends: 0004_analytics
-- Read API (sigmasight_pipeline/resources/read_api.py): indexes for its lookups by portfolio.
-- Every query of the read API filters on portfolio_id and one trade_date (or a date range), on
-- portfolios by owner, or on tags by user. The primary keys of the per-day tables lead with
-- trade_date, which serves "this portfolio on day D"; these indexes serve "this portfolio's
-- latest day / date range" and the per-user lookups.
CREATE INDEX portfolio_greeks_portfolio_idx
    ON sigmasight.portfolio_greeks (portfolio_id, trade_date);
CREATE INDEX portfolio_factor_exposures_portfolio_idx
    ON sigmasight.portfolio_factor_exposures (portfolio_id, trade_date);
CREATE INDEX portfolio_risk_metrics_portfolio_idx
    ON sigmasight.portfolio_risk_metrics (portfolio_id, trade_date);
-- A user's portfolios in id order ("the caller's first portfolio").
CREATE INDEX portfolios_owner_idx ON sigmasight.portfolios (owner_id, id);
-- Tag filters match names case-insensitively within a user's tags.
CREATE INDEX tags_user_lower_name_idx ON sigmasight.tags (user_id, lower(name));
