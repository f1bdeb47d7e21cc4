"""Answer files: one YAML file says what every machine of a batch becomes.

`load_answer_file(path)` reads and validates the whole file (and its CSV machine table, and
an imported unattend.xml) before anything is touched, and returns one `GeneralizePlan` per
machine. Every problem is reported at once as `file:line:column: key.path: what is wrong`.
The format is documented in docs/answer-files.md.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.errors import BadInput
from reseal.operations import all_operations
from reseal.operations.base import IdentityRequest, Operation
from reseal.pipeline.answerfields import (
    AnswerFileError,
    ErrorSink,
    Invalid,
    MapReader,
    convert_text,
    did_you_mean,
    option_fields,
    read_option_values,
)
from reseal.pipeline.plan import (
    CloneSpec,
    DomainSettings,
    FirstBootSettings,
    GeneralizePlan,
    PasswordRef,
)
from reseal.pipeline.yamlsafe import Mark, YMap, describe, load_yaml, read_limited

__all__ = ["AnswerFile", "AnswerFileError", "BatchSettings", "load_answer_file",
           "settings_for_machine", "settings_from_plan"]

FORMAT_VERSION = 1
TOP_KEYS = ("version", "os", "unattend", "defaults", "operations", "machines", "machines_csv",
            "count", "start", "batch")
DEFAULT_KEYS = ("hostname", "machine_sid", "machine_id", "seed", "drivers", "domain",
                "firstboot")
MACHINE_KEYS = ("name", "hostname", "mac", "machine_sid", "machine_id", "seed", "ou", "target",
                "drivers", "options")
CSV_COLUMNS = ("name", "hostname", "mac", "machine_sid", "machine_id", "seed", "ou", "target",
               "drivers")
DOMAIN_KEYS = ("name", "ou", "account", "password_file", "password_env")
FIRSTBOOT_KEYS = ("registered_owner", "registered_organization", "timezone", "locale",
                  "commands")
OPERATION_KEYS = ("enable", "disable", "options")
BATCH_KEYS = ("master", "master_format", "output", "mode", "jobs", "state_dir")
CLONE_MODES = ("copy", "overlay")
MASTER_FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vpc", "directory")
MAX_MACHINES = 10_000

_SID = re.compile(r"S-1-5-21-(\d{1,10})-(\d{1,10})-(\d{1,10})")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")
_MAC = re.compile(r"([0-9A-Fa-f]{2})([:-]?)([0-9A-Fa-f]{2})(?:\2[0-9A-Fa-f]{2}){4}")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DN_PART = re.compile(r"\s*(OU|CN|DC|O|L|ST|C)=([^,=]|\\,)+\s*", re.IGNORECASE)
_DNS_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_COUNTER_SPEC = re.compile(r"0?[1-9]?d?")


@dataclass(frozen=True)
class BatchSettings:
    """How a batch runs: one master cloned per machine, or each machine's own target."""

    master: Path | None = None
    master_format: str | None = None
    output: Path | None = None
    mode: str = "copy"
    jobs: int | None = None
    state_dir: Path | None = None


@dataclass
class AnswerFile:
    path: Path
    os: str | None
    plans: list[GeneralizePlan]
    batch: BatchSettings | None
    digest: str  # sha256 of the answer file (and CSV), to notice a file changed mid-batch
    warnings: list[str] = field(default_factory=list)

    def plan_for(self, machine: str | None) -> GeneralizePlan:
        if machine is None:
            if len(self.plans) == 1:
                return self.plans[0]
            raise BadInput(f"{self.path}: has {len(self.plans)} machines; choose one with "
                           f"--machine ({', '.join(p.machine for p in self.plans[:8])}"
                           f"{', ...' if len(self.plans) > 8 else ''})")
        for plan in self.plans:
            if plan.machine == machine or (plan.request.hostname or "").lower() == machine.lower():
                return plan
        names = [p.machine for p in self.plans]
        raise BadInput(f"{self.path}: no machine {machine!r}{did_you_mean(machine, names)}")


@dataclass
class _Entry:
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


@dataclass
class _Defaults:
    hostname: tuple[str, Mark] | None = None
    machine_sid: tuple[str, Mark] | None = None
    machine_id: tuple[str, Mark] | None = None
    seed: int | None = None
    drivers: list[Path] = field(default_factory=list)
    domain: DomainSettings | None = None
    domain_mark: Mark | None = None
    firstboot: FirstBootSettings | None = None


@dataclass
class _Operations:
    enable: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    options: dict[str, dict[str, object]] = field(default_factory=dict)
    marks: dict[str, Mark] = field(default_factory=dict)


def load_answer_file(path: str | Path, *, operations: Sequence[Operation] | None = None,
                     display: str | None = None) -> AnswerFile:
    """Read and validate an answer file; raises AnswerFileError listing every problem."""
    path = Path(path)
    name = display or str(path)
    catalog = {op.name: op for op in (operations if operations is not None else all_operations())}
    root = load_yaml(path, display=name)
    sink = ErrorSink(name)
    base_dir = path.resolve().parent
    digest = hashlib.sha256(read_limited(path))
    if root is None:
        sink.add(Mark(1, 1), "(top)", "the answer file is empty; see docs/answer-files.md")
        sink.raise_if_any()
    if not isinstance(root, YMap):
        assert root is not None
        sink.add(root.mark, "(top)", f"expected a mapping of settings, got {describe(root)}")
        sink.raise_if_any()
    assert isinstance(root, YMap)
    top = MapReader(root, "", sink, TOP_KEYS)
    version = top.number("version")
    if version is not None and version != FORMAT_VERSION:
        sink.add(root.items["version"].mark, "version",
                 f"this reseal reads answer file version {FORMAT_VERSION}, not {version}")
    os_name = top.text("os")
    if os_name is not None and os_name not in ("linux", "windows"):
        sink.add(root.items["os"].mark, "os",
                 f"must be linux or windows{did_you_mean(os_name, ('linux', 'windows'))}")
        os_name = None
    warnings: list[str] = []
    defaults = _read_defaults(top, sink, base_dir, warnings)
    ops = _read_operations(top, sink, catalog, base_dir)
    entries = _read_machines(top, sink, base_dir, catalog, digest)
    batch = _read_batch(top, sink, base_dir)
    if not sink.errors and not entries:
        sink.add(root.mark, "machines",
                 "no machines: give machines, machines_csv or count (with defaults.hostname)")
    sink.raise_if_any()
    plans = _build_plans(entries, defaults, ops, catalog, batch, os_name, base_dir, sink)
    sink.raise_if_any()
    return AnswerFile(path, os_name, plans, batch, digest.hexdigest(), warnings)


# --- sections --------------------------------------------------------------------------


def _read_defaults(top: MapReader, sink: ErrorSink, base_dir: Path,
                   warnings: list[str]) -> _Defaults:
    defaults = _Defaults()
    imported = None
    unattend = top.text("unattend")
    if unattend is not None:
        from reseal.pipeline.unattend import import_unattend

        unattend_path = _resolve(base_dir, unattend)
        try:
            imported = import_unattend(unattend_path)
        except BadInput as exc:
            sink.add(top.node.items["unattend"].mark, "unattend", str(exc))
        else:
            warnings.extend(imported.warnings)
            if imported.computer_name:
                defaults.hostname = (imported.computer_name, top.node.items["unattend"].mark)
    reader = top.mapping("defaults", DEFAULT_KEYS)
    if reader is not None:
        hostname = reader.text("hostname")
        if hostname is not None:
            defaults.hostname = (hostname, reader.node.items["hostname"].mark)
            _check_pattern(hostname, reader.node.items["hostname"].mark, reader.sub("hostname"),
                           sink)
        for key in ("machine_sid", "machine_id"):
            value = reader.text(key)
            if value is not None:
                mark = reader.node.items[key].mark
                _check_identity_value(key, value, mark, reader.sub(key), sink)
                setattr(defaults, key, (value, mark))
        defaults.seed = reader.number("seed", minimum=0)
        defaults.drivers = _read_drivers(reader, "drivers", sink, base_dir)
        domain_reader = reader.mapping("domain", (*DOMAIN_KEYS, "password"))
        if domain_reader is not None:
            defaults.domain = _read_domain(domain_reader, sink, base_dir)
            defaults.domain_mark = domain_reader.node.mark
        firstboot_reader = reader.mapping("firstboot", FIRSTBOOT_KEYS)
        if firstboot_reader is not None:
            defaults.firstboot = _read_firstboot(firstboot_reader)
    if imported is not None:
        defaults.domain, defaults.firstboot = imported.merge_under(defaults.domain,
                                                                   defaults.firstboot)
    if defaults.domain is not None and defaults.domain_mark is None and unattend is not None:
        defaults.domain_mark = top.node.items["unattend"].mark
    return defaults


def _read_domain(reader: MapReader, sink: ErrorSink, base_dir: Path) -> DomainSettings | None:
    if reader.has("password"):
        sink.add(reader.node.items["password"].mark, reader.sub("password"),
                 "a password is never stored in an answer file; use password_file: PATH "
                 "or password_env: VARIABLE")
    name = reader.text("name")
    if name is None:
        sink.add(reader.node.mark, reader.sub("name"), "missing: the DNS name of the domain "
                 "(e.g. corp.example.com)")
        return None
    if not _DNS_NAME.fullmatch(name):
        sink.add(reader.node.items["name"].mark, reader.sub("name"),
                 f"{name!r} is not a DNS domain name (letters, digits, hyphens, dots)")
    ou = reader.text("ou")
    if ou is not None:
        _check_ou(ou, reader.node.items["ou"].mark, reader.sub("ou"), sink)
    password_file = reader.text("password_file")
    password_env = reader.text("password_env")
    if password_file is not None and password_env is not None:
        sink.add(reader.node.items["password_env"].mark, reader.sub("password_env"),
                 "give password_file or password_env, not both")
    if password_env is not None and not _ENV_NAME.fullmatch(password_env):
        sink.add(reader.node.items["password_env"].mark, reader.sub("password_env"),
                 f"{password_env!r} is not an environment variable name")
    password = None
    if password_file is not None:
        password = PasswordRef(file=_resolve(base_dir, password_file))
    elif password_env is not None:
        password = PasswordRef(env=password_env)
    account = reader.text("account")
    if password is not None and account is None:
        sink.add(reader.node.mark, reader.sub("account"),
                 "a join password needs the join account (account: DOMAIN\\user)")
    return DomainSettings(name=name, ou=ou, account=account, password=password)


def _read_firstboot(reader: MapReader) -> FirstBootSettings:
    return FirstBootSettings(
        registered_owner=reader.text("registered_owner"),
        registered_organization=reader.text("registered_organization"),
        timezone=reader.text("timezone"),
        locale=reader.text("locale"),
        commands=tuple(text for text, _ in reader.str_list("commands")),
    )


def _read_operations(top: MapReader, sink: ErrorSink, catalog: dict[str, Operation],
                     base_dir: Path) -> _Operations:
    ops = _Operations()
    reader = top.mapping("operations", OPERATION_KEYS)
    if reader is None:
        return ops
    for key, target in (("enable", ops.enable), ("disable", ops.disable)):
        for index, (name, mark) in enumerate(reader.str_list(key)):
            if name not in catalog:
                sink.add(mark, f"operations.{key}[{index}]",
                         f"unknown operation {name!r}{did_you_mean(name, catalog)}; "
                         "`reseal operations` lists them")
            else:
                target.append(name)
    for name in sorted(set(ops.enable) & set(ops.disable)):
        sink.add(reader.node.items["disable"].mark, "operations.disable",
                 f"{name} is both enabled and disabled")
    options = reader.raw_map("options")
    if options is None:
        return ops
    for op_name, node in options.items.items():
        path = f"operations.options.{op_name}"
        operation = catalog.get(op_name)
        if operation is None:
            sink.add(options.key_marks[op_name], path,
                     f"unknown operation{did_you_mean(op_name, catalog)}; "
                     "`reseal operations` lists them")
            continue
        if operation.options_type is None:
            sink.add(options.key_marks[op_name], path, "this operation takes no options")
            continue
        if not isinstance(node, YMap):
            sink.add(node.mark, path, f"expected a mapping of options, got {describe(node)}")
            continue
        ops.options[op_name] = read_option_values(node, operation.options_type, path, sink,
                                                  base_dir)
        ops.marks[op_name] = options.key_marks[op_name]
    return ops


def _read_batch(top: MapReader, sink: ErrorSink, base_dir: Path) -> BatchSettings | None:
    reader = top.mapping("batch", BATCH_KEYS)
    if reader is None:
        return None
    master = reader.text("master")
    master_path = _resolve(base_dir, master) if master else None
    if master_path is not None and not master_path.exists():
        sink.add(reader.node.items["master"].mark, "batch.master",
                 f"{master_path}: no such image or directory")
    mode = reader.text("mode") or "copy"
    if mode not in CLONE_MODES:
        sink.add(reader.node.items["mode"].mark, "batch.mode",
                 f"must be copy or overlay{did_you_mean(mode, CLONE_MODES)}")
    master_format = reader.text("master_format")
    if master_format is not None and master_format not in MASTER_FORMATS:
        sink.add(reader.node.items["master_format"].mark, "batch.master_format",
                 f"must be one of {', '.join(MASTER_FORMATS)}"
                 f"{did_you_mean(master_format, MASTER_FORMATS)}")
    if mode == "overlay" and master_path is not None and master_path.is_dir():
        sink.add(reader.node.items["mode"].mark, "batch.mode",
                 "overlay mode needs a disk image master, not a directory; use mode: copy")
    output = reader.text("output")
    if master_path is not None and output is None:
        sink.add(reader.node.mark, "batch.output", "missing: the directory the clones go to")
    state_dir = reader.text("state_dir")
    return BatchSettings(
        master=master_path,
        master_format=master_format,
        output=_resolve(base_dir, output) if output else None,
        mode=mode,
        jobs=reader.number("jobs", minimum=1),
        state_dir=_resolve(base_dir, state_dir) if state_dir else None,
    )


def _read_drivers(reader: MapReader, key: str, sink: ErrorSink, base_dir: Path) -> list[Path]:
    out = []
    for index, (text, mark) in enumerate(reader.str_list(key)):
        path = _resolve(base_dir, text)
        if not path.exists():
            sink.add(mark, f"{reader.sub(key)}[{index}]", f"{path}: no such driver file or folder")
        out.append(path)
    return out


# --- machine table ---------------------------------------------------------------------


def _read_machines(top: MapReader, sink: ErrorSink, base_dir: Path,
                   catalog: dict[str, Operation], digest: Any) -> list[_Entry]:
    entries: list[_Entry] = []
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
        entries.extend(_csv_entries(_resolve(base_dir, csv_name),
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
            entries = [_Entry(i, sink, f"count[{i}]", top.node.items["count"].mark)
                       for i in range(count)]
    first = start if start is not None else 1
    for entry in entries:
        entry.values.setdefault("n", first + entry.index)
    if len(entries) > MAX_MACHINES:
        sink.add(top.node.mark, "machines", f"at most {MAX_MACHINES} machines")
    return entries


def _inline_entry(index: int, node: YMap, path: str, sink: ErrorSink, base_dir: Path,
                  catalog: dict[str, Operation]) -> _Entry:
    reader = MapReader(node, path, sink, MACHINE_KEYS)
    entry = _Entry(index, sink, path, node.mark)
    for key in ("name", "hostname", "mac", "machine_sid", "machine_id", "ou", "target"):
        value = reader.text(key)
        if value is not None:
            entry.values[key] = value
            entry.marks[key] = node.items[key].mark
    seed = reader.number("seed", minimum=0)
    if seed is not None:
        entry.values["seed"] = seed
    if reader.has("drivers"):
        entry.values["drivers"] = _read_drivers(reader, "drivers", sink, base_dir)
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


def _csv_entries(csv_path: Path, display: str, mark: Mark, first_index: int, top_sink: ErrorSink,
                 base_dir: Path, catalog: dict[str, Operation], digest: Any) -> list[_Entry]:
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
    entries: list[_Entry] = []
    for row_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        line = lines[row_number - 1] if row_number - 1 < len(lines) else ""
        path = f"machines_csv[{len(entries)}]"
        entry = _Entry(first_index + len(entries), sink, path, Mark(row_number, 1))
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
                    if not cell.isdigit():
                        sink.add(cell_mark, f"{path}.seed", f"expected a whole number, got {cell!r}")
                        continue
                    entry.values["seed"] = int(cell)
                elif column == "drivers":
                    drivers = [_resolve(base_dir, p.strip()) for p in cell.split(";") if p.strip()]
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


# --- plans -----------------------------------------------------------------------------


def _build_plans(entries: list[_Entry], defaults: _Defaults, ops: _Operations,
                 catalog: dict[str, Operation], batch: BatchSettings | None, os_name: str | None,
                 base_dir: Path, top_sink: ErrorSink) -> list[GeneralizePlan]:
    plans: list[GeneralizePlan] = []
    seen: dict[str, dict[str, tuple[str, Mark]]] = {
        "hostname": {}, "name": {}, "machine_sid": {}, "machine_id": {}, "mac": {}, "target": {}}

    def unique(kind: str, key: str, entry: _Entry, mark: Mark, path: str, shown: str) -> None:
        previous = seen[kind].get(key)
        if previous is not None:
            entry.sink.add(mark, path, f"duplicate {kind} {shown}: {previous[0]} "
                           f"(line {previous[1].line}) has it too")
        else:
            seen[kind][key] = (entry.path, mark)

    pattern_reported = False
    for entry in entries:
        n = int(entry.values["n"])  # type: ignore[call-overload]
        sink = entry.sink
        hostname = None
        pattern = entry.text("hostname")
        pattern_mark = entry.at("hostname")
        pattern_path = f"{entry.path}.hostname"
        if pattern is None and defaults.hostname is not None:
            pattern, pattern_mark = defaults.hostname
            pattern_path = "defaults.hostname"
            sink = top_sink
        if pattern is not None:
            if pattern_path != "defaults.hostname" and not _check_pattern(
                    pattern, pattern_mark, pattern_path, sink):
                continue
            hostname = _render(pattern, n)
            if hostname is None:
                continue
            problem = hostname_problem(hostname, os_name)
            if problem and pattern_path == "defaults.hostname" and pattern_reported:
                continue  # one error per pattern, for its first machine
            if problem:
                pattern_reported = pattern_path == "defaults.hostname"
                shown = f"{hostname!r}" + (f" (machine {n})" if hostname != pattern else "")
                sink.add(pattern_mark, pattern_path, f"{shown} {problem}")
                continue
            unique("hostname", hostname.lower(), entry, pattern_mark, pattern_path, hostname)
        machine = entry.text("name") or hostname or f"machine-{n}"
        if not _MACHINE_NAME.fullmatch(machine):
            entry.sink.add(entry.at("name"), f"{entry.path}.name",
                           f"{machine!r}: a machine name is 1-64 letters, digits, '.', '_', '-'")
            continue
        if entry.text("name") is not None:  # names made from hostnames are checked above
            unique("name", machine.lower(), entry, entry.at("name"), f"{entry.path}.name",
                   machine)
        identity: dict[str, str | None] = {}
        for key in ("machine_sid", "machine_id"):
            value = entry.text(key)
            if value is not None:
                if not _check_identity_value(key, value, entry.at(key), f"{entry.path}.{key}",
                                             entry.sink):
                    continue
            else:
                default = getattr(defaults, key)
                value = default[0] if default is not None else None
            identity[key] = value
            if value is not None and value != "random" and entry.text(key) is not None:
                unique(key, value.upper(), entry, entry.at(key), f"{entry.path}.{key}", value)
        mac = entry.text("mac")
        if mac is not None:
            if not _MAC.fullmatch(mac):
                entry.sink.add(entry.at("mac"), f"{entry.path}.mac",
                               f"{mac!r} is not a MAC address (like 52:54:00:12:34:56)")
            else:
                mac = re.sub(r"[:-]", "", mac).lower()
                mac = ":".join(mac[i:i + 2] for i in range(0, 12, 2))
                unique("mac", mac, entry, entry.at("mac"), f"{entry.path}.mac", mac)
        seed = entry.values.get("seed")
        if not isinstance(seed, int):
            seed = None if defaults.seed is None else defaults.seed + n
        domain = defaults.domain
        ou = entry.text("ou")
        if ou is not None:
            if domain is None:
                entry.sink.add(entry.at("ou"), f"{entry.path}.ou",
                               "an OU needs defaults.domain (name at least)")
            elif _check_ou(ou, entry.at("ou"), f"{entry.path}.ou", entry.sink):
                domain = DomainSettings(domain.name, ou, domain.account, domain.password)
        target_text = entry.text("target")
        target = _resolve(base_dir, target_text) if target_text else None
        if target is not None:
            unique("target", str(target), entry, entry.at("target"), f"{entry.path}.target",
                   str(target))
            if batch is not None and batch.master is not None:
                entry.sink.add(entry.at("target"), f"{entry.path}.target",
                               "a batch with batch.master makes its own clones; remove target")
        clone = None
        if batch is not None and batch.master is not None and batch.output is not None:
            clone = CloneSpec(batch.master, batch.output / (machine + _clone_suffix(batch)),
                              batch.mode)
        options = _merged_options(entry, ops, catalog, top_sink)
        drivers_value = entry.values.get("drivers")
        drivers = (list(drivers_value) if isinstance(drivers_value, list)
                   else list(defaults.drivers))
        extra = {"n": str(n)}
        plans.append(GeneralizePlan(
            machine=machine,
            request=IdentityRequest(hostname=hostname, machine_sid=identity.get("machine_sid"),
                                    machine_id=identity.get("machine_id"), seed=seed),
            enable=list(ops.enable),
            disable=list(ops.disable),
            options=options,
            drivers=drivers,
            domain=domain,
            firstboot=defaults.firstboot,
            target=target,
            clone=clone,
            mac=mac,
            extra=extra,
        ))
    return plans


def _merged_options(entry: _Entry, ops: _Operations, catalog: dict[str, Operation],
                    top_sink: ErrorSink) -> dict[str, object]:
    out: dict[str, object] = {}
    for op_name in sorted(set(ops.options) | set(entry.options)):
        options_type = catalog[op_name].options_type
        assert options_type is not None
        values = {**ops.options.get(op_name, {}), **entry.options.get(op_name, {})}
        try:
            out[op_name] = options_type(**values)
        except (TypeError, ValueError, BadInput) as exc:
            if op_name in entry.options:
                entry.sink.add(entry.option_marks[op_name], f"{entry.path}.options.{op_name}",
                               str(exc))
            else:
                top_sink.add(ops.marks[op_name], f"operations.options.{op_name}", str(exc))
    return out


def _clone_suffix(batch: BatchSettings) -> str:
    if batch.mode == "overlay":
        return ".qcow2"
    assert batch.master is not None
    return "" if batch.master.is_dir() else batch.master.suffix


# --- value rules -----------------------------------------------------------------------


def hostname_problem(name: str, os_name: str | None) -> str | None:
    """Why `name` cannot be a computer name on `os_name` (None: unknown, RFC 1123), or None."""
    if os_name == "windows":
        if not 1 <= len(name) <= 15:
            return f"is {len(name)} characters; a Windows computer name is 1-15 (NetBIOS)"
        if not _LABEL.fullmatch(name):
            return ("is not a Windows computer name: letters, digits and hyphens only, "
                    "not starting or ending with a hyphen")
        if name.isdigit():
            return "is only digits; a Windows computer name needs a letter or hyphen"
        return None
    limit = 64 if os_name == "linux" else 253
    if len(name) > limit:
        return f"is {len(name)} characters; a hostname is at most {limit}"
    for label in name.split("."):
        if not 1 <= len(label) <= 63 or not _LABEL.fullmatch(label):
            return ("breaks RFC 1123: each dot-separated label is 1-63 letters, digits or "
                    "hyphens, not starting or ending with a hyphen")
    return None


def _check_pattern(pattern: str, mark: Mark, path: str, sink: ErrorSink) -> bool:
    """A hostname pattern may only use {n} with an optional width, like {n:03}."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        sink.add(mark, path, f"bad hostname pattern: {exc} (write the counter as {{n}} or {{n:03}})")
        return False
    for _literal, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name != "n" or conversion is not None or not _COUNTER_SPEC.fullmatch(spec or ""):
            shown = "{" + field_name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            sink.add(mark, path, f"bad hostname pattern {shown}: the only placeholder is the "
                     "counter, written {n} or {n:03}")
            return False
    return True


def _render(pattern: str, n: int) -> str:
    return pattern.format(n=n)


def _check_identity_value(key: str, value: str, mark: Mark, path: str, sink: ErrorSink) -> bool:
    if key == "machine_sid":
        match = _SID.fullmatch(value)
        if value != "random" and (match is None or
                                  any(int(part) > 0xFFFFFFFF for part in match.groups())):
            sink.add(mark, path, f"{value!r} is not a machine SID: write S-1-5-21-A-B-C "
                     "(three numbers below 4294967296) or random")
            return False
    elif not _MACHINE_ID.fullmatch(value) or value == "0" * 32:
        sink.add(mark, path, f"{value!r} is not a machine-id: 32 lowercase hex digits, "
                 "not all zero")
        return False
    return True


def _check_ou(ou: str, mark: Mark, path: str, sink: ErrorSink) -> bool:
    parts = re.split(r"(?<!\\),", ou)
    if not all(_DN_PART.fullmatch(part) for part in parts):
        sink.add(mark, path, f"{ou!r} is not a distinguished name like OU=Lab,DC=corp,DC=example")
        return False
    return True


def _resolve(base_dir: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return Path(os.path.normpath(path if path.is_absolute() else base_dir / path))


# --- for the runner --------------------------------------------------------------------


def settings_from_plan(plan: GeneralizePlan) -> Any:
    """The runner's RunSettings for one plan (the runner takes settings, not plans)."""
    from reseal.pipeline.runner import RunSettings

    return RunSettings(
        machine=plan.machine,
        request=IdentityRequest(plan.request.hostname, plan.request.machine_sid,
                                plan.request.machine_id, plan.request.seed),
        enable=_enabled(plan),
        disable=list(plan.disable),
        options=_with_drivers(plan),
    )


def _enabled(plan: GeneralizePlan) -> list[str]:
    """Driver sets in the answer file switch the driver operation on (unless disabled)."""
    enable = list(plan.enable)
    if (plan.drivers and DRIVER_OPERATION not in enable and DRIVER_OPERATION not in plan.disable
            and any(op.name == DRIVER_OPERATION for op in all_operations())):
        enable.append(DRIVER_OPERATION)
    return enable


DRIVER_OPERATION = "windows-drivers"


def _with_drivers(plan: GeneralizePlan) -> dict[str, object]:
    """Hand the plan's driver sets to the driver operation, unless its options name paths."""
    options = dict(plan.options)
    if not plan.drivers:
        return options
    catalog = {op.name: op for op in all_operations()}
    operation = catalog.get(DRIVER_OPERATION)
    if operation is None or operation.options_type is None:
        return options
    if "paths" not in option_fields(operation.options_type):
        return options
    current = options.get(DRIVER_OPERATION) or operation.options_type()
    if not getattr(current, "paths", None):
        options[DRIVER_OPERATION] = dataclasses.replace(
            current, paths=[str(path) for path in plan.drivers])  # type: ignore[type-var]
    return options


def settings_for_machine(path: Path, machine: str | None) -> Any:
    """`reseal generalize --answer-file F --machine NAME`: that machine's run settings."""
    return settings_from_plan(load_answer_file(path).plan_for(machine))
