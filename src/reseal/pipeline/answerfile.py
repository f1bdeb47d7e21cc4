"""Answer files: one YAML file says what every machine of a batch becomes.

`load_answer_file(path)` reads and validates the whole file (and its CSV machine table, and
an imported unattend.xml) before anything is touched, and returns one `GeneralizePlan` per
machine. Every problem is reported at once as `file:line:column: key.path: what is wrong`.
The format is documented in docs/answer-files.md.

This module reads the sections; `machinetable` reads the machine rows (inline or CSV),
`answerrules` checks identity values, `answerplans` builds the plans.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.domain.settings import DOMAIN_MODES, ENCTYPE_CHOICES, TLS_MODES
from reseal.errors import BadInput
from reseal.operations import all_operations
from reseal.operations.base import Operation
from reseal.pipeline.answerfields import (
    AnswerFileError,
    ErrorSink,
    MapReader,
    did_you_mean,
    read_drivers,
    read_option_values,
    resolve_path,
)
from reseal.pipeline.answerplans import (
    AnswerDefaults,
    BatchSettings,
    OperationChoices,
    build_plans,
    settings_from_plan,
)
from reseal.pipeline.answerrules import (
    DNS_NAME,
    ENV_NAME,
    MAX_SEED,
    check_identity_value,
    check_ou,
    check_pattern,
    cluster_address_problem,
    hostname_problem,
)
from reseal.pipeline.machinetable import read_machines
from reseal.pipeline.plan import DomainSettings, FirstBootSettings, GeneralizePlan, PasswordRef
from reseal.pipeline.yamlsafe import Mark, YMap, YScalar, describe, load_yaml, read_limited

__all__ = ["AnswerFile", "AnswerFileError", "BatchSettings", "hostname_problem",
           "load_answer_file", "settings_for_machine", "settings_from_plan"]

FORMAT_VERSION = 1
TOP_KEYS = ("version", "os", "unattend", "defaults", "operations", "machines", "machines_csv",
            "count", "start", "batch")
DEFAULT_KEYS = ("hostname", "machine_sid", "machine_id", "seed", "drivers", "domain",
                "firstboot")
DOMAIN_KEYS = ("name", "ou", "account", "password_file", "password_env", "mode", "controller",
               "address", "firstboot_address", "tls", "port", "ca_file", "reuse_existing",
               "enctypes")
FIRSTBOOT_KEYS = ("registered_owner", "registered_organization", "timezone", "locale",
                  "commands")
OPERATION_KEYS = ("enable", "disable", "options")
BATCH_KEYS = ("master", "master_format", "output", "mode", "jobs", "state_dir", "cluster")
CLONE_MODES = ("copy", "overlay")
MASTER_FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vpc", "directory")


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
    entries = read_machines(top, sink, base_dir, catalog, digest)
    batch = _read_batch(top, sink, base_dir)
    if not sink.errors and not entries:
        sink.add(root.mark, "machines",
                 "no machines: give machines, machines_csv or count (with defaults.hostname)")
    sink.raise_if_any()
    plans = build_plans(entries, defaults, ops, catalog, batch, os_name, base_dir, sink)
    sink.raise_if_any()
    return AnswerFile(path, os_name, plans, batch, digest.hexdigest(), warnings)


# --- sections --------------------------------------------------------------------------


def _read_defaults(top: MapReader, sink: ErrorSink, base_dir: Path,
                   warnings: list[str]) -> AnswerDefaults:
    defaults = AnswerDefaults()
    imported = None
    unattend = top.text("unattend")
    if unattend is not None:
        from reseal.pipeline.unattend import import_unattend

        unattend_path = resolve_path(base_dir, unattend)
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
            check_pattern(hostname, reader.node.items["hostname"].mark, reader.sub("hostname"),
                           sink)
        for key in ("machine_sid", "machine_id"):
            value = reader.text(key)
            if value is not None:
                mark = reader.node.items[key].mark
                check_identity_value(key, value, mark, reader.sub(key), sink)
                setattr(defaults, key, (value, mark))
        defaults.seed = reader.number("seed", minimum=0, maximum=MAX_SEED)
        defaults.drivers = read_drivers(reader, "drivers", sink, base_dir)
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
    if not DNS_NAME.fullmatch(name):
        sink.add(reader.node.items["name"].mark, reader.sub("name"),
                 f"{name!r} is not a DNS domain name (letters, digits, hyphens, dots)")
    ou = reader.text("ou")
    if ou is not None:
        check_ou(ou, reader.node.items["ou"].mark, reader.sub("ou"), sink)
    password_file = reader.text("password_file")
    password_env = reader.text("password_env")
    if password_file is not None and password_env is not None:
        sink.add(reader.node.items["password_env"].mark, reader.sub("password_env"),
                 "give password_file or password_env, not both")
    if password_env is not None and not ENV_NAME.fullmatch(password_env):
        sink.add(reader.node.items["password_env"].mark, reader.sub("password_env"),
                 f"{password_env!r} is not an environment variable name")
    password = None
    if password_file is not None:
        password = PasswordRef(file=resolve_path(base_dir, password_file))
    elif password_env is not None:
        password = PasswordRef(env=password_env)
    account = reader.text("account")
    if password is not None and account is None:
        sink.add(reader.node.mark, reader.sub("account"),
                 "a join password needs the join account (account: DOMAIN\\user)")
    choices = {"mode": DOMAIN_MODES, "tls": TLS_MODES, "enctypes": tuple(ENCTYPE_CHOICES)}
    chosen: dict[str, str] = {}
    for key, allowed in choices.items():
        value = reader.text(key)
        if value is not None and value not in allowed:
            extra = " (plain LDAP would send passwords in clear)" if key == "tls" else ""
            sink.add(reader.node.items[key].mark, reader.sub(key),
                     f"must be {' or '.join(allowed)}{extra}{did_you_mean(value, allowed)}")
        elif value is not None:
            chosen[key] = value
    names: dict[str, str] = {}
    for key in ("controller", "address", "firstboot_address"):
        value = reader.text(key)
        if value is not None and not DNS_NAME.fullmatch(value):
            sink.add(reader.node.items[key].mark, reader.sub(key),
                     f"{value!r} is not a host name or IPv4 address")
        elif value is not None:
            names[key] = value
    port = reader.number("port", minimum=1)
    if port is not None and port > 65535:
        sink.add(reader.node.items["port"].mark, reader.sub("port"), "a TCP port is 1-65535")
        port = None
    ca_text = reader.text("ca_file")
    ca_file = resolve_path(base_dir, ca_text) if ca_text else None
    if ca_file is not None and not ca_file.is_file():
        sink.add(reader.node.items["ca_file"].mark, reader.sub("ca_file"),
                 f"{ca_file}: no such file (the CA certificate that signed the DC's)")
    reuse = reader.node_of("reuse_existing")
    reuse_existing = False
    if reuse is not None:
        if isinstance(reuse, YScalar) and isinstance(reuse.value, bool):
            reuse_existing = reuse.value
        else:
            reader.wrong("reuse_existing", "true or false")
    return DomainSettings(name=name, ou=ou, account=account, password=password,
                          mode=chosen.get("mode", "firstboot"), tls=chosen.get("tls", "ldaps"),
                          enctypes=chosen.get("enctypes", "aes"), port=port, ca_file=ca_file,
                          reuse_existing=reuse_existing, **names)


def _read_firstboot(reader: MapReader) -> FirstBootSettings:
    return FirstBootSettings(
        registered_owner=reader.text("registered_owner"),
        registered_organization=reader.text("registered_organization"),
        timezone=reader.text("timezone"),
        locale=reader.text("locale"),
        commands=tuple(text for text, _ in reader.str_list("commands")),
    )


def _read_operations(top: MapReader, sink: ErrorSink, catalog: dict[str, Operation],
                     base_dir: Path) -> OperationChoices:
    ops = OperationChoices()
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
    master_path = resolve_path(base_dir, master) if master else None
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
    output_path = resolve_path(base_dir, output) if output else None
    if output_path is not None and os.path.lexists(output_path) and not output_path.is_dir():
        sink.add(reader.node.items["output"].mark, "batch.output",
                 f"{output_path}: exists and is not a directory; name the directory the "
                 "clones go to")
    state_dir = reader.text("state_dir")
    cluster = reader.text("cluster")
    if cluster is not None:
        problem = cluster_address_problem(cluster)
        if problem:
            sink.add(reader.node.items["cluster"].mark, "batch.cluster", problem)
    return BatchSettings(
        master=master_path,
        master_format=master_format,
        output=output_path,
        mode=mode,
        jobs=reader.number("jobs", minimum=1),
        state_dir=resolve_path(base_dir, state_dir) if state_dir else None,
        cluster=cluster,
    )


def settings_for_machine(path: Path, machine: str | None) -> Any:
    """`reseal generalize --answer-file F --machine NAME`: that machine's run settings."""
    return settings_from_plan(load_answer_file(path).plan_for(machine))
