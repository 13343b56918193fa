"""Which portfolios a run works on: all of them, the ones named, or one shard of the book.

A run's scope comes from its tags, so the sensor, the CLI, shard runs and the UI all say it
the same way:

- `sigmasight/portfolios` = "3,7": only those portfolios (the inbox sensor's runs);
- `sigmasight/shard` = "2/8": the portfolios whose id % 8 == 2 (one shard of a backfill);
- neither: every portfolio.

Portfolio-level assets compute and replace only the scope's rows (`portfolio_id` filter on the
delete, in the same transaction as the insert), so a scoped run never touches another
portfolio's rows, and shards never overwrite each other. Symbol-level assets in a scoped run
compute and replace only the symbols the scope holds (plus the factor ETFs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from psycopg import sql

PORTFOLIOS_TAG = "sigmasight/portfolios"
SHARD_TAG = "sigmasight/shard"


class ScopeError(ValueError):
    """A scope tag that cannot be read."""


@dataclass(frozen=True)
class Scope:
    """All portfolios (both fields None), the ones listed, or shard `index` of `count`."""

    portfolio_ids: tuple[int, ...] | None = None
    shard: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.portfolio_ids is not None and self.shard is not None:
            raise ScopeError("a scope names portfolios or a shard, not both")
        if self.shard is not None:
            index, count = self.shard
            if count < 1 or not 0 <= index < count:
                raise ScopeError(f"shard {index}/{count}: expected 0 <= index < count")

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Scope:
        portfolios, shard = tags.get(PORTFOLIOS_TAG), tags.get(SHARD_TAG)
        if portfolios and shard:
            raise ScopeError(f"tags {PORTFOLIOS_TAG} and {SHARD_TAG} cannot both be set")
        if portfolios:
            try:
                ids = tuple(sorted({int(p) for p in portfolios.split(",") if p.strip()}))
            except ValueError as exc:
                raise ScopeError(
                    f"tag {PORTFOLIOS_TAG}={portfolios!r}: expected portfolio ids like '3,7'"
                ) from exc
            return cls(portfolio_ids=ids)
        if shard:
            try:
                index, count = (int(part) for part in shard.split("/"))
            except ValueError as exc:
                raise ScopeError(f"tag {SHARD_TAG}={shard!r}: expected 'index/count'") from exc
            return cls(shard=(index, count))
        return cls()

    @classmethod
    def of(cls, portfolio_ids: Sequence[int]) -> Scope:
        return cls(portfolio_ids=tuple(sorted({int(i) for i in portfolio_ids})))

    @property
    def is_everything(self) -> bool:
        return self.portfolio_ids is None and self.shard is None

    def tags(self) -> dict[str, str]:
        if self.portfolio_ids is not None:
            return {PORTFOLIOS_TAG: ",".join(str(i) for i in self.portfolio_ids)}
        if self.shard is not None:
            return {SHARD_TAG: f"{self.shard[0]}/{self.shard[1]}"}
        return {}

    def portfolio_filter(self, column: str = "portfolio_id") -> sql.Composable:
        """SQL that is true for the scope's rows of a table with a portfolio id column."""
        ident = sql.SQL(".").join(sql.Identifier(part) for part in column.split("."))
        if self.portfolio_ids is not None:
            return sql.SQL("{} = ANY({}::integer[])").format(
                ident, sql.Literal(list(self.portfolio_ids))
            )
        if self.shard is not None:
            index, count = self.shard
            return sql.SQL("{} % {} = {}").format(ident, sql.Literal(count), sql.Literal(index))
        return sql.SQL("TRUE")

    def describe(self) -> str:
        if self.portfolio_ids is not None:
            return "portfolios " + ", ".join(str(i) for i in self.portfolio_ids)
        if self.shard is not None:
            return f"shard {self.shard[0]} of {self.shard[1]}"
        return "all portfolios"
