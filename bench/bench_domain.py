"""Domain join timings against a local Samba AD DC (started and stopped by this script).

Measured, per clone (median of N):
- pre-stage: the host side of `linux-domain-join` in firstboot mode, i.e. `run_generalize` with
  only that operation on a directory tree (bind over LDAPS, checks, account created with the
  one-time password, hook and zipapp written into the tree);
- first-boot join: the program the clone runs (`reseal-firstboot.pyz`, by the host's python3
  as the guest's would run it: interpreter start, zipapp import, bind as NAME$, password change,
  SPNs, kvno, keytab written), and the join step alone, in process;
- the peer: `adcli preset-computer --one-time-password` for the same work as the pre-stage
  (adcli logs in with Kerberos and creates the account over SASL-sealed LDAP).

Usage: .venv/bin/python bench/bench_domain.py [--clones 5]   (root: it starts a Samba DC)
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

from tests.domain.dc import start_domain_controller  # noqa: E402
from tests.domain.master import fake_linux_root  # noqa: E402

from reseal.domain import firstboot  # noqa: E402
from reseal.domain.settings import DomainSettings, PasswordRef  # noqa: E402
from reseal.operations.base import IdentityRequest  # noqa: E402
from reseal.pipeline.runner import RunSettings, run_generalize  # noqa: E402

PASSWORD_ENV = "RESEAL_BENCH_JOIN_PASSWORD"


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.0f} ms (min {min(values) * 1000:.0f}, " \
           f"max {max(values) * 1000:.0f})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clones", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reseal-bench-domain-") as tmp, \
            start_domain_controller(Path(tmp) / "dc") as dc:
        os.environ[PASSWORD_ENV] = dc.admin_password
        domain = DomainSettings(name=dc.dns_name, account=dc.admin_account,
                                password=PasswordRef(env=PASSWORD_ENV), controller=dc.fqdn,
                                address=dc.address, firstboot_address=dc.address,
                                ca_file=dc.ca_file)
        prestage, joins, join_steps, adcli = [], [], [], []
        for index in range(args.clones):
            name = f"bench{index:02d}{os.getpid() % 1000:03d}"
            root = fake_linux_root(Path(tmp) / name, "master")
            settings = RunSettings(machine=name, only=["linux-domain-join"],
                                   request=IdentityRequest(hostname=name, domain=domain))
            started = time.perf_counter()
            result = run_generalize(root, settings, run_dir=Path(tmp) / f"run-{name}")
            prestage.append(time.perf_counter() - started)
            assert result.ok
            started = time.perf_counter()
            program = subprocess.run(["python3", str(root / "usr/local/lib/reseal/"
                                                      "reseal-firstboot.pyz"),
                                      "--root", str(root)], capture_output=True, text=True)
            joins.append(time.perf_counter() - started)
            assert program.returncode == 0, program.stdout
            assert dc.kinit_keytab(root / "etc/krb5.keytab",
                                   f"{name.upper()}$@{dc.realm}").returncode == 0
            # the join step alone, in process (a second pre-staged clone)
            again = fake_linux_root(Path(tmp) / (name + "b"), "master")
            settings.request = IdentityRequest(hostname=name + "b", domain=domain)
            assert run_generalize(again, settings, run_dir=Path(tmp) / f"run-{name}b").ok
            config = firstboot.json.loads((again / "etc/reseal/firstboot.json").read_text())
            started = time.perf_counter()
            firstboot.join(config, firstboot.Paths(str(again)))
            join_steps.append(time.perf_counter() - started)
            if shutil.which("adcli"):
                started = time.perf_counter()
                peer = subprocess.run(
                    ["adcli", "preset-computer", f"--domain={dc.dns_name}",
                     f"--domain-controller={dc.address}", "--login-user=Administrator",
                     "--stdin-password", "--one-time-password=Bench-otp-1",
                     f"peer{index:02d}{os.getpid() % 1000:03d}"],
                    input=dc.admin_password, capture_output=True, text=True,
                    env={**os.environ, "KRB5_CONFIG": str(dc.krb5_conf)})
                adcli.append(time.perf_counter() - started)
                if peer.returncode != 0:
                    print(f"adcli preset-computer failed: {peer.stderr.strip()[:200]}")
                    adcli = []
        print(f"clones: {args.clones}, DC: Samba {dc.address} (LDAPS, 4096-bit RSA key)")
        print(f"pre-stage (run_generalize, linux-domain-join)   {median_ms(prestage)}")
        print(f"first-boot join (python3 reseal-firstboot.pyz) {median_ms(joins)}")
        print(f"first-boot join step in process                 {median_ms(join_steps)}")
        if adcli:
            print(f"adcli preset-computer --one-time-password     {median_ms(adcli)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
