"""A real boot: a domain-joined Debian master, a clone generalized with a `domain:` answer file,
booted under QEMU (TCG); its first boot joins the test DC under the clone's own name.

The master image is the Linux boot test's (tests/linux/vm), joined for real here (Samba `net ads
join`). The booted clone reaches the DC through QEMU user networking: a guestfwd rule sends its
connections to 10.0.2.100:636 to the DC's LDAPS port on the host's free 127.0.0.x address.
Oracles on the host afterwards: kinit with the clone's keytab, kinit with the master's keytab,
the DC's audit log (a password Change by the clone), the DC's database, the clone's journal.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.domain import guestdisk
from tests.domain.dc import DomainController
from tests.domain.master import join_root
from tests.linux.vm.qemu import clone
from tests.linux.vm.test_boot import master  # noqa: F401  (the cached master image, a fixture)

pytestmark = pytest.mark.slow
GUEST_DC = "10.0.2.100"
FORWARDER = Path(__file__).with_name("tcpfwd.py")
PASSWORD_ENV = "RESEAL_TEST_JOIN_PASSWORD"
DONE = "RESEAL-PROBE done"


def boot_with_dc(image: Path, dc: DomainController, timeout: float) -> str:
    """Boot `image` with user networking whose 10.0.2.100:636 is the DC; the serial console."""
    forward = f"tcp:{GUEST_DC}:636-cmd:{sys.executable} {FORWARDER} {dc.address} 636"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "768", "-smp", "1", "-no-reboot",
            "-display", "none", "-monitor", "none", "-serial", "stdio",
            "-netdev", f"user,id=lan,restrict=on,guestfwd={forward}",
            "-device", "virtio-net-pci,netdev=lan,mac=52:54:00:d0:0a:01",
            "-drive", f"file={image},format=raw,if=virtio"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    console = b""
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout and DONE.encode() not in console:
            if not selector.select(timeout=1.0):
                if process.poll() is not None:
                    break
                continue
            data = process.stdout.read() or b""
            if not data and process.poll() is not None:
                break
            console += data
        # the probe powers the guest off: wait for that (bounded), so the file system is
        # clean and what the first boot wrote is in place for debugfs to read
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if selector.select(timeout=1.0):
                console += process.stdout.read() or b""
    finally:
        process.kill()
        process.wait()
        selector.close()
        process.stdout.close()
    return console.decode("utf-8", errors="replace")


def guest_network_tree(image: Path, tree: Path) -> Path:
    """Test scaffolding, not reseal: DHCP on the first NIC with systemd-networkd (unless the
    master already configures one), and the identity probe ordered after the first-boot hook."""
    interfaces = guestdisk.read_file(image, "/etc/network/interfaces") or b""
    if b"inet dhcp" not in interfaces:
        network = tree / "etc/systemd/network/90-reseal-test.network"
        network.parent.mkdir(parents=True, exist_ok=True)
        network.write_text("[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n")
        for unit, target in (("systemd-networkd.service", "multi-user.target.wants"),
                             ("systemd-networkd-wait-online.service",
                              "network-online.target.wants")):
            wants = tree / "etc/systemd/system" / target
            wants.mkdir(parents=True, exist_ok=True)
            (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    dropin = tree / "etc/systemd/system/reseal-probe.service.d/after-firstboot.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Unit]\nAfter=reseal-firstboot.service\n")
    return tree


def test_clone_joins_the_domain_on_its_first_boot(domain_controller: DomainController,
                                                  master: Path,  # noqa: F811
                                                  tmp_path: Path) -> None:
    dc = domain_controller
    joined = clone(master, tmp_path / "master.raw")
    hostname = (guestdisk.read_file(joined, "/etc/hostname") or b"").decode().strip()
    assert guestdisk.exists(joined, "/usr/bin/python3"), "master without python3: rebuild it"
    join_root(dc, tmp_path / "join", hostname.upper())  # a real join, its files then copied in
    guestdisk.put_tree(joined, tmp_path / "join")
    shutil.copy(tmp_path / "join/etc/krb5.keytab", tmp_path / "master.keytab")
    name = "vmclone" + os.urandom(2).hex()
    image = clone(joined, tmp_path / "clone.raw")
    answer = tmp_path / "clone.yaml"
    answer.write_text(json.dumps({
        "version": 1, "os": "linux", "machines": [{"hostname": name}],
        "defaults": {"domain": {
            "name": dc.dns_name, "account": dc.admin_account, "password_env": PASSWORD_ENV,
            "controller": dc.fqdn, "address": dc.address, "firstboot_address": GUEST_DC,
            "ca_file": str(dc.ca_file)},
            "firstboot": {"commands": ["echo hello from the first boot", "false"]}}}))
    env = {**os.environ, PASSWORD_ENV: dc.admin_password,
           "RESEAL_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-m", "reseal", "generalize", str(image),
                             "--answer-file", str(answer)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dc.computer(name) is not None  # pre-staged
    one_time = (guestdisk.read_file(image, "/var/lib/reseal-firstboot/one-time-password")
                or b"").decode()
    assert len(one_time) == 120
    assert guestdisk.mode_of(image, "/var/lib/reseal-firstboot/one-time-password") == 0o600
    assert not guestdisk.exists(image, "/etc/krb5.keytab")  # the master's left with it
    guestdisk.put_tree(image, guest_network_tree(image, tmp_path / "net"))

    since = dc.log_offset()
    console = boot_with_dc(image, dc, timeout=900)
    (tmp_path / "console.txt").write_text(console)
    print(*[line for line in console.splitlines() if "reseal-firstboot:" in line], sep="\n")
    assert "reseal-firstboot: joined reseal.test" in console, console[-4000:]
    assert "command 2/2 exited with 1" in console
    assert "first boot complete" in console
    assert one_time not in console and dc.admin_password not in console

    keytab = tmp_path / "clone.keytab"
    keytab.write_bytes(guestdisk.read_file(image, "/etc/krb5.keytab") or b"")
    assert guestdisk.mode_of(image, "/etc/krb5.keytab") == 0o600
    assert not guestdisk.exists(image, "/var/lib/reseal-firstboot/one-time-password")
    assert not guestdisk.exists(
        image, "/etc/systemd/system/multi-user.target.wants/reseal-firstboot.service")
    journal = guestdisk.dump_tree(image, "/var/log/journal", tmp_path / "journal")
    if journal is not None:
        logged = subprocess.run(["journalctl", "-D", str(journal), "-u", "reseal-firstboot",
                                 "-o", "cat"], capture_output=True, text=True).stdout
        assert "joined reseal.test" in logged and one_time not in logged
    kinit = dc.kinit_keytab(keytab, f"{name.upper()}$@{dc.realm}")
    assert kinit.returncode == 0, kinit.stderr
    master_kinit = dc.kinit_keytab(tmp_path / "master.keytab", f"{hostname.upper()}$@{dc.realm}")
    assert master_kinit.returncode == 0, master_kinit.stderr
    events = [e for e in dc.password_events(since) if e["dn"].startswith(f"CN={name.upper()},")]
    assert [e["action"] for e in events] == ["Change"]
    dc.delete_computer_if_present(name)
    dc.delete_computer_if_present(hostname)
