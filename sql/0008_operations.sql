-- depends: 0007_market_data_cache
-- Issue 8 (operations): a position's daily P&L that could not be measured the usual way says
-- why (its first priced session, a carried-forward price, no price at all) instead of NULL.
ALTER TABLE sigmasight.position_values ADD COLUMN pnl_reason text;
