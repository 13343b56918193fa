"""Pure, vectorized portfolio math: numpy/pandas/statsmodels/empyrical; no Dagster, no SQL."""
