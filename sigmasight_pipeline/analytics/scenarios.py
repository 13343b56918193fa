"""Stress scenarios: the library file (data/stress_scenarios.yaml documents the format at its
top), its validation, and the scenarios as a table (the stress_scenarios asset) and back.

Factor shocks: Market = SPY return, styles = the ETF-minus-SPY spread returns (the regressors
of `analytics.factors`), Rates = a yield change in basis points, and an implied-vol
multiplier for options; a replay names its episode's start and end dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sigmasight_pipeline.analytics.decomposition import MODEL_FACTORS, RATES_FACTOR
from sigmasight_pipeline.analytics.sectors import DATA_DIR

__all__ = [
    "DEFAULT_SCENARIO_FILE",
    "RETURN_FACTORS",
    "SCENARIO_COLUMNS",
    "SCENARIO_FACTORS",
    "Scenario",
    "ScenarioFileError",
    "load_scenarios",
    "scenario_table",
    "scenarios_from_table",
]

DEFAULT_SCENARIO_FILE = DATA_DIR / "stress_scenarios.yaml"
SCENARIO_FACTORS = MODEL_FACTORS  # Market, the six styles, Rates
RETURN_FACTORS = tuple(f for f in SCENARIO_FACTORS if f != RATES_FACTOR)
MARKET_FACTOR = SCENARIO_FACTORS[0]

KINDS = ("factor", "replay")
ID_PATTERN = re.compile(r"^[a-z0-9_]+$")
COMMON_FIELDS = {"id", "name", "kind", "description", "vol_multiplier"}
KIND_FIELDS = {"factor": {"shocks"}, "replay": {"start", "end"}}

SCENARIO_COLUMNS = (
    "scenario_id", "name", "kind", "description", "vol_multiplier", "start_date", "end_date",
    *(f"shock_{f.lower().replace(' ', '_')}" for f in RETURN_FACTORS), "shock_rates_bp",
)  # fmt: skip


class ScenarioFileError(ValueError):
    """The scenario file is malformed; the message names the file and the scenario."""


@dataclass(frozen=True)
class Scenario:
    """One validated scenario. ``shocks``: factor -> shock (Rates in bp), factor kind only."""

    id: str
    name: str
    kind: str
    description: str | None = None
    shocks: dict[str, float] = field(default_factory=dict)
    vol_multiplier: float = 1.0
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None


def _as_date(value: object, where: str, name: str) -> pd.Timestamp:
    if isinstance(value, date | str):
        try:
            return pd.Timestamp(value).normalize()
        except ValueError:
            pass
    raise ScenarioFileError(f"{where}: {name} {value!r} is not a date (YYYY-MM-DD)")


def _as_number(value: object, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ScenarioFileError(f"{where}: {name} {value!r} is not a finite number")
    return float(value)


def _parse_scenario(raw: object, where: str) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioFileError(f"{where}: expected a mapping of fields, got {raw!r}")
    sid = raw.get("id")
    if not isinstance(sid, str) or not ID_PATTERN.match(sid):
        raise ScenarioFileError(f"{where}: id {sid!r} must be lower_snake_case (a-z, 0-9, _)")
    where = f"{where} ({sid})"
    for required in ("name", "kind"):
        if required not in raw:
            raise ScenarioFileError(f"{where}: missing field {required!r}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise ScenarioFileError(f"{where}: kind {kind!r} must be one of {list(KINDS)}")
    allowed = COMMON_FIELDS | KIND_FIELDS[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ScenarioFileError(
            f"{where}: unknown field(s) {unknown} for kind {kind}; allowed {sorted(allowed)}"
        )
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise ScenarioFileError(f"{where}: name must be a non-empty string")
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise ScenarioFileError(f"{where}: description must be text")
    vol_multiplier = _as_number(raw.get("vol_multiplier", 1.0), where, "vol_multiplier")
    if vol_multiplier <= 0:
        raise ScenarioFileError(f"{where}: vol_multiplier {vol_multiplier} must be > 0")
    if kind == "replay":
        for required in ("start", "end"):
            if required not in raw:
                raise ScenarioFileError(f"{where}: missing field {required!r}")
        start = _as_date(raw["start"], where, "start")
        end = _as_date(raw["end"], where, "end")
        if not start < end:
            raise ScenarioFileError(
                f"{where}: start {start.date()} must be before end {end.date()}"
            )
        return Scenario(sid, name, kind, description, {}, vol_multiplier, start, end)
    if "shocks" not in raw:
        raise ScenarioFileError(f"{where}: missing field 'shocks' (use {{}} for vol-only)")
    shocks_raw = raw["shocks"] if raw["shocks"] is not None else {}
    if not isinstance(shocks_raw, dict):
        raise ScenarioFileError(f"{where}: shocks must be a mapping factor -> shock")
    shocks = {}
    for factor, value in shocks_raw.items():
        if factor not in SCENARIO_FACTORS:
            raise ScenarioFileError(
                f"{where}: unknown factor {factor!r}; known factors {list(SCENARIO_FACTORS)}"
            )
        shocks[factor] = _as_number(value, where, f"shock {factor}")
    if shocks.get(MARKET_FACTOR, 0.0) <= -1.0:
        raise ScenarioFileError(f"{where}: a Market return of {shocks[MARKET_FACTOR]} is <= -100%")
    if not any(shocks.values()) and vol_multiplier == 1.0:
        raise ScenarioFileError(f"{where}: shocks nothing (no factor shock, vol_multiplier 1)")
    return Scenario(sid, name, kind, description, shocks, vol_multiplier)


def load_scenarios(
    paths: str | Path | Sequence[str | Path] = DEFAULT_SCENARIO_FILE,
) -> list[Scenario]:
    """Read and validate one or more scenario files (the format is documented in
    data/stress_scenarios.yaml). Scenario ids must be unique across all files. Raises
    `ScenarioFileError` naming the file and scenario for anything malformed."""
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    for path in map(Path, files):
        if not path.is_file():
            raise ScenarioFileError(f"{path}: scenario file not found")
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ScenarioFileError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(document, dict) or set(document) != {"scenarios"}:
            raise ScenarioFileError(f"{path}: expected one top-level key 'scenarios' (a list)")
        entries = document["scenarios"]
        if not isinstance(entries, list) or not entries:
            raise ScenarioFileError(f"{path}: 'scenarios' must be a non-empty list")
        for number, raw in enumerate(entries, start=1):
            scenario = _parse_scenario(raw, f"{path}: scenario #{number}")
            if scenario.id in seen:
                raise ScenarioFileError(
                    f"{path}: scenario #{number}: duplicate id {scenario.id!r} "
                    f"(first defined in {seen[scenario.id]})"
                )
            seen[scenario.id] = f"{path} scenario #{number}"
            scenarios.append(scenario)
    return scenarios


def scenario_table(scenarios: Iterable[Scenario]) -> pd.DataFrame:
    """One row per scenario, `SCENARIO_COLUMNS` (shock columns 0 where not shocked)."""
    rows = []
    for s in scenarios:
        row = {
            "scenario_id": s.id, "name": s.name, "kind": s.kind, "description": s.description,
            "vol_multiplier": s.vol_multiplier, "start_date": s.start, "end_date": s.end,
        }  # fmt: skip
        for factor in RETURN_FACTORS:
            row[f"shock_{factor.lower().replace(' ', '_')}"] = s.shocks.get(factor, 0.0)
        row["shock_rates_bp"] = s.shocks.get(RATES_FACTOR, 0.0)
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(SCENARIO_COLUMNS))
    table["start_date"] = pd.to_datetime(table["start_date"])
    table["end_date"] = pd.to_datetime(table["end_date"])
    return table


def scenarios_from_table(table: pd.DataFrame) -> list[Scenario]:
    """The scenarios of a `scenario_table` (as stored in sigmasight.stress_scenarios), in its
    row order; shocks of 0 are left out."""
    scenarios = []
    for row in table.to_dict("records"):
        shocks = {}
        if row["kind"] == "factor":
            for factor in RETURN_FACTORS:
                value = row.get(f"shock_{factor.lower().replace(' ', '_')}")
                if pd.notna(value) and value != 0:
                    shocks[factor] = float(value)
            rates = row.get("shock_rates_bp")
            if pd.notna(rates) and rates != 0:
                shocks[RATES_FACTOR] = float(rates)
        description = row.get("description")
        scenarios.append(
            Scenario(
                id=row["scenario_id"],
                name=row["name"],
                kind=row["kind"],
                description=description if isinstance(description, str) else None,
                shocks=shocks,
                vol_multiplier=float(row["vol_multiplier"]),
                start=pd.Timestamp(row["start_date"]) if pd.notna(row["start_date"]) else None,
                end=pd.Timestamp(row["end_date"]) if pd.notna(row["end_date"]) else None,
            )
        )
    return scenarios
