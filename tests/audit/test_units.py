"""The audit's parts without a LAN: targets, credentials, the collision model, DUIDs, NBNS
parsing, the bounded runner, and the renderers' handling of hostile strings."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from tests.audit.responder import HOSTILE_NAMES, node_status_answer

from reseal.audit import nbns
from reseal.audit.collisions import exit_code, find_collisions, summarise
from reseal.audit.credentials import load_credentials
from reseal.audit.duid import networkd_duid, siphash24
from reseal.audit.html import render_html
from reseal.audit.model import AuditReport, Identity, Machine
from reseal.audit.render import render_text, safe
from reseal.audit.runner import BoundedRunner
from reseal.audit.sshprobe import parse_remote
from reseal.audit.targets import expand, select
from reseal.errors import BadInput

# -- targets -----------------------------------------------------------------------------------


def test_target_forms(tmp_path: Path) -> None:
    listing = tmp_path / "hosts.txt"
    listing.write_text("# lab\n10.9.0.7\n10.9.0.8, 10.9.0.1  # again\n")
    got = [str(a) for a in expand(["10.9.0.0/30", "10.9.0.5-6,10.9.0.1", f"@{listing}"])]
    assert got == ["10.9.0.1", "10.9.0.2", "10.9.0.5", "10.9.0.6", "10.9.0.7", "10.9.0.8"]
    assert [str(a) for a in select(["10.9.0.0/29"], ["10.9.0.2-5"])] == ["10.9.0.1", "10.9.0.6"]
    assert len(expand(["10.9.0.0/24"])) == 254  # no network or broadcast address


@pytest.mark.parametrize(("spec", "message"), [
    ("10.0.0.0/8", "more than 65536"),
    ("fe80::1", "IPv6"),
    ("server.lan", "host names are not resolved"),
    ("10.0.0.9-3", "ends before it starts"),
    ("10.0.0.1-300", "last octet"),
    ("@/nonexistent/list", "cannot read"),
])
def test_bad_targets_are_refused(spec: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        select([spec], [])


def test_everything_excluded_is_refused() -> None:
    with pytest.raises(BadInput, match="no address left"):
        select(["10.0.0.1"], ["10.0.0.0/24"])


# -- credentials -------------------------------------------------------------------------------


def test_credentials_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "id"
    key.write_text("key")
    path = tmp_path / "c.yaml"
    path.write_text(f"smb:\n  username: admin\n  domain: .\n  password_env: P1\n"
                    f"ssh:\n  username: root\n  key_file: {key}\n  port: 2222\n")
    path.chmod(0o644)
    with pytest.raises(BadInput, match="chmod 600"):
        load_credentials(path)
    path.chmod(0o600)
    with pytest.raises(BadInput, match="P1 is not set"):
        load_credentials(path)
    monkeypatch.setenv("P1", "s3cret-value")
    creds = load_credentials(path)
    assert creds.smb is not None and creds.smb.password == "s3cret-value"
    assert creds.smb.domain == "" and creds.ssh is not None and creds.ssh.port == 2222
    assert "s3cret-value" not in repr(creds)
    path.write_text("smb:\n  username: a\n  password: x\n  pasword_file: y\n")
    with pytest.raises(BadInput, match="unknown setting"):
        load_credentials(path)


# -- the collision model -----------------------------------------------------------------------


def _machine(mid: str, *identities: Identity) -> Machine:
    return Machine(id=mid, label=mid.upper(), identities=list(identities))


def test_collisions_scored_unreliable_and_within_one_machine() -> None:
    sid = "S-1-5-21-1-2-3"
    machines = [
        _machine("a", Identity("machine-sid", sid, "LSA"), Identity("mac", "52:54:00:00:00:01",
                 "ARP"), Identity("fs-uuid", "x", "fs"), Identity("fs-uuid", "x", "fs")),
        _machine("b", Identity("machine-sid", sid.lower(), "LSA"),
                 Identity("smb-server-guid", "g", "negotiate"), Identity("fs-uuid", "y", "fs")),
        _machine("c", Identity("mac", "52:54:00:00:00:01", "ARP",
                               unreliable="the address is answered by several MACs"),
                 Identity("smb-server-guid", "G", "negotiate")),
        _machine("dc1", Identity("machine-sid", "S-1-5-21-9", "LSA", unreliable="dc")),
        _machine("dc2", Identity("machine-sid", "S-1-5-21-9", "LSA", unreliable="dc")),
    ]
    findings = find_collisions(machines)
    got = {(f.kind, f.severity, f.scored, tuple(f.machines)) for f in findings}
    assert got == {("machine-sid", "high", True, ("a", "b")),
                   ("mac", "info", False, ("a", "c")),
                   ("smb-server-guid", "info", False, ("b", "c")),
                   ("machine-sid", "info", False, ("dc1", "dc2"))}
    assert findings[0].kind == "machine-sid" and findings[0].labels == ["A", "B"]
    report = AuditReport("images", "t", 0.0, [], machines, findings,
                         summarise(machines, findings))
    assert report.summary["scored"] == 1 and report.summary["high"] == 1
    assert exit_code(report, "high") == 3
    low_only = [f for f in findings if not f.scored]
    report.findings = low_only
    assert exit_code(report, "low") == 0


def test_low_findings_count_only_with_fail_on_low() -> None:
    machines = [_machine("a", Identity("disk-guid", "d", "GPT")),
                _machine("b", Identity("disk-guid", "D", "GPT"))]
    findings = find_collisions(machines)
    report = AuditReport("images", "t", 0.0, [], machines, findings,
                         summarise(machines, findings))
    assert [f.severity for f in findings] == ["low"]
    assert exit_code(report, "medium") == 0 and exit_code(report, "low") == 3


# -- DUIDs -------------------------------------------------------------------------------------


def test_siphash_and_networkd_duid_vectors() -> None:
    key = bytes(range(16))
    assert siphash24(key, b"") == 0x726FDB47DD0E0E31  # SipHash paper, appendix A
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5
    # systemd's own test vector (dhcp-identifier.c, machine-id 01..10)
    assert networkd_duid("0102030405060708090a0b0c0d0e0f10") == \
        "00:02:00:00:ab:11:61:77:40:de:13:42:c3:a2"


def test_remote_output_is_checked() -> None:
    facts = parse_remote("#machine-id\n0123456789abcdef0123456789abcdef\n#duid-config\n"
                         "DUIDRawData=00:11:22:33\n#leases\nCLIENTID=ff0011<script>\n"
                         "CLIENTID=ffaabbccdd\n#dhclient\n#networkd\nrunning\n#end\n")
    assert facts.machine_id == "0123456789abcdef0123456789abcdef"
    assert facts.duids == [("00:11:22:33", "networkd.conf DUIDRawData"),
                           ("ffaabbccdd", "networkd DHCP lease client id")]
    derived = parse_remote("#machine-id\n0102030405060708090a0b0c0d0e0f10\n#networkd\n"
                           "running\n#end\n")
    assert derived.duids == [("00:02:00:00:ab:11:61:77:40:de:13:42:c3:a2",
                              "networkd default DUID (derived from the machine-id)")]
    assert parse_remote("#machine-id\n\n#networkd\n#end\n").machine_id == ""


# -- NBNS ---------------------------------------------------------------------------------------


def _udp_server(reply: bytes | None) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        sock.settimeout(5)
        try:
            for _ in range(2):
                data, peer = sock.recvfrom(2048)
                sock.sendto(reply if reply is not None else node_status_answer(
                    data, HOSTILE_NAMES), peer)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


def test_node_status_names_and_garbage() -> None:
    import ipaddress

    local = ipaddress.IPv4Address("127.0.0.1")
    sock, port = _udp_server(None)
    status = nbns.node_status([local], 2.0, port=port)[local]
    sock.close()
    assert status.status == "ok"
    assert status.unique(0x00) == "<script>x" and status.group(0x00) == "WORKGRP<i>"
    assert status.mac == "52:54:00:de:ad:01"
    sock, port = _udp_server(os.urandom(40))
    started = time.monotonic()
    status = nbns.node_status([local], 1.0, port=port)[local]
    sock.close()
    assert status.status == "garbage" and time.monotonic() - started < 1.5
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    started = time.monotonic()
    assert nbns.node_status([local], 0.5, port=port)[local].status == "no answer"
    assert time.monotonic() - started < 1.0
    free.close()


# -- the bounded runner -----------------------------------------------------------------------


def test_runner_budgets_and_deadline() -> None:
    release = threading.Event()
    runner = BoundedRunner(concurrency=2, deadline=time.monotonic() + 1.0)
    runner.add("fast", lambda: 42, 5)
    runner.add("stuck", lambda: release.wait(30), 0.3)
    runner.add("boom", lambda: 1 / 0, 5)
    for n in range(4):
        runner.add(f"late{n}", lambda: time.sleep(0.8), 5)
    started = time.monotonic()
    results = runner.run()
    release.set()
    assert time.monotonic() - started < 2.0
    assert results["fast"].value == 42
    assert results["stuck"].overran and results["stuck"].seconds < 0.6
    assert isinstance(results["boom"].error, ZeroDivisionError)
    assert results["late3"].not_started
    assert results["late2"].overran  # running when the deadline came: cut there


# -- renderers ---------------------------------------------------------------------------------


def _hostile_report() -> AuditReport:
    evil = "<script>alert(1)</script>\x1b[31mRED"
    machines = [Machine(id="10.0.0.1", label=evil, status="ok", os=evil,
                        names={"netbios": evil},
                        identities=[Identity("netbios-name", evil, "NBNS"),
                                    Identity("machine-sid", "S-1-5-21-7", "LSA")]),
                Machine(id="10.0.0.2", label="B", status="ok",
                        identities=[Identity("netbios-name", evil, "NBNS"),
                                    Identity("machine-sid", "S-1-5-21-7", "LSA")])]
    findings = find_collisions(machines)
    return AuditReport("lan", "t", 1.0, ["10.0.0.0/30"], machines, findings,
                       summarise(machines, findings), warnings=[evil])


def test_text_report_shows_control_characters_escaped() -> None:
    text = render_text(_hostile_report())
    assert "\x1b" not in text and "\\x1b[31mRED" in text
    assert safe("a\tb\x00c") == "a\\x09b\\x00c"


def test_html_escapes_every_host_string_and_allows_no_fetch() -> None:
    html = render_html(_hostile_report())
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1
    assert "default-src 'none'" in html and "script-src 'sha256-" in html
    assert "http://" not in html and "https://" not in html
    assert html.count('class="finding"') == 2


def test_progress_bar_draws_only_when_asked() -> None:
    import io

    from reseal.audit.progress import Progress

    stream = io.StringIO()
    bar = Progress(4, "probes", stream, bar=True)
    bar.advance("smb 10.0.0.1")
    bar.advance("nbns")
    assert "[###############...............] 2/4 probes" in stream.getvalue()
    bar.close()
    quiet = io.StringIO()
    Progress(4, "probes", quiet).advance("x")  # a StringIO is not a terminal
    assert quiet.getvalue() == ""


def test_unreachable_addresses_fold_into_ranges() -> None:
    from reseal.audit.html import address_ranges

    assert address_ranges(["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.5", "10.0.0.7",
                           "10.0.0.8"]) == ["10.0.0.1-10.0.0.3", "10.0.0.5", "10.0.0.7-10.0.0.8"]


def test_domain_controllers_share_the_domain_sid_unscored() -> None:
    """On a DC the LSA account domain is the domain: its SID is every DC's, by design."""
    import ipaddress

    from reseal.audit.lan import LanOptions, _apply_smb, _Host, _machines
    from reseal.audit.runner import Outcome
    from reseal.audit.smb import SmbFacts

    domain_sid = "S-1-5-21-100-200-300"
    hosts = {}
    for n, (name, primary) in enumerate((("DC1", domain_sid), ("DC2", domain_sid),
                                         ("WS1", domain_sid), ("WS2", domain_sid))):
        address = ipaddress.IPv4Address(f"10.0.0.{n + 1}")
        sid = domain_sid if name.startswith("DC") else "S-1-5-21-7-7-7"
        facts = SmbFacts("ok", names={"netbios": name}, machine_sid=sid,
                         account_domain=name, primary_domain="CORP", primary_sid=primary,
                         lsa_status="ok")
        host = _Host(address, True, macs=[f"52:54:00:00:00:0{n}"], mac_source="ARP reply")
        _apply_smb(host, Outcome(("smb", address), facts, seconds=0.1), LanOptions())
        hosts[address] = host
    machines, extra = _machines(hosts)
    findings = find_collisions(machines, extra)
    got = {(f.kind, f.scored, tuple(f.machines)) for f in findings}
    assert got == {("machine-sid", False, ("10.0.0.1", "10.0.0.2")),
                   ("machine-sid", True, ("10.0.0.3", "10.0.0.4"))}
    assert "domain controller of CORP" in machines[0].notes
