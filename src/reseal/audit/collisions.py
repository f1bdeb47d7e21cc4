"""One collision model for the LAN and for images: a value of one kind seen on more than one
machine is a finding, with the kind's severity and fix. A value that some machine reported
through a signal known to be unreliable is shown with severity `info` and never scored."""

from __future__ import annotations

from collections import defaultdict

from reseal.audit.kinds import KINDS, SEVERITY_ORDER
from reseal.audit.model import AuditReport, Finding, Machine


def normalise(kind: str, value: str) -> str:
    """The form two values are compared in: SIDs, GUIDs, MACs and hex ids case-insensitive,
    names case-insensitive (NetBIOS and DNS names are), fingerprints as they are."""
    if kind == "ssh-host-key":
        return value.strip()
    return value.strip().lower()


def find_collisions(machines: list[Machine], extra: list[Finding] | None = None) -> list[Finding]:
    groups: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    shown: dict[tuple[str, str], str] = {}
    details: dict[tuple[str, str], set[str]] = defaultdict(set)
    for machine in machines:
        for identity in machine.identities:
            if not identity.value or identity.kind not in KINDS:
                continue
            key = (identity.kind, normalise(identity.kind, identity.value))
            groups[key][machine.id].append(identity.unreliable)
            shown.setdefault(key, identity.value)
            if identity.detail:
                details[key].add(identity.detail)
    labels = {m.id: m.label for m in machines}
    findings = list(extra or [])
    for key, by_machine in groups.items():
        if len(by_machine) < 2:
            continue
        kind = KINDS[key[0]]
        reasons = sorted({r for rs in by_machine.values() for r in rs if r})
        # a value is trustworthy only when every machine that showed it showed it reliably
        scored = kind.scored and not reasons
        ids = sorted(by_machine)
        notes = [f"not scored: {r}" for r in reasons]
        if details[key]:
            notes.append("seen as: " + ", ".join(sorted(details[key])))
        findings.append(Finding(
            kind=kind.name, title=kind.title, value=shown[key],
            severity=kind.severity if scored else "info", scored=scored,
            machines=ids, labels=[labels[i] for i in ids], why=kind.why, fix=kind.fix,
            operations=list(kind.operations), notes=notes))
    findings.sort(key=lambda f: (-SEVERITY_ORDER[f.severity], f.kind, f.value))
    return findings


def summarise(machines: list[Machine], findings: list[Finding]) -> dict[str, int]:
    summary = {severity: 0 for severity in SEVERITY_ORDER}
    for finding in findings:
        summary[finding.severity] += 1
    summary["scored"] = sum(1 for f in findings if f.scored)
    summary["machines"] = len(machines)
    summary["machines_answering"] = sum(1 for m in machines if m.status == "ok")
    return summary


def exit_code(report: AuditReport, fail_on: str) -> int:
    """3 when a scored finding at `fail_on` severity or above exists, else 0."""
    threshold = SEVERITY_ORDER[fail_on]
    hit = any(f.scored and SEVERITY_ORDER[f.severity] >= threshold for f in report.findings)
    return 3 if hit else 0
