"""`reseal audit lan`: collect identities from the given addresses and find collisions.

Order of work, each step bounded in count and time:
1. ARP sweep of the on-link targets (two rounds): who is there, with which MAC(s); an address
   answered by two MACs is a duplicate address. Silent on-link addresses are `unreachable`
   and cost nothing more. Routed targets are probed directly.
2. For each live address, in a bounded pool: SMB (NTLM names, OS, LSA machine SID, with a login
   the remote registry), ssh-keyscan, with a login the SSH facts; one NBNS exchange for all.
   Every probe ends within its budget; the whole audit within `max_time`.
3. Addresses that agree on everything (one MAC, every identity) are one machine with several
   addresses; the rest are compared and every shared value becomes a finding.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import time
from collections import defaultdict
from dataclasses import dataclass, field

from reseal.audit import arp, nbns
from reseal.audit.collisions import find_collisions, normalise, summarise
from reseal.audit.credentials import Credentials
from reseal.audit.kinds import KINDS
from reseal.audit.model import AuditReport, Finding, Identity, Machine, Probe
from reseal.audit.progress import Progress
from reseal.audit.runner import BoundedRunner, Outcome
from reseal.audit.smb import SmbFacts, classify, probe_smb
from reseal.audit.sshprobe import SshKeys, SshLoginFacts, host_keys, login_probe

Address = ipaddress.IPv4Address
ANSWERED = ("ok", "denied")  # a probe that got the protocol's own answer
DC_NOTE = ("domain controller: its account domain is the domain, so every DC of the domain "
           "shares this SID by design")
SAMBA_GUID_NOTE = "Samba derives the SMB ServerGuid from the NetBIOS name"


@dataclass
class LanOptions:
    concurrency: int = 64
    timeout: float = 3.0  # per probe
    max_time: float = 600.0  # the whole audit
    credentials: Credentials = field(default_factory=Credentials)
    arp_wait: float | None = None  # listening time per ARP round; default min(timeout/2, 0.6)


@dataclass
class _Host:
    address: Address
    on_link: bool
    macs: list[str] = field(default_factory=list)
    mac_source: str = ""
    live: bool = True
    probes: list[Probe] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    os: str = ""
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, value: str, source: str, detail: str = "",
            unreliable: str = "") -> None:
        if value and not any(i.kind == kind and normalise(kind, i.value) == normalise(kind, value)
                             and i.source == source for i in self.identities):
            self.identities.append(Identity(kind, value, source, detail, unreliable))


def audit_lan(targets: list[Address], options: LanOptions, *, given: list[str] | None = None,
              progress: Progress | None = None) -> AuditReport:
    started_at = datetime.datetime.now(datetime.UTC)
    start = time.monotonic()
    deadline = start + options.max_time
    warnings: list[str] = []
    interfaces = arp.local_interfaces()
    own = {i.address for i in interfaces}
    for address in [t for t in targets if t in own]:
        warnings.append(f"{address} is this machine's own address: not audited")
    targets = [t for t in targets if t not in own]
    links = arp.on_link(targets, interfaces)
    hosts = {t: _Host(t, t in links) for t in targets}

    wait = options.arp_wait if options.arp_wait is not None else min(options.timeout / 2, 0.6)
    wait = min(wait, options.max_time / 4)  # two rounds stay well inside the cap
    sweep = arp.sweep(links, wait) if links else arp.Sweep()
    warnings += sweep.warnings
    for address, host in hosts.items():
        if address in sweep.macs:
            host.macs, host.mac_source = sweep.macs[address], "ARP reply"
            host.probes.append(Probe("arp", "ok", ", ".join(host.macs)))
        elif address in sweep.asked:
            host.live = False
            host.probes.append(Probe("arp", "no answer",
                                     f"no ARP reply in two rounds of {wait:g} s"))
        elif not host.on_link:
            host.probes.append(Probe("arp", "skipped", "not on a directly attached network: "
                                     "no MAC of its own is visible from here"))

    live = [h for h in hosts.values() if h.live]
    import paramiko  # noqa: F401  (imported once here, not by the first probe's thread)
    runner = BoundedRunner(options.concurrency, deadline)
    budget = options.timeout
    login = options.credentials
    for host in live:
        text = str(host.address)
        # connect and every read end after `timeout` by themselves (socket timeouts); the
        # runner's budget only stops a server that drips bytes to keep a probe alive
        runner.add(("smb", host.address),
                   functools.partial(probe_smb, text, options.timeout, login.smb), 4 * budget)
        runner.add(("ssh-keys", host.address),
                   functools.partial(host_keys, text, options.timeout), budget + 1.0)
        if login.ssh is not None:
            runner.add(("ssh-login", host.address),
                       functools.partial(login_probe, text, options.timeout, login.ssh),
                       4 * budget)
    runner.add(("nbns", None), functools.partial(nbns.node_status, [h.address for h in live],
                                                 options.timeout), budget + 1.0)
    if progress is not None:
        progress.set_total(len(runner.tasks))
        runner.on_done = lambda outcome: progress.advance(_progress_label(outcome))
    outcomes = runner.run()
    if progress is not None:
        progress.close()

    _apply_nbns(outcomes.get(("nbns", None)), hosts, options)
    for host in live:
        _apply_smb(host, outcomes.get(("smb", host.address)), options)
        _apply_keys(host, outcomes.get(("ssh-keys", host.address)), options)
        if login.ssh is not None:
            _apply_login(host, outcomes.get(("ssh-login", host.address)), options)
    if sweep.warnings:  # no raw socket: the kernel's table (filled by the probes) is the source
        table = arp.neighbour_table()
        for host in hosts.values():
            if host.on_link and not host.macs and host.address in table:
                host.macs, host.mac_source = [table[host.address]], "neighbour table"
    if any(o.not_started for o in outcomes.values()):
        warnings.append(f"the audit's time cap ({options.max_time:g} s) was reached: some "
                        "probes were not run (see each host)")

    machines, extra = _machines(hosts)
    findings = find_collisions(machines, extra)
    return AuditReport(
        scope="lan", started=started_at.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - start, 3), targets=list(given or map(str, targets)),
        machines=machines, findings=findings, summary=summarise(machines, findings),
        settings={"addresses": len(targets), "concurrency": options.concurrency,
                  "timeout": options.timeout, "max_time": options.max_time,
                  "arp_wait": wait, "smb_login": login.smb is not None,
                  "ssh_login": login.ssh is not None},
        warnings=warnings)


def _progress_label(outcome: Outcome) -> str:
    probe, address = outcome.key
    return f"{probe} {address}" if address is not None else probe


def _failed(outcome: Outcome | None, name: str, options: LanOptions) -> Probe | None:
    """The probe record of an outcome that gave no value, or None when it has one."""
    if outcome is None or outcome.not_started:
        return Probe(name, "not probed", f"the audit's time cap ({options.max_time:g} s) came "
                                         "first")
    if outcome.overran:
        return Probe(name, "no answer", f"no answer within its budget ({outcome.seconds:.1f} s)",
                     round(outcome.seconds, 3))
    if outcome.error is not None:
        status, detail = classify(outcome.error)
        return Probe(name, status, detail, round(outcome.seconds, 3))
    return None


def _answered(host: _Host, outcome: Outcome | None, name: str,
              options: LanOptions) -> Outcome | None:
    """The outcome when the probe gave a value; else its failure is recorded and None."""
    failure = _failed(outcome, name, options)
    if failure is not None or outcome is None:
        host.probes.append(failure or Probe(name, "not probed"))
        return None
    return outcome


def _apply_nbns(outcome: Outcome | None, hosts: dict[Address, _Host],
                options: LanOptions) -> None:
    failure = _failed(outcome, "nbns", options)
    results: dict[Address, nbns.NodeStatus] = {} if failure or outcome is None else outcome.value
    for host in hosts.values():
        if not host.live:
            continue
        if failure is not None:
            host.probes.append(Probe(failure.name, failure.status, failure.detail))
            continue
        status = results.get(host.address, nbns.NodeStatus("no answer"))
        host.probes.append(Probe("nbns", status.status, status.detail or _names_text(status)))
        if status.status != "ok":
            continue
        name = status.unique(0x00) or status.unique(0x20)
        if name:
            host.add("netbios-name", name, "NBNS node status")
            host.names.setdefault("netbios", name)
        group = status.group(0x00)
        if group:
            host.names.setdefault("workgroup", group)
        if status.mac and status.mac != "00:00:00:00:00:00":
            host.add("nbns-mac", status.mac, "NBNS node status",
                     unreliable="a name service field, not the address answering ARP")


def _names_text(status: nbns.NodeStatus) -> str:
    return ", ".join(f"{n}<{s:02X}>{'*' if g else ''}" for n, s, g in status.names[:20])


def _apply_smb(host: _Host, outcome: Outcome | None, options: LanOptions) -> None:
    outcome = _answered(host, outcome, "smb", options)
    if outcome is None:
        return
    facts: SmbFacts = outcome.value
    seconds = round(outcome.seconds, 3)
    host.probes.append(Probe("smb", facts.status, facts.detail or _smb_text(facts), seconds))
    if facts.status != "ok":
        return
    for key, value in facts.names.items():
        host.names.setdefault(key, value)
    if facts.names.get("netbios"):
        host.add("netbios-name", facts.names["netbios"], "NTLM challenge")
    if facts.names.get("dns"):
        host.add("dns-name", facts.names["dns"], "NTLM challenge")
    if facts.os:
        host.os = facts.os
    if facts.server_guid:
        host.add("smb-server-guid", facts.server_guid, "SMB2 negotiate",
                 unreliable=SAMBA_GUID_NOTE if facts.os.endswith("Build 0") else "")
    host.probes.append(Probe("lsa", facts.lsa_status, facts.lsa_detail))
    if facts.machine_sid:
        is_dc = bool(facts.primary_sid) and facts.primary_sid == facts.machine_sid
        host.add("machine-sid", facts.machine_sid, "LSA opnum 7 (account domain)",
                 detail=facts.account_domain, unreliable=DC_NOTE if is_dc else "")
        if is_dc:
            host.notes.append("domain controller of " + facts.primary_domain)
    if facts.primary_domain:
        host.names.setdefault("domain", facts.primary_domain)
    if facts.registry_status != "skipped":
        host.probes.append(Probe("winreg", facts.registry_status, facts.registry_detail))
    for kind, value in facts.registry.items():
        host.add(kind, value, "remote registry")


def _smb_text(facts: SmbFacts) -> str:
    parts = [f"login {facts.login or 'refused'}"]
    if facts.dialect:
        parts.append(f"dialect {facts.dialect}")
    return ", ".join(parts)


def _apply_keys(host: _Host, outcome: Outcome | None, options: LanOptions) -> None:
    outcome = _answered(host, outcome, "ssh-keys", options)
    if outcome is None:
        return
    keys: SshKeys = outcome.value
    detail = keys.detail or ", ".join(k.key_type for k in keys.keys)
    host.probes.append(Probe("ssh-keys", keys.status, detail, round(outcome.seconds, 3)))
    for key in keys.keys:
        host.add("ssh-host-key", key.fingerprint, "SSH key exchange", detail=key.key_type)
    if keys.banner:
        host.names.setdefault("ssh", keys.banner)


def _apply_login(host: _Host, outcome: Outcome | None, options: LanOptions) -> None:
    outcome = _answered(host, outcome, "ssh-login", options)
    if outcome is None:
        return
    facts: SshLoginFacts = outcome.value
    host.probes.append(Probe("ssh-login", facts.status, facts.detail, round(outcome.seconds, 3)))
    if facts.machine_id:
        host.add("machine-id", facts.machine_id, "ssh: /etc/machine-id")
    for value, where in facts.duids:
        host.add("dhcp-duid", value, f"ssh: {where}")


# -- machines and findings ---------------------------------------------------------------------

def _status(host: _Host) -> str:
    if not host.live:
        return "unreachable"
    network = [p for p in host.probes if p.name not in ("arp",)]
    if any(p.status in ANSWERED for p in network):
        return "ok"
    if network and all(p.status == "not probed" for p in network):
        return "not probed"
    if not host.on_link and all(p.status in ("no answer", "unreachable", "not probed")
                                for p in network):
        return "unreachable"
    return "no answer"


def _signature(host: _Host) -> frozenset[tuple[str, str]]:
    return frozenset((i.kind, normalise(i.kind, i.value)) for i in host.identities
                     if KINDS[i.kind].scored)


def _machines(hosts: dict[Address, _Host]) -> tuple[list[Machine], list[Finding]]:
    """Merge addresses that are one machine; build the duplicate-address findings."""
    merged: dict[tuple[str, frozenset[tuple[str, str]]], list[_Host]] = defaultdict(list)
    singles: list[list[_Host]] = []
    for host in hosts.values():
        signature = _signature(host)
        if len(host.macs) == 1 and host.live and signature:
            merged[(host.macs[0], signature)].append(host)
        else:
            singles.append([host])
    groups = sorted(list(merged.values()) + singles, key=lambda g: g[0].address)
    machines: list[Machine] = []
    owner: dict[str, list[str]] = defaultdict(list)  # MAC -> machine ids
    duplicates: list[tuple[_Host, Machine]] = []
    for group in groups:
        machine = _machine(group)
        machines.append(machine)
        first = group[0]
        if len(first.macs) == 1:
            owner[first.macs[0]].append(machine.id)
        elif len(first.macs) > 1:
            duplicates.append((first, machine))
    findings = []
    for host, machine in duplicates:
        others = sorted({m for mac in host.macs for m in owner.get(mac, []) if m != machine.id})
        ids = [machine.id] + others
        labels = {m.id: m.label for m in machines}
        kind = KINDS["duplicate-address"]
        findings.append(Finding(
            kind=kind.name, title=kind.title, value=str(host.address), severity=kind.severity,
            scored=True, machines=ids, labels=[labels[i] for i in ids], why=kind.why,
            fix=kind.fix, operations=list(kind.operations),
            notes=[f"ARP replies from {len(host.macs)} MACs: {', '.join(host.macs)}",
                   "what was read from this address may come from either machine: it is "
                   "shown, not scored"]))
    return machines, findings


def _machine(group: list[_Host]) -> Machine:
    first = group[0]
    ambiguous = len(first.macs) > 1
    identities = []
    if len(first.macs) == 1:
        first.add("mac", first.macs[0], first.mac_source)
    for identity in first.identities:
        if ambiguous:
            identity.unreliable = identity.unreliable or "the address is answered by several MACs"
        identities.append(identity)
    label = first.names.get("netbios") or first.names.get("dns") or str(first.address)
    machine = Machine(id=str(first.address), label=label,
                      addresses=[str(h.address) for h in group], status=_status(first),
                      os=first.os, names=dict(first.names), identities=identities,
                      probes=list(first.probes), notes=list(first.notes))
    if ambiguous:
        machine.notes.append("several MACs answer for this address: " + ", ".join(first.macs))
    if len(group) > 1:
        machine.notes.append(f"one machine on {len(group)} addresses ({', '.join(machine.addresses)}): "
                             "one MAC and every identity equal")
    return machine
