"""Benchmark `reseal audit lan` on a /24 of namespace hosts, against the stitched-together way.

A lab of HOSTS live hosts (each smbd + nmbd + sshd in its own namespaces, tests/audit/lab.py)
on a random /24; the scanner runs inside the lab's namespace and reaches nothing else. After a
warm-up (smbd starts samba-dcerpcd on the first LSA call), in the same run:

- `reseal audit lan NET/24` (all 254 addresses: ARP sweep, NBNS, SMB/NTLM, LSA opnum 7,
  ssh-keyscan) at each concurrency asked for, timed as the whole command line;
- the peer: for each live host in turn (given the live list, so it scans nothing else),
  `ssh-keyscan` + impacket's NTLM names (failed login), LSA opnum 7 and NBNS node status,
  as an administrator's script would run them.

    .venv/bin/python bench/bench_audit.py [--hosts 48] [--concurrency 16,64] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.audit.lab import HostSpec, Lab, tools_missing  # noqa: E402

from reseal.formatting import format_table  # noqa: E402

RESEAL = str(Path(sys.executable).with_name("reseal"))
PEER = r"""
import subprocess, sys, time
from impacket.smbconnection import SMBConnection
from impacket.dcerpc.v5 import transport, lsad
from impacket.nmb import NetBIOS
found = {}
for ip in sys.argv[1:]:
    keys = subprocess.run(["ssh-keyscan", "-T", "3", "-t", "rsa,ecdsa,ed25519", ip],
                          capture_output=True, text=True).stdout
    fps = subprocess.run(["ssh-keygen", "-lf", "-"], input=keys, capture_output=True,
                         text=True).stdout.split()
    c = SMBConnection(ip, ip, timeout=3)
    try:
        c.login("", "")
    except Exception:
        pass
    name = c.getServerName()
    t = transport.SMBTransport(ip, filename=r"\lsarpc", smb_connection=c)
    d = t.get_dce_rpc(); d.connect(); d.bind(lsad.MSRPC_UUID_LSAD)
    pol = lsad.hLsarOpenPolicy2(d, lsad.POLICY_VIEW_LOCAL_INFORMATION)["PolicyHandle"]
    r = lsad.hLsarQueryInformationPolicy(d, pol,
        lsad.POLICY_INFORMATION_CLASS.PolicyAccountDomainInformation)
    sid = r["PolicyInformation"]["PolicyAccountDomainInfo"]["DomainSid"].formatCanonical()
    nb = NetBIOS().getnodestatus("*", ip, timeout=1)
    found[ip] = (name, sid, len(fps) // 4, len(nb))
print(len(found), sum(1 for v in found.values() if v[1] and v[2]))
"""


def _breakdown(report: dict) -> str:
    """Median seconds of each probe kind, and what did not come back ok."""
    seconds: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    for machine in report["machines"]:
        for probe in machine["probes"]:
            if probe["seconds"]:
                seconds.setdefault(probe["name"], []).append(probe["seconds"])
            if machine["status"] == "ok" and probe["status"] not in ("ok", "skipped"):
                key = f"{probe['name']} {probe['status']}"
                failed[key] = failed.get(key, 0) + 1
    medians = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in sorted(seconds.items()))
    return f"median probe s: {medians}; not ok: {failed or 'none'}"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=48)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0 or tools_missing():
        print(f"skipped: needs root and {', '.join(tools_missing()) or 'nothing else'}")
        return 0
    specs = [HostSpec(f"BENCH{n:03d}", 10 + n, key_types=("ed25519", "ecdsa"),
                      smb_user=False) for n in range(args.hosts)]
    started = time.monotonic()
    with Lab.create(specs, start_timeout=300) as lab:
        built = time.monotonic() - started
        print(f"lab: {args.hosts} hosts on {lab.network} up in {built:.1f} s (load {_load()})")
        lab.scanner_run([RESEAL, "audit", "lan", str(lab.network), "--json"], timeout=300)
        rows = []
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            times, cpu = [], []
            for _ in range(args.runs):
                c0 = _cpu()
                t0 = time.monotonic()
                proc = lab.scanner_run([RESEAL, "audit", "lan", str(lab.network), "--json",
                                        "--concurrency", str(concurrency)], timeout=300)
                times.append(time.monotonic() - t0)
                cpu.append(_cpu() - c0)
                report = json.loads(proc.stdout)
                answering = report["summary"]["machines_answering"]
                with_sid = sum(1 for m in report["machines"]
                               if any(i["kind"] == "machine-sid" for i in m["identities"]))
                print(f"  concurrency {concurrency}: {times[-1]:.2f} s; {_breakdown(report)}")
            median = statistics.median(times)
            rows.append((f"reseal audit lan /24, concurrency {concurrency}", f"{median:.2f}",
                         f"{statistics.median(cpu):.2f}", f"{answering / median:.1f}",
                         f"{254 / median:.1f}", f"{answering} answering, {with_sid} SIDs"))
        live = [h.address for h in lab.hosts]
        c0 = _cpu()
        t0 = time.monotonic()
        proc = lab.scanner_run([sys.executable, "-c", PEER, *live], timeout=900)
        peer = time.monotonic() - t0
        peer_cpu = _cpu() - c0
        done = proc.stdout.split()
        rows.append(("ssh-keyscan + impacket, one host after another (live hosts only)",
                     f"{peer:.2f}", f"{peer_cpu:.2f}", f"{len(live) / peer:.1f}", "",
                     f"{done[1] if len(done) > 1 else '?'} with SID and keys"))
        print(format_table(("run", "seconds", "CPU s (client)", "live hosts/s", "addresses/s",
                            "read"), rows))
        print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
