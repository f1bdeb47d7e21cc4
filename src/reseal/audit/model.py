"""The audit report: machines, the identity values each showed, and the collisions between them.

Plain dataclasses, serialised as they are by `--json` (schema in docs/audit-report.md). Every
string that came from a host or an image is data, never markup: the renderers escape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 1


@dataclass
class Identity:
    """One identity value a machine showed, and where it was read."""

    kind: str  # a key of reseal.audit.kinds.KINDS ("machine-sid", "ssh-host-key", ...)
    value: str
    source: str  # "LSA opnum 7", "ssh-keyscan", "ARP reply", "SOFTWARE hive", ...
    detail: str = ""  # e.g. the SSH key type, the partition a UUID belongs to
    unreliable: str = ""  # why this value does not prove an identity (then it is not scored)


@dataclass
class Probe:
    """What one probe of one machine gave: `ok`, `closed` (refused), `no answer` (timed out),
    `unreachable`, `garbage` (an answer that is not the protocol), `denied`, `error`,
    `skipped` (not asked for, or nothing to ask)."""

    name: str  # "arp", "nbns", "smb", "lsa", "winreg", "ssh-keys", "ssh-login"
    status: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Machine:
    """A LAN host (one or more addresses that agree on everything) or one image."""

    id: str  # the address, or the image path as given
    label: str  # the best name known: NetBIOS name, host name, or the id
    addresses: list[str] = field(default_factory=list)
    status: str = "ok"  # LAN: "ok", "unreachable", "no answer", "not probed"; images: "ok", "error"
    os: str = ""
    names: dict[str, str] = field(default_factory=dict)  # "netbios", "workgroup", "dns", ...
    identities: list[Identity] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Finding:
    """One identity value seen on more than one machine."""

    kind: str
    title: str  # "machine SID"
    value: str
    severity: str  # "high", "medium", "low", or "info" for what is not scored
    scored: bool  # False for unreliable signals: shown, never counted in the exit code
    machines: list[str]  # Machine.id of each, sorted
    labels: list[str]  # their labels, in the same order
    why: str  # what breaks when machines share it
    fix: str  # what to run to remove it
    operations: list[str]  # the reseal operations that remove it ([] when none does)
    notes: list[str] = field(default_factory=list)


@dataclass
class AuditReport:
    scope: str  # "lan" or "images"
    started: str  # ISO 8601, UTC
    seconds: float
    targets: list[str]  # what was asked for, as given
    machines: list[Machine]
    findings: list[Finding]
    summary: dict[str, int]  # findings per severity, plus "machines", "scored"
    settings: dict[str, object] = field(default_factory=dict)  # concurrency, timeout, ...
    warnings: list[str] = field(default_factory=list)
    schema: int = SCHEMA_VERSION
    tool: str = "reseal"
