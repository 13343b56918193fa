"""CSV text to a table of cells that remember their line numbers (pure, no database).

`tokenize` decodes nothing and validates nothing: it splits text (already decoded by
`decode_text`) into a header and rows of stripped string cells indexed by their 1-based line
number in the file, drops blank rows and reports ragged rows and quoted fields spanning lines
as `RowError`s. `to_number` reads number cells leniently. The portfolio format
(`portfolio_csv`) is built on these.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "MAX_VALUE_CHARS",
    "NO_ROWS",
    "RowError",
    "Table",
    "decode_text",
    "normalize_header",
    "read_fast",
    "read_slow",
    "shorten",
    "to_number",
    "tokenize",
]

NO_ROWS = (
    "no data rows: the file has a header but no positions (a file that closes every position "
    "of a portfolio loads only with `sigmasight ingest --allow-close-all`)"
)
MAX_VALUE_CHARS = 200  # longer cell values are shortened in error records
# Spaces or tabs before / after a separator or line end (patterns that start with a char set
# are scanned fast by `re`).
SPACES_BEFORE = re.compile(r"[ \t]+(?=[,\n]|$)")
SPACES_AFTER = re.compile(r"([,\n])[ \t]+")
EDGE_SPACE_IN_LINES = re.compile(r"[ \t]\n|\n[ \t]")
# A number once `$`, spaces and accounting parentheses are gone: commas only as thousands groups.
TOLERANT_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d*)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class RowError:
    """One problem in a file. `row` is the 1-based line number (header = 1; None: whole file)."""

    row: int | None
    field: str
    value: str | None
    reason: str

    def __str__(self) -> str:
        value = "" if self.value is None else f" {self.value!r}"
        where = (
            f"{self.field}{value}" if self.row is None else f"line {self.row}, {self.field}{value}"
        )
        return f"{where}: {self.reason}"


def decode_text(data: bytes | str) -> tuple[str, RowError | None]:
    """Text with `\\n` line ends; a BOM is dropped. Undecodable or binary content is an error."""
    if isinstance(data, str):
        text = data.removeprefix("\ufeff")
    else:
        encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 text (undecodable byte at offset {exc.start})"
            return "", RowError(None, "file", None, reason)
    if "\x00" in text:
        return "", RowError(None, "file", None, "binary content (NUL bytes); expected CSV text")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, None


@dataclass
class Table:
    """Cells as stripped strings, indexed by line number; header names normalized."""

    cells: pd.DataFrame
    header_line: int
    errors: list[RowError]
    fatal: bool = False


def normalize_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _empty_table(reason: str, header_line: int | None = None) -> Table:
    error = RowError(header_line, "file", None, reason)
    return Table(pd.DataFrame(), header_line or 1, [error], fatal=True)


def tokenize(text: str, max_rows: int, allow_empty: bool = False) -> Table:
    """Split into header + rows, keep each row's line number, drop blank rows. More than
    `max_rows` data rows is fatal; so is a header without rows unless `allow_empty`."""
    body = text.lstrip()
    if not body.strip():
        return _empty_table("the file is empty (expected a header and at least one position)")
    offset = text[: len(text) - len(body)].count("\n")  # leading blank lines
    if " " in body or "\t" in body:  # strip around separators in C, not cell by cell
        body = SPACES_BEFORE.sub("", SPACES_AFTER.sub(r"\1", body))
    raw = read_fast(body)
    errors: list[RowError] = []
    if raw is None:
        raw, errors = read_slow(body)
    raw.index = raw.index + offset + 1
    header_line = int(raw.index[0])
    header = [normalize_header(name) for name in raw.iloc[0]]
    cells = raw.iloc[1:]
    if '"' in body:  # quoted cells may still have edge spaces
        cells = cells.apply(_strip)
    cells = cells[(cells != "").any(axis=1)]
    # Unnamed columns with nothing in them (trailing commas from spreadsheets) are ignored.
    keep = [i for i, name in enumerate(header) if name or (cells.iloc[:, i] != "").any()]
    cells = cells.iloc[:, keep]
    cells.columns = [header[i] or f"<column {i + 1}>" for i in keep]
    seen: set[str] = set()
    for name in cells.columns:
        if name in seen:
            errors.append(RowError(header_line, name, name, "column appears more than once"))
        seen.add(name)
    cells = cells.loc[:, ~cells.columns.duplicated()]
    if len(cells) == 0 and not allow_empty:
        if errors:
            return Table(cells, header_line, errors, fatal=True)
        return _empty_table(NO_ROWS, header_line)
    if len(cells) > max_rows:
        return _empty_table(
            f"{len(cells):,} data rows; the limit is {max_rows:,} rows per file", header_line
        )
    return Table(cells, header_line, errors)


def _strip(column: pd.Series) -> pd.Series:
    """Cells stripped (only quoted cells can still have edge spaces, so test the joined text)."""
    joined = "\n".join(column.to_numpy(dtype=object))
    edges = joined[:1] + joined[-1:]
    if EDGE_SPACE_IN_LINES.search(joined) or " " in edges or "\t" in edges:
        return column.str.strip()
    return column


def read_fast(body: str) -> pd.DataFrame | None:
    """pandas' C tokenizer; None when rows do not map one-to-one onto lines (or it fails)."""
    n_lines = body.count("\n") + (0 if body.endswith("\n") else 1)
    try:
        raw = pd.read_csv(
            io.StringIO(body),
            header=None,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, ValueError):
        return None
    if len(raw) != n_lines:  # a quoted field spans lines: let the slow path say where
        return None
    return raw.fillna("")


def read_slow(body: str) -> tuple[pd.DataFrame, list[RowError]]:
    """The csv module, record by record: reports ragged rows and fields spanning lines."""
    reader = csv.reader(io.StringIO(body), skipinitialspace=True)
    records: list[list[str]] = []
    lines: list[int] = []
    errors: list[RowError] = []
    start = 1
    width = 0
    for record in reader:
        end = reader.line_num
        if not records:
            width = len(record)
            records.append(record)
            lines.append(start - 1)
        elif end > start:
            errors.append(
                RowError(
                    start,
                    "row",
                    None,
                    f"a quoted field runs from line {start} to line {end} "
                    "(unbalanced quote?); row skipped",
                )
            )
        elif len(record) > width and any(cell.strip() for cell in record[width:]):
            errors.append(
                RowError(
                    start,
                    "row",
                    None,
                    f"{len(record)} fields but the header has {width}; row skipped",
                )
            )
        else:
            records.append((record + [""] * width)[:width])
            lines.append(start - 1)
        start = end + 1
    return pd.DataFrame(records, index=lines, dtype=object).fillna(""), errors


def to_number(cells: pd.Series) -> pd.Series:
    """Floats from number cells; `$`, spaces, thousands groups, `(x)` negatives tolerated."""
    values = pd.to_numeric(cells, errors="coerce").astype(float)
    values[~np.isfinite(values.to_numpy())] = np.nan
    retry = values.isna() & (cells != "")
    if not retry.any():
        return values
    text = cells[retry].str.replace(r"[\s$]", "", regex=True)
    negative = text.str.startswith("(") & text.str.endswith(")")
    text = text.where(~negative, "-" + text.str[1:-1])
    well_formed = text.str.fullmatch(TOLERANT_NUMBER.pattern) & text.str.contains(r"\d")
    parsed = pd.to_numeric(text.str.replace(",", "").where(well_formed), errors="coerce")
    values[retry] = parsed.where(np.isfinite(parsed.astype(float)))
    return values


def shorten(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."
