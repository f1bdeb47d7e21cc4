"""From validated answer-file sections to one `GeneralizePlan` per machine, and from a plan
to the runner's settings. Every machine's values are checked here, duplicates across the
table included, so a batch never starts with a machine that would fail its own validation.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.errors import BadInput
from reseal.operations import all_operations
from reseal.operations.base import IdentityRequest, Operation
from reseal.pipeline.answerfields import ErrorSink, option_fields, resolve_path
from reseal.pipeline.answerrules import (
    MAC_ADDRESS,
    MACHINE_NAME,
    check_identity_value,
    check_ou,
    check_pattern,
    hostname_problem,
    mac_problem,
    normal_identity,
    normal_mac,
    render_pattern,
)
from reseal.pipeline.machinetable import MachineEntry
from reseal.pipeline.plan import CloneSpec, DomainSettings, FirstBootSettings, GeneralizePlan
from reseal.pipeline.yamlsafe import Mark


@dataclass(frozen=True)
class BatchSettings:
    """How a batch runs: one master cloned per machine, or each machine's own target."""

    master: Path | None = None
    master_format: str | None = None
    output: Path | None = None
    mode: str = "copy"
    jobs: int | None = None
    state_dir: Path | None = None
    cluster: str | None = None  # a Dask scheduler address, tcp://HOST:PORT


@dataclass
class AnswerDefaults:
    hostname: tuple[str, Mark] | None = None
    machine_sid: tuple[str, Mark] | None = None
    machine_id: tuple[str, Mark] | None = None
    seed: int | None = None
    drivers: list[Path] = field(default_factory=list)
    domain: DomainSettings | None = None
    domain_mark: Mark | None = None
    firstboot: FirstBootSettings | None = None


@dataclass
class OperationChoices:
    enable: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    options: dict[str, dict[str, object]] = field(default_factory=dict)
    marks: dict[str, Mark] = field(default_factory=dict)


def build_plans(entries: list[MachineEntry], defaults: AnswerDefaults, ops: OperationChoices,
                 catalog: dict[str, Operation], batch: BatchSettings | None, os_name: str | None,
                 base_dir: Path, top_sink: ErrorSink) -> list[GeneralizePlan]:
    plans: list[GeneralizePlan] = []
    seen: dict[str, dict[str, tuple[str, Mark]]] = {
        "hostname": {}, "name": {}, "machine_sid": {}, "machine_id": {}, "mac": {}, "target": {}}

    def unique(kind: str, key: str, entry: MachineEntry, mark: Mark, path: str, shown: str) -> None:
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
            if pattern_path != "defaults.hostname" and not check_pattern(
                    pattern, pattern_mark, pattern_path, sink):
                continue
            hostname = render_pattern(pattern, n)
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
        if not MACHINE_NAME.fullmatch(machine):
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
                if not check_identity_value(key, value, entry.at(key), f"{entry.path}.{key}",
                                             entry.sink):
                    continue
                value = normal_identity(key, value)
            else:
                default = getattr(defaults, key)
                value = normal_identity(key, default[0]) if default is not None else None
            identity[key] = value
            if value is not None and value != "random" and entry.text(key) is not None:
                unique(key, value.upper(), entry, entry.at(key), f"{entry.path}.{key}", value)
        mac = entry.text("mac")
        if mac is not None:
            if not MAC_ADDRESS.fullmatch(mac):
                entry.sink.add(entry.at("mac"), f"{entry.path}.mac",
                               f"{mac!r} is not a MAC address (like 52:54:00:12:34:56)")
            elif (problem := mac_problem(mac)) is not None:
                entry.sink.add(entry.at("mac"), f"{entry.path}.mac", f"{mac!r} {problem}")
            else:
                mac = normal_mac(mac)
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
            elif check_ou(ou, entry.at("ou"), f"{entry.path}.ou", entry.sink):
                domain = dataclasses.replace(domain, ou=ou)
        target_text = entry.text("target")
        target = resolve_path(base_dir, target_text) if target_text else None
        if target is not None:
            unique("target", target_identity(target), entry, entry.at("target"),
                   f"{entry.path}.target", str(target))
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
                                    machine_id=identity.get("machine_id"), seed=seed,
                                    domain=domain, firstboot=defaults.firstboot),
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


def target_identity(target: Path) -> str:
    """One key per target, however it is spelled: a symlink, `..` or a second hard link to
    the same image (or device) is the same target."""
    real = os.path.realpath(target)
    try:
        st = os.stat(real)
    except OSError:
        return real
    return f"{st.st_dev}:{st.st_ino}"


def _merged_options(entry: MachineEntry, ops: OperationChoices, catalog: dict[str, Operation],
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


def settings_from_plan(plan: GeneralizePlan) -> Any:
    """The runner's RunSettings for one plan (the runner takes settings, not plans)."""
    from reseal.pipeline.runner import RunSettings

    return RunSettings(
        machine=plan.machine,
        request=dataclasses.replace(plan.request, domain=plan.domain,
                                    firstboot=plan.firstboot),
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

