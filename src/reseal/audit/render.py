"""The audit report on a terminal: the findings, what to run, and one line per machine.

Every host- or image-supplied string is passed through `safe()` first: a NetBIOS name or SSH
banner can hold terminal escape sequences, which must be shown, not obeyed.
"""

from __future__ import annotations

from reseal.audit.kinds import SEVERITY_ORDER
from reseal.audit.model import AuditReport, Machine
from reseal.formatting import format_table

MAX_CELL = 60


def safe(text: object, limit: int = MAX_CELL) -> str:
    """Printable text: control characters as \\xNN, long values cut with an ellipsis."""
    out = []
    for ch in str(text):
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    joined = "".join(out)
    return joined if len(joined) <= limit else joined[:limit - 1] + "…"


def headline(report: AuditReport) -> str:
    s = report.summary
    scored = [f"{s[k]} {k}" for k in ("high", "medium", "low") if s.get(k)]
    what = "addresses" if report.scope == "lan" else "images"
    count = report.settings.get(what, s["machines"])
    if count == 1:
        what = "address" if report.scope == "lan" else "image"
    found = f"{s['scored']} collision{'s' if s['scored'] != 1 else ''}"
    if scored:
        found += f" ({', '.join(scored)})"
    if s.get("info"):
        found += f", {s['info']} not scored"
    answering = "answering" if report.scope == "lan" else "read"
    return (f"reseal audit {report.scope}: {count} {what}, {s['machines_answering']} "
            f"{answering}, {found}; {report.seconds:.1f} s")


def tail(text: str, limit: int = 40) -> str:
    """The end of a long path or id, which is the part that tells them apart."""
    shown = safe(text, 10_000)
    return shown if len(shown) <= limit else "…" + shown[-(limit - 1):]


def _machine_ref(machine_id: str, label: str) -> str:
    return tail(machine_id) if label == machine_id else f"{tail(machine_id)} ({safe(label, 24)})"


def _machines_cell(ids: list[str], labels: list[str], shown: int = 4) -> str:
    refs = [_machine_ref(m, lab) for m, lab in zip(ids, labels, strict=True)]
    extra = f", +{len(refs) - shown} more" if len(refs) > shown else ""
    return ", ".join(refs[:shown]) + extra


def render_text(report: AuditReport) -> str:
    lines = [headline(report), ""]
    if report.findings:
        rows = []
        for f in report.findings:
            machines = _machines_cell(f.machines, f.labels)
            rows.append((f.severity if f.scored else "info", f.title, safe(f.value, 48),
                         machines))
        lines.append(format_table(("SEVERITY", "KIND", "VALUE", "MACHINES"), rows))
        lines.append("")
        lines.append("What to do:")
        done = set()
        for f in sorted(report.findings, key=lambda f: -SEVERITY_ORDER[f.severity]):
            if f.kind in done or not f.scored:
                continue
            done.add(f.kind)
            ops = f" (reseal generalize --operations {','.join(f.operations)})" \
                if f.operations else ""
            lines.append(f"  {f.title}: {f.fix}{ops}")
        lines.append("")
    else:
        lines += ["No identity is shared between the machines audited.", ""]
    shown = [m for m in report.machines if m.status != "unreachable"]
    if shown:
        lines.append(format_table(_machine_headers(report), [_machine_row(report, m)
                                                             for m in shown]))
    silent = len(report.machines) - len(shown)
    if silent:
        lines.append(f"{silent} address{'es' if silent != 1 else ''} unreachable (no ARP reply "
                     "or no answer at all); listed in --json and --html")
    notes = [(m, n) for m in report.machines for n in m.notes]
    if notes:
        lines.append("")
        lines += [f"note: {safe(m.id, 40)}: {safe(n, 160)}" for m, n in notes[:200]]
    lines += [f"warning: {safe(w, 200)}" for w in report.warnings]
    return "\n".join(lines)


def _machine_headers(report: AuditReport) -> tuple[str, ...]:
    if report.scope == "lan":
        return ("ADDRESS", "STATUS", "NAME", "MAC", "MACHINE SID", "SSH KEYS", "OS")
    return ("IMAGE", "STATUS", "NAME", "MACHINE SID / MACHINE-ID", "SSH KEYS", "OS")


def _first(machine: Machine, kind: str) -> str:
    return next((i.value for i in machine.identities if i.kind == kind), "")


def _machine_row(report: AuditReport, m: Machine) -> tuple[str, ...]:
    keys = sum(1 for i in m.identities if i.kind == "ssh-host-key")
    name = m.label if m.label != m.id else ""
    if report.scope == "lan":
        addresses = m.id if len(m.addresses) <= 1 else f"{m.id} (+{len(m.addresses) - 1})"
        return (addresses, m.status, safe(name, 20), _first(m, "mac"),
                safe(_first(m, "machine-sid"), 48), str(keys or ""), safe(m.os, 30))
    ident = _first(m, "machine-sid") or _first(m, "machine-id")
    return (tail(m.id, 50), m.status, safe(m.names.get("computer") or m.names.get("hostname")
                                           or "", 20), safe(ident, 48), str(keys or ""),
            safe(m.os, 30))
