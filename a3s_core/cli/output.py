"""How the CLI prints objects: `-o table|plain|json|yaml`, as kubectl, gh and llm do.

- `table` (the default on a terminal): aligned columns. Values a user must copy (ids,
  endpoints, API keys) are never cut: when the columns do not fit the terminal, the least
  important ones are dropped, and if the must-copy ones still do not fit, each object is
  printed as a block of `field: value` lines that the terminal wraps itself (no newline is
  inserted inside a value). Prose columns (messages, reasons) wrap between words and are
  never narrower than their longest word, so an endpoint or id inside a sentence is not
  folded in two either: the column is left out instead.
- `plain` (the default when stdout is not a terminal): tab-separated lines, a header line
  first, every column, nothing styled or wrapped — for `cut`, `awk` and files.
- `json`, `yaml`: the API's own objects, whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text


class Output(StrEnum):
    table = "table"
    plain = "plain"
    json = "json"
    yaml = "yaml"


def stdout_console() -> Console:
    """The console for stdout. When it is not a terminal, lines are never wrapped by rich:
    a file or a pipe gets each line whole, however long."""
    c = Console(highlight=False)
    c.soft_wrap = not c.is_terminal
    return c


def resolve(output: Output | None, console: Console) -> Output:
    if output is not None:
        return output
    return Output.table if console.is_terminal else Output.plain


def dump(console: Console, obj: Any, output: Output) -> None:
    """The object as a JSON or YAML document, unwrapped, without markup."""
    if output is Output.yaml:
        text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=2**31 - 1)
    else:
        text = json.dumps(obj, indent=2, ensure_ascii=False)
    console.file.write(text if text.endswith("\n") else text + "\n")
    console.file.flush()


@dataclass(frozen=True)
class Col:
    """A column. `copy`: a value users copy, never cut or wrapped (ids, endpoints, keys).
    `wrap`: prose that may wrap onto several lines, between words only. Every other column
    is shown whole or not at all. `drop`: 0 for a column always shown, else the higher,
    the sooner it is dropped when the table does not fit the terminal."""

    header: str
    get: Callable[[dict[str, Any]], Any]
    copy: bool = False
    wrap: bool = False
    drop: int = 0
    style: Callable[[str], str] | None = None
    # A live cell (a spinner) in place of the text; `get` gives its text, for the width.
    render: Callable[[dict[str, Any]], RenderableType] | None = None


GAP = 2  # spaces between columns
WRAP_MIN = 20  # the narrowest a prose column is squeezed to


def _cell(col: Col, row: dict[str, Any]) -> str:
    v = col.get(row)
    return "" if v is None else str(v)


def plain_lines(cols: Sequence[Col], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Tab-separated, header first; tabs and newlines inside a value become spaces."""

    def clean(s: str) -> str:
        return s.replace("\t", " ").replace("\r", " ").replace("\n", " ")

    lines = ["\t".join(c.header for c in cols)]
    lines += ["\t".join(clean(_cell(c, r)) for c in cols) for r in rows]
    return lines


def _floor(col: Col, rows: Sequence[dict[str, Any]], natural: int) -> int:
    """The narrowest a prose column may be: WRAP_MIN (or less when all of it is shorter),
    and never narrower than its longest word — an endpoint, id or model name inside a
    message is wrapped around, never folded in two."""
    longest = max((cell_len(w) for r in rows for w in _cell(col, r).split()), default=0)
    return max(min(natural, WRAP_MIN), longest)


def _widths(
    cols: Sequence[Col], rows: Sequence[dict[str, Any]], width: int
) -> list[int] | None:
    """Each column's width when `cols` fit in `width` (prose columns share what is left),
    else None."""
    natural = [max([cell_len(c.header), *(cell_len(_cell(c, r)) for r in rows)]) for c in cols]
    fixed = sum(w for c, w in zip(cols, natural, strict=True) if not c.wrap)
    room = width - fixed - GAP * (len(cols) - 1)
    prose = [i for i, c in enumerate(cols) if c.wrap]
    floors = {i: _floor(cols[i], rows, natural[i]) for i in prose}
    if room < sum(floors.values()):
        return None
    widths = list(natural)
    want = sum(natural[i] for i in prose)
    if want > room:  # share the room among the prose columns, each at least its floor
        for n, i in enumerate(prose):
            rest = prose[n + 1 :]
            floor = sum(floors[j] for j in rest)
            share = max(floors[i], (room - floor) // (len(prose) - n))
            widths[i] = min(natural[i], share, room - floor)
            room -= widths[i]
    return widths


def fitting_table(
    console: Console, cols: Sequence[Col], rows: Sequence[dict[str, Any]], title: str | None
) -> Table | None:
    """The table with the fewest columns dropped that fits the console with every value
    whole (prose wrapped), or None when even the columns never dropped do not fit."""
    shown = list(cols)
    while (widths := _widths(shown, rows, console.width)) is None:
        droppable = [c for c in shown if c.drop]
        if not droppable:
            return None
        shown.remove(max(droppable, key=lambda c: c.drop))
    # A narrow column dropped before a wide one may fit once the wide one is gone (`ls`:
    # id and namespace go first, then the endpoint; without it they fit again).
    for c in sorted((c for c in cols if c not in shown), key=lambda c: c.drop):
        candidate = [x for x in cols if x in shown or x is c]
        if (fit := _widths(candidate, rows, console.width)) is not None:
            shown, widths = candidate, fit
    t = Table(
        box=None, title=title, pad_edge=False, padding=(0, GAP // 2), header_style="bold"
    )
    for c, w in zip(shown, widths, strict=True):
        t.add_column(c.header, width=w, no_wrap=not c.wrap, overflow="fold")
    for r in rows:
        cells = []
        for c in shown:
            s = _cell(c, r)
            cells.append(c.render(r) if c.render else Text(s, style=c.style(s) if c.style else ""))
        t.add_row(*cells)
    return t


def print_fields(
    console: Console, fields: Sequence[tuple[str, str]], styles: Sequence[str] = ()
) -> None:
    """Aligned `label: value` lines; long values are left to the terminal (or the file) to
    wrap, so copying one gets it whole."""
    width = max((cell_len(k) for k, _ in fields), default=0) + 1
    for i, (k, v) in enumerate(fields):
        style = styles[i] if i < len(styles) else ""
        line = Text.assemble((f"  {k + ':':<{width}} ", "dim"), (v, style))
        console.print(line, soft_wrap=True)


def print_records(
    console: Console, cols: Sequence[Col], rows: Sequence[dict[str, Any]], title_col: Col
) -> None:
    """One block per object: its title, then its other fields as `print_fields` lines."""
    for i, r in enumerate(rows):
        if i:
            console.print()
        console.print(Text(_cell(title_col, r), style="bold"), soft_wrap=True)
        rest = [c for c in cols if c is not title_col]
        values = [_cell(c, r) for c in rest]
        print_fields(
            console,
            [(c.header, v) for c, v in zip(rest, values, strict=True)],
            [c.style(v) if c.style else "" for c, v in zip(rest, values, strict=True)],
        )


def print_rows(
    console: Console,
    output: Output,
    cols: Sequence[Col],
    rows: Sequence[dict[str, Any]],
    *,
    title: str | None = None,
) -> None:
    """`rows` as a table (terminal) or tab-separated lines (`plain`)."""
    if output is Output.plain:
        for line in plain_lines(cols, rows):
            console.file.write(line + "\n")
        console.file.flush()
        return
    t = fitting_table(console, cols, rows, title)
    if t is not None:
        console.print(t)
        return
    if title:
        console.print(Text(title, style="italic"), soft_wrap=True)
    print_records(console, cols, rows, title_col=cols[0])
