"""The audit's test LAN, built once per test session (per xdist worker) and removed at its end,
also when a test fails; and one credentialed audit of it whose report several tests read."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.audit.lab import HostSpec, Lab, tools_missing

RESEAL = str(Path(sys.executable).with_name("reseal"))
SHARED_SID = "S-1-5-21-1111111111-2222222222-3333333333"
SHARED_MAC = "52:54:00:aa:bb:01"
SHARED_MACHINE_ID = "5a0c1e7d2b3f4a5e9c8d7b6a5f4e3d2c"
SHARED_GUID = "11111111-2222-3333-4444-555555555555"
SHARED_SUS_ID = "3c2b1a09-8f7e-4d6c-9b5a-493827160504"
TIMEOUT = 2.0


def lab_hosts() -> list[HostSpec]:
    """The planted collisions: HOSTA and HOSTB are a clone pair (one SID, one SSH host key set,
    one MAC, one machine-id, one MachineGuid and SusClientId), HOSTC has its own identity; hostile and broken
    hosts beside them; DUP1 and DUP2 both claim .40."""
    return [
        HostSpec("HOSTA", 11, mac=SHARED_MAC, sid=SHARED_SID, ssh_keys="golden",
                 machine_id=SHARED_MACHINE_ID,
                 registry={"MachineGuid": SHARED_GUID, "SusClientId": SHARED_SUS_ID}),
        HostSpec("HOSTB", 12, mac=SHARED_MAC, sid=SHARED_SID, ssh_keys="golden",
                 machine_id=SHARED_MACHINE_ID,
                 registry={"MachineGuid": SHARED_GUID, "SusClientId": SHARED_SUS_ID}),
        HostSpec("HOSTC", 13, mac="52:54:00:aa:bb:03", machine_id="c" * 32,
                 registry={"MachineGuid": "33333333-2222-3333-4444-555555555555"}),
        HostSpec("JUNK", 21, kind="responder", behaviour="garbage"),
        HostSpec("RST", 22, kind="responder", behaviour="reset"),
        HostSpec("MUTE", 23, kind="responder", behaviour="silent"),
        HostSpec("NAMES", 24, kind="responder", behaviour="names"),
        HostSpec("DROP", 25, kind="responder", behaviour="silent", drop_from_scanner=True),
        HostSpec("DUP1", 31, kind="responder", behaviour="quiet", extra_addresses=[40]),
        HostSpec("DUP2", 32, kind="responder", behaviour="quiet", extra_addresses=[40]),
    ]


@dataclass
class LabAudit:
    lab: Lab
    report: dict[str, Any]
    exit_code: int
    html: Path
    stderr: str

    def machine(self, index: int) -> dict[str, Any]:
        address = self.lab.address(index)
        return next(m for m in self.report["machines"] if address in m["addresses"])


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the LAN lab needs root (network namespaces)")
    missing = tools_missing()
    if missing:
        pytest.skip(f"the LAN lab needs {', '.join(missing)} (scripts/apt-packages.txt)")
    with Lab.create(lab_hosts(), tmp_path_factory.mktemp("lab")) as built:
        yield built


def credentials_file(lab: Lab) -> Path:
    path = lab.workdir / "credentials.yaml"
    path.write_text(f"smb:\n  username: root\n  password_env: LAB_SMB_PASSWORD\n"
                    f"ssh:\n  username: root\n  key_file: {lab.client_key}\n")
    path.chmod(0o600)
    return path


def run_audit(lab: Lab, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    proc = lab.scanner_run([RESEAL, "audit", "lan", *args, "--json"], timeout=timeout,
                           env={"LAB_SMB_PASSWORD": lab.password})
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope="session")
def lab_audit(lab: Lab) -> LabAudit:
    """The whole /24 (254 addresses, of which the lab's hosts answer), with credentials."""
    html = lab.workdir / "report.html"
    code, report, stderr = run_audit(lab, str(lab.network), "--credentials",
                                     str(credentials_file(lab)), "--timeout", str(TIMEOUT),
                                     "--html", str(html))
    return LabAudit(lab, report, code, html, stderr)
