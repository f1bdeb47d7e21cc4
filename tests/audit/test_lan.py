"""`reseal audit lan` against the namespace LAN of tests/audit/lab.py.

The scanner runs inside the lab's own network namespace, whose only interface is the lab's
bridge port: nothing it sends can reach anything but the lab's addresses.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from tests.audit.conftest import (
    RESEAL,
    SHARED_GUID,
    SHARED_MAC,
    SHARED_MACHINE_ID,
    SHARED_SID,
    SHARED_SUS_ID,
    TIMEOUT,
    LabAudit,
    run_audit,
)
from tests.audit.lab import Lab

pytestmark = [pytest.mark.root]


def _finding_set(report: dict, lab: Lab) -> set[tuple[str, tuple[str, ...]]]:
    return {(f["kind"], tuple(f["machines"])) for f in report["findings"] if f["scored"]}


def test_scanner_namespace_reaches_only_the_lab(lab: Lab) -> None:
    routes = subprocess.run(["ip", "-n", lab.scanner, "-4", "route", "show"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    assert [r.split()[0] for r in routes if r.strip()] == [str(lab.network)]
    links = subprocess.run(["ip", "-n", lab.scanner, "-o", "link", "show"], capture_output=True,
                           text=True, check=True).stdout
    assert sorted(re.findall(r"^\d+: ([^:@]+)", links, re.M)) == ["eth0", "lo"]


def test_planted_collisions_are_found_and_nothing_else(lab_audit: LabAudit) -> None:
    lab = lab_audit.lab
    a, b = lab.address(11), lab.address(12)
    pair = (a, b)
    expected = {("machine-sid", pair), ("ssh-host-key", pair), ("mac", pair),
                ("machine-id", pair), ("machine-guid", pair), ("sus-client-id", pair),
                ("duplicate-address", (lab.address(40), lab.address(31), lab.address(32)))}
    assert _finding_set(lab_audit.report, lab) == expected
    assert lab_audit.exit_code == 3
    by_kind = {f["kind"]: f for f in lab_audit.report["findings"]}
    assert by_kind["machine-sid"]["value"] == SHARED_SID
    assert by_kind["machine-sid"]["severity"] == "high"
    assert by_kind["mac"]["value"] == SHARED_MAC
    assert by_kind["machine-id"]["value"] == SHARED_MACHINE_ID
    assert by_kind["machine-id"]["severity"] == "medium"
    assert by_kind["machine-guid"]["value"] == SHARED_GUID
    assert by_kind["sus-client-id"]["value"] == SHARED_SUS_ID
    assert "windows-machine-sid" in by_kind["machine-sid"]["operations"]
    assert by_kind["ssh-host-key"]["operations"] == ["linux-ssh-hostkeys"]
    # every key type of the shared set collides, each as its own finding
    assert len([f for f in lab_audit.report["findings"] if f["kind"] == "ssh-host-key"]) == 3
    distinct = lab.address(13)
    assert not [f for f in lab_audit.report["findings"] if distinct in f["machines"]]


def test_identities_match_what_the_hosts_hold(lab_audit: LabAudit) -> None:
    lab = lab_audit.lab
    for index, name in ((11, "HOSTA"), (12, "HOSTB"), (13, "HOSTC")):
        machine = lab_audit.machine(index)
        assert machine["status"] == "ok"
        assert machine["label"] == name
        values = {(i["kind"], i["value"]) for i in machine["identities"]}
        assert ("netbios-name", name) in values
        sids = [v for k, v in values if k == "machine-sid"]
        local = subprocess.run(["net", "-s", str(lab.host(name).directory / "smb.conf"),
                                "getlocalsid"], capture_output=True, text=True, check=True)
        assert sids == [local.stdout.strip().rsplit(" ", 1)[-1]], machine["probes"]
        # fingerprints as ssh-keygen computes them from the host's key files
        keyset = lab.workdir / f"keys-{'golden' if index in (11, 12) else name}"
        expected = set()
        for pub in keyset.glob("*.pub"):
            out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True,
                                 text=True, check=True).stdout.split()
            expected.add(out[1])
        assert {v for k, v in values if k == "ssh-host-key"} == expected
        machine_id = (lab.host(name).directory / "machine-id").read_text().strip()
        assert ("machine-id", machine_id) in values
        probes = {p["name"]: p["status"] for p in machine["probes"]}
        assert probes == {"arp": "ok", "nbns": "ok", "smb": "ok", "lsa": "ok", "winreg": "ok",
                          "ssh-keys": "ok", "ssh-login": "ok"}
    assert ("mac", "52:54:00:aa:bb:03") in {(i["kind"], i["value"])
                                            for i in lab_audit.machine(13)["identities"]}


def test_broken_hosts_cost_at_most_their_timeout(lab_audit: LabAudit) -> None:
    for index in (21, 22, 23, 25):  # garbage, reset, silent, dropped by a blackhole route
        machine = lab_audit.machine(index)
        assert machine["status"] == "no answer", machine
        for probe in machine["probes"]:
            assert probe["status"] in ("ok", "no answer", "garbage", "closed", "error"), probe
            if probe["name"] != "arp":
                assert probe["seconds"] <= TIMEOUT + 1.5, (index, probe)
    unreachable = [m for m in lab_audit.report["machines"] if m["status"] == "unreachable"]
    assert len(unreachable) == 254 - 1 - 11  # the scanner's own address is left out
    # the whole /24 with every broken host in it, well inside a few timeouts
    assert lab_audit.report["seconds"] < 4 * TIMEOUT + 6


def test_hostile_names_are_data(lab_audit: LabAudit) -> None:
    machine = lab_audit.machine(24)
    assert machine["label"] == "<script>x"
    assert machine["names"]["workgroup"] == "WORKGRP<i>"
    html = lab_audit.html.read_text()
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    assert html.count("<script") == 1  # the page's own sorting script only


def test_duplicate_address_lists_both_macs(lab_audit: LabAudit) -> None:
    finding = next(f for f in lab_audit.report["findings"] if f["kind"] == "duplicate-address")
    macs = {m["id"]: next(i["value"] for i in m["identities"] if i["kind"] == "mac")
            for m in lab_audit.report["machines"] if m["id"] in finding["machines"][1:]}
    for mac in macs.values():
        assert mac in finding["notes"][0]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _png_distinct_rows(path: Path) -> int:
    """Rows of the picture that differ from the row above: a blank page has almost none."""
    data = path.read_bytes()
    width, height = _png_size(path)
    chunks, pos = b"", 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"IDAT":
            chunks += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(chunks)
    stride = len(raw) // height
    rows = [raw[i * stride + 1:(i + 1) * stride] for i in range(height)]
    return sum(1 for i in range(1, height) if rows[i] != rows[i - 1])


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars"]


def test_html_report_in_headless_chromium(lab_audit: LabAudit, tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (scripts/apt-packages.txt)")
    url = lab_audit.html.resolve().as_uri()
    shot = tmp_path / "report.png"
    common = [browser, *CHROMIUM_FLAGS]
    subprocess.run([*common, f"--user-data-dir={tmp_path / 'profile1'}",
                    f"--screenshot={shot}", "--window-size=1400,1800", url],
                   capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*common, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom",
                          url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert _png_size(shot) == (1400, 1800)
    assert _png_distinct_rows(shot) > 300  # text, tables and badges, not an empty page
    # the findings table as the browser built it: one row per finding
    table = dom[dom.index('id="findings"'):]
    table = table[:table.index("</table>")]
    assert table.count('class="finding"') == len(lab_audit.report["findings"])
    # the hostile NetBIOS name is text in the page, not an element
    assert "&lt;script&gt;x" in dom
    assert dom.count("<script") == 1
    assert "\"&amp;'&lt;b&gt;" in dom


def test_time_cap_is_kept(lab: Lab) -> None:
    started = time.monotonic()
    code, report, _ = run_audit(lab, str(lab.network), "--timeout", "3", "--max-time", "2",
                                "--concurrency", "2")
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 3 * 2 + 3  # the cap, plus the probes running when it came, plus start
    statuses = {p["status"] for m in report["machines"] for p in m["probes"]}
    assert "not probed" in statuses
    assert any("time cap" in w for w in report["warnings"])


def test_without_credentials_the_sid_still_comes_anonymously(lab: Lab) -> None:
    targets = f"{lab.address(11)},{lab.address(12)},{lab.address(13)}"
    code, report, _ = run_audit(lab, targets, "--exclude", lab.address(13), "--timeout",
                                str(TIMEOUT))
    assert code == 3
    assert [m["id"] for m in report["machines"]] == [lab.address(11), lab.address(12)]
    kinds = {f["kind"] for f in report["findings"] if f["scored"]}
    assert kinds == {"machine-sid", "ssh-host-key", "mac"}  # the rest needs a login
    smb = {p["name"]: p for p in report["machines"][0]["probes"]}
    assert smb["lsa"]["status"] == "ok" and "winreg" not in smb


def test_text_report_on_the_terminal(lab: Lab) -> None:
    proc = lab.scanner_run([RESEAL, "audit", "lan", f"{lab.address(12)}-13", "--timeout",
                            str(TIMEOUT), "--fail-on", "high"], timeout=60)
    assert proc.returncode == 0, proc.stderr  # one address per machine: nothing shared
    assert "No identity is shared" in proc.stdout
    assert "HOSTB" in proc.stdout and "HOSTC" in proc.stdout
