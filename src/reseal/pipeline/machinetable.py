"""The machine table of an answer file: inline `machines:`, a `machines_csv:` file or `count:`.

Each row becomes a `MachineEntry` (raw values with their file positions) that the plan
builder turns into a `GeneralizePlan`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.errors import BadInput
from reseal.operations.base import Operation
from reseal.pipeline.answerfields import (
    ErrorSink,
    Invalid,
    MapReader,
    convert_text,
    did_you_mean,
    option_fields,
    read_drivers,
    read_option_values,
    resolve_path,
)
from reseal.pipeline.answerrules import MAX_SEED, parse_seed
from reseal.pipeline.yamlsafe import Mark, YMap, describe, read_limited

MACHINE_KEYS = ("name", "hostname", "mac", "machine_sid", "machine_id", "seed", "ou", "target",
                "drivers", "options")
CSV_COLUMNS = ("name", "hostname", "mac", "machine_sid", "machine_id", "seed", "ou", "target",
               "drivers")
MAX_MACHINES = 10_000


@dataclass
class MachineEntry:
    """One row of the machine table, inline or from CSV, before it becomes a plan."""

    index: int
    sink: ErrorSink
    path: str  # "machines[3]" or "machines_csv[3]"
    mark: Mark
    values: dict[str, object] = field(default_factory=dict)
    marks: dict[str, Mark] = field(default_factory=dict)
    options: dict[str, dict[str, object]] = field(default_factory=dict)
    option_marks: dict[str, Mark] = field(default_factory=dict)

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return value if isinstance(value, str) else None

    def at(self, key: str) -> Mark:
        return self.marks.get(key, self.mark)


def read_machines(top: MapReader, sink: ErrorSink, base_dir: Path,
                   catalog: dict[str, Operation], digest: Any) -> list[MachineEntry]:
    entries: list[MachineEntry] = []
    seq = top.seq("machines")
    if seq is not None:
        for index, node in enumerate(seq.items):
            path = f"machines[{index}]"
            if not isinstance(node, YMap):
                sink.add(node.mark, path, f"expected a mapping (hostname: ...), got {describe(node)}")
                continue
            entries.append(_inline_entry(len(entries), node, path, sink, base_dir, catalog))
    csv_name = top.text("machines_csv")
    if csv_name is not None:
        entries.extend(csv_entries(resolve_path(base_dir, csv_name),
                                    str(Path(sink.filename).parent / csv_name),
                                    top.node.items["machines_csv"].mark, len(entries), sink,
                                    base_dir, catalog, digest))
    count = top.number("count", minimum=1)
    start = top.number("start", minimum=0)
    if count is not None:
        if count > MAX_MACHINES:
            sink.add(top.node.items["count"].mark, "count", f"at most {MAX_MACHINES} machines")
        elif entries:
            sink.add(top.node.items["count"].mark, "count",
                     "give count or a machine table (machines, machines_csv), not both")
        else:
            entries = [MachineEntry(i, sink, f"count[{i}]", top.node.items["count"].mark)
                       for i in range(count)]
    first = start if start is not None else 1
    for entry in entries:
        entry.values.setdefault("n", first + entry.index)
    if len(entries) > MAX_MACHINES:
        sink.add(top.node.mark, "machines", f"at most {MAX_MACHINES} machines")
    return entries


def _inline_entry(index: int, node: YMap, path: str, sink: ErrorSink, base_dir: Path,
                  catalog: dict[str, Operation]) -> MachineEntry:
    reader = MapReader(node, path, sink, MACHINE_KEYS)
    entry = MachineEntry(index, sink, path, node.mark)
    for key in ("name", "hostname", "mac", "machine_sid", "machine_id", "ou", "target"):
        value = reader.text(key)
        if value is not None:
            entry.values[key] = value
            entry.marks[key] = node.items[key].mark
    seed = reader.number("seed", minimum=0, maximum=MAX_SEED)
    if seed is not None:
        entry.values["seed"] = seed
    if reader.has("drivers"):
        entry.values["drivers"] = read_drivers(reader, "drivers", sink, base_dir)
    options = reader.raw_map("options")
    if options is not None:
        for op_name, op_node in options.items.items():
            op_path = f"{path}.options.{op_name}"
            operation = catalog.get(op_name)
            if operation is None or operation.options_type is None:
                reason = ("this operation takes no options" if operation is not None else
                          f"unknown operation{did_you_mean(op_name, catalog)}")
                sink.add(options.key_marks[op_name], op_path, reason)
                continue
            if not isinstance(op_node, YMap):
                sink.add(op_node.mark, op_path, f"expected a mapping, got {describe(op_node)}")
                continue
            entry.options[op_name] = read_option_values(op_node, operation.options_type, op_path,
                                                        sink, base_dir)
            entry.option_marks[op_name] = options.key_marks[op_name]
    return entry


def csv_entries(csv_path: Path, display: str, mark: Mark, first_index: int, top_sink: ErrorSink,
                 base_dir: Path, catalog: dict[str, Operation], digest: Any) -> list[MachineEntry]:
    try:
        data = read_limited(csv_path, what="machine table")
    except BadInput as exc:
        top_sink.add(mark, "machines_csv", str(exc))
        return []
    digest.update(data)
    sink = ErrorSink(display)
    # Errors in the CSV are reported against the CSV file, in the same list.
    sink.errors = top_sink.errors
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        top_sink.add(mark, "machines_csv", f"{csv_path}: not UTF-8 text")
        return []
    lines = text.splitlines()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        top_sink.add(mark, "machines_csv", f"{csv_path}: empty; the first line names the columns")
        return []
    header = [h.strip() for h in rows[0]]
    columns: list[tuple[str, str | None, type[Any] | None]] = []  # (column, op, field type)
    for number, column in enumerate(header):
        col_mark = Mark(1, _column_of(lines[0] if lines else "", number))
        if column in CSV_COLUMNS:
            columns.append((column, None, None))
            continue
        op_name, _, field_name = column.partition(".")
        operation = catalog.get(op_name)
        if field_name and operation is not None and operation.options_type is not None:
            fields = option_fields(operation.options_type)
            if field_name in fields:
                columns.append((column, op_name, fields[field_name]))
                continue
            sink.add(col_mark, f"machines_csv.{column}",
                     f"unknown option{did_you_mean(field_name, fields)}")
        else:
            sink.add(col_mark, f"machines_csv.{column}",
                     f"unknown column{did_you_mean(column, CSV_COLUMNS)}; columns are "
                     f"{', '.join(CSV_COLUMNS)} or OPERATION.OPTION")
        columns.append((column, None, str))  # keep positions aligned; ignored below
    entries: list[MachineEntry] = []
    for row_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        line = lines[row_number - 1] if row_number - 1 < len(lines) else ""
        path = f"machines_csv[{len(entries)}]"
        entry = MachineEntry(first_index + len(entries), sink, path, Mark(row_number, 1))
        if len(row) != len(header):
            sink.add(Mark(row_number, 1), path,
                     f"has {len(row)} fields, the header has {len(header)}")
            continue
        for number, ((column, column_op, field_type), raw_cell) in enumerate(
                zip(columns, row, strict=True)):
            cell = raw_cell.strip()
            cell_mark = Mark(row_number, _column_of(line, number))
            if column_op is not None and field_type is not None:
                if cell == "":
                    continue
                try:
                    value = convert_text(cell, field_type, base_dir, cell_mark)
                except Invalid as exc:
                    sink.add(cell_mark, f"{path}.{column}", str(exc))
                    continue
                entry.options.setdefault(column_op, {})[column.partition(".")[2]] = value
                entry.option_marks.setdefault(column_op, cell_mark)
            elif column in CSV_COLUMNS and cell:
                entry.marks[column] = cell_mark
                if column == "seed":
                    try:
                        entry.values["seed"] = parse_seed(cell)
                    except ValueError as exc:
                        sink.add(cell_mark, f"{path}.seed", str(exc))
                        continue
                elif column == "drivers":
                    drivers = [resolve_path(base_dir, p.strip()) for p in cell.split(";") if p.strip()]
                    for driver in drivers:
                        if not driver.exists():
                            sink.add(cell_mark, f"{path}.drivers", f"{driver}: no such driver file or folder")
                    entry.values["drivers"] = drivers
                else:
                    entry.values[column] = cell
        entries.append(entry)
    return entries


def _column_of(line: str, field_number: int) -> int:
    """1-based character column of a CSV field when the line has no quoting; else the field."""
    if '"' in line:
        return field_number + 1
    parts = line.split(",")
    return sum(len(p) + 1 for p in parts[:field_number]) + 1
