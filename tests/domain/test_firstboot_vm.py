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
from tests.domain.dc import DomainController
from tests.domain.master import join_root
from tests.linux.vm.qemu import clone, master_image, missing_tools, mounted_root

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
    finally:
        process.kill()
        process.wait()
        selector.close()
        process.stdout.close()
    return console.decode("utf-8", errors="replace")


def prepare_guest_network(root: Path) -> None:
    """Test scaffolding, not reseal: DHCP on the first NIC (unless the master already does
    it), and the identity probe ordered after the first-boot hook."""
    interfaces = root / "etc/network/interfaces"
    if not (interfaces.exists() and "inet dhcp" in interfaces.read_text()):
        network = root / "etc/systemd/network/90-reseal-test.network"
        network.parent.mkdir(parents=True, exist_ok=True)
        network.write_text("[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n")
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        for unit, target in (("systemd-networkd.service", wants),
                             ("systemd-networkd-wait-online.service",
                              root / "etc/systemd/system/network-online.target.wants")):
            target.mkdir(parents=True, exist_ok=True)
            link = target / unit
            if not link.exists() and not link.is_symlink():
                link.symlink_to(f"/lib/systemd/system/{unit}")
    dropin = root / "etc/systemd/system/reseal-probe.service.d/after-firstboot.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Unit]\nAfter=reseal-firstboot.service\n")


@pytest.fixture(scope="module")
def vm_master() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices, mounts and debootstrap")
    missing = missing_tools()
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (see scripts/apt-packages.txt)")
    return master_image()


def test_clone_joins_the_domain_on_its_first_boot(domain_controller: DomainController,
                                                  vm_master: Path, tmp_path: Path) -> None:
    dc = domain_controller
    master = clone(vm_master, tmp_path / "master.raw")
    with mounted_root(master, tmp_path / "mnt-master") as root:
        assert (root / "usr/bin/python3").exists(), "master image without python3: rebuild it"
        hostname = (root / "etc/hostname").read_text().strip()
        join_root(dc, root, hostname.upper())
        shutil.copy(root / "etc/krb5.keytab", tmp_path / "master.keytab")
    name = "vmclone" + os.urandom(2).hex()
    image = clone(master, tmp_path / "clone.raw")
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
    with mounted_root(image, tmp_path / "mnt-clone") as root:
        one_time = (root / "var/lib/reseal-firstboot/one-time-password").read_text()
        prepare_guest_network(root)

    since = dc.log_offset()
    console = boot_with_dc(image, dc, timeout=900)
    assert "reseal-firstboot: joined reseal.test" in console, console[-4000:]
    assert "command 2/2 exited with 1" in console
    assert "first boot complete" in console
    assert one_time not in console and dc.admin_password not in console

    with mounted_root(image, tmp_path / "mnt-after", read_only=True) as root:
        keytab = tmp_path / "clone.keytab"
        shutil.copy(root / "etc/krb5.keytab", keytab)
        assert oct((root / "etc/krb5.keytab").stat().st_mode & 0o777) == "0o600"
        assert not (root / "var/lib/reseal-firstboot/one-time-password").exists()
        assert not (root / "etc/systemd/system/multi-user.target.wants/"
                    "reseal-firstboot.service").exists()
        journal = root / "var/log/journal"
        if journal.is_dir():
            logged = subprocess.run(["journalctl", "-D", str(journal), "-u",
                                     "reseal-firstboot", "-o", "cat"], capture_output=True,
                                    text=True).stdout
            assert "joined reseal.test" in logged and one_time not in logged
    kinit = dc.kinit_keytab(keytab, f"{name.upper()}$@{dc.realm}")
    assert kinit.returncode == 0, kinit.stderr
    master_kinit = dc.kinit_keytab(tmp_path / "master.keytab", f"{hostname.upper()}$@{dc.realm}")
    assert master_kinit.returncode == 0, master_kinit.stderr
    events = [e for e in dc.password_events(since) if e["dn"].startswith(f"CN={name.upper()},")]
    assert [e["action"] for e in events] == ["Change"]
    dc.delete_computer_if_present(name)
    dc.delete_computer_if_present(hostname)
