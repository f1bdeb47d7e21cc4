"""Windows offline domain join timings against a local Samba AD DC (started and stopped here).

Measured, per clone (median of N), on a Windows directory target built from a real domain
member of ../shared (Win10 Belkasoft SAM/SECURITY/DEFAULT, the dissect Windows 10 SYSTEM, a
project-built SOFTWARE; built fresh for every clone, not timed):
- reseal: `run_generalize` with only `windows-domain-join`: bind over LDAPS with the DC
  certificate checked, the refusal checks, the LDAP ping, the account created with its
  password, `$MACHINE.ACC` and the policy, SYSTEM, SAM and SOFTWARE values written, and the
  four hives committed (scrubbed, written atomically, journaled);
- the peer: Samba's `net offlinejoin provision` (the `djoin /provision` of Samba 4.15+: the
  account is created and the ODJ blob saved to a file); it writes no image, so it covers
  the DC half only (djoin /requestodj needs Windows).
Each reseal clone's password is then checked on the DC (kinit with a keytab derived from
the password impacket reads out of the image), outside the timing.

Usage: .venv/bin/python bench/bench_windows_join.py [--clones 5]   (root: it starts a DC)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.domain.dc import DomainController, start_domain_controller  # noqa: E402
from tests.windows.domain_helpers import build_member_tree  # noqa: E402
from tests.windows.helpers import CONFIG  # noqa: E402
from tests.windows.lsa_helpers import impacket_dump  # noqa: E402

from reseal.domain import keytab, krbkeys  # noqa: E402
from reseal.domain.settings import DomainSettings, PasswordRef  # noqa: E402
from reseal.operations.base import IdentityRequest  # noqa: E402
from reseal.pipeline.runner import RunSettings, run_generalize  # noqa: E402

PASSWORD_ENV = "RESEAL_BENCH_JOIN_PASSWORD"
SHARED = REPO.parent / "shared" / "fixtures"


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:6.0f} ms (min {min(values) * 1000:.0f}, " \
           f"max {max(values) * 1000:.0f})"


def check_password(dc: DomainController, root: Path, name: str, work: Path) -> None:
    hexes = {line.rsplit(":", 1)[1] for line in impacket_dump(root / CONFIG)
             if ":plain_password_hex:" in line}
    password = bytes.fromhex(hexes.pop()).decode("utf-16-le")
    keys = krbkeys.derive_keys(password, krbkeys.computer_salt(dc.realm, name),
                               krbkeys.enctypes_for(krbkeys.AES_ONLY))
    path = work / f"{name}.keytab"
    path.write_bytes(keytab.serialize_keytab(keytab.machine_entries(
        dc.realm, name, f"{name.lower()}.{dc.dns_name}", 1, keys)))
    result = dc.kinit_keytab(path, f"{name}$@{dc.realm}")
    assert result.returncode == 0, result.stderr


def peer_provision(dc: DomainController, work: Path, name: str) -> float:
    """`net offlinejoin provision` in a namespace whose /etc/hosts names the DC."""
    for sub in ("lock", "log", "private"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    conf = work / "smb.conf"
    conf.write_text(f"[global]\n\tworkgroup = {dc.netbios}\n\trealm = {dc.realm}\n"
                    f"\tsecurity = ads\n\tnetbios name = IMAGING\n\tprivate dir = {work}/private\n"
                    f"\tstate directory = {work}\n\tcache directory = {work}\n"
                    f"\tlock directory = {work}/lock\n\tlog file = {work}/log/net.log\n")
    auth = dc.admin_auth_file(work)
    provision = (f"net offlinejoin provision domain={dc.dns_name} machine_name={name} "
                 f"dcname={dc.fqdn} savefile='{work}/{name}.odj' -A '{auth}' -s '{conf}'")
    # the namespace set-up is timed apart: only the provision counts
    result = dc.run_as_client(work, f"s=$(date +%s%N) && {provision} >/dev/null && "
                                    "e=$(date +%s%N) && echo $((e - s))")
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stdout.strip().splitlines()[-1]) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clones", type=int, default=5)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"{SHARED}: the real hives are needed (../shared/fixtures)")
        return 2
    with tempfile.TemporaryDirectory(prefix="reseal-bench-winjoin-") as tmp, \
            start_domain_controller(Path(tmp) / "dc") as dc:
        os.environ[PASSWORD_ENV] = dc.admin_password
        os.environ["RESEAL_STATE_DIR"] = str(Path(tmp) / "state")
        domain = DomainSettings(name=dc.dns_name, account=dc.admin_account,
                                password=PasswordRef(env=PASSWORD_ENV), controller=dc.fqdn,
                                address=dc.address, ca_file=dc.ca_file)
        ours: list[float] = []
        peer: list[float] = []
        peer_provision(dc, Path(tmp) / "warm-peer", f"WARM{os.getpid() % 10000}")
        for index in range(args.clones + 1):  # the first round warms caches, not counted
            name = f"BW{index:02d}{os.getpid() % 100000:05d}"
            root = build_member_tree(SHARED, Path(tmp) / name / "root", "belkasoft").root
            settings = RunSettings(machine=name, only=["windows-domain-join"],
                                   request=IdentityRequest(hostname=name, domain=domain))
            subprocess.run(["sync"], check=True)
            started = time.perf_counter()
            result = run_generalize(root, settings, run_dir=Path(tmp) / name / "run")
            elapsed = time.perf_counter() - started
            assert result.ok
            check_password(dc, root, name, Path(tmp) / name)
            peer_time = peer_provision(dc, Path(tmp) / name / "peer", f"P{name}")
            if index:
                ours.append(elapsed)
                peer.append(peer_time)
            shutil.rmtree(Path(tmp) / name)
        load = os.getloadavg()[0]
        print(f"Windows offline join, {args.clones} clones, load average {load:.1f}")
        print(f"  reseal windows-domain-join (LDAP + hive writes + commit): {median_ms(ours)}")
        print(f"  net offlinejoin provision (account + blob, no image):     {median_ms(peer)}")
        print("  every reseal clone's password authenticated (kinit -k)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
