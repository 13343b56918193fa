"""Pure, vectorized portfolio math: numpy/pandas/scipy; no Dagster, no SQL. Libraries such as
statsmodels, empyrical and mibian are the references the tests check it against."""
