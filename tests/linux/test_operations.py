"""Each Linux operation on directory roots laid out like each distribution family.

Results are read back with independent parsers: configparser for keyfiles/networkd, PyYAML for
netplan, ssh-keygen for key fingerprints, stat for modes and owners.
"""

from __future__ import annotations

import configparser
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from reseal.errors import BadInput, UnsafePath
from reseal.image.guestfs import GuestFS
from reseal.operations.base import IdentityRequest
from reseal.operations.linux_machine_id import MachineIdOptions
from reseal.operations.linux_net_bindings import NetBindingOptions
from reseal.operations.linux_ssh_hostkeys import SshHostKeyOptions
from reseal.pipeline.runner import RunResult, RunSettings, run_generalize
from reseal.pipeline.undo import undo_run

from .layouts import (
    BUILDERS,
    MAC,
    MASTER_HOST,
    MASTER_ID,
    NM_UUID,
    ROOT_UUID,
    SWAP_UUID,
    tree_digest,
)

LINUX_OPS = ["linux-hostname", "linux-machine-id", "linux-ssh-hostkeys", "linux-net-bindings",
             "linux-bootloader", "linux-leftovers"]


def run(root: Path, tmp_path: Path, hostname: str | None = "clone-7", only: list[str] | None = None,
        options: dict[str, object] | None = None, dry_run: bool = False, seed: int | None = 7,
        ) -> RunResult:
    settings = RunSettings(machine="clone-7",
                           request=IdentityRequest(hostname=hostname, seed=seed),
                           only=only if only is not None else LINUX_OPS, options=options or {})
    return run_generalize(root, settings, dry_run=dry_run,
                          run_dir=None if dry_run else tmp_path / "run")


def read(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text()


def ssh_fingerprint(path: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


@pytest.fixture(params=sorted(BUILDERS))
def family_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    root = tmp_path / "root"
    root.mkdir()
    BUILDERS[request.param](root)
    return request.param, root


# ----------------------------------------------------------------- every family, full run
def test_full_run_leaves_no_trace_of_the_master(family_root: tuple[str, Path],
                                                tmp_path: Path) -> None:
    family, root = family_root
    old_prints = {p.name: ssh_fingerprint(p) for p in (root / "etc/ssh").glob("*.pub")}
    result = run(root, tmp_path)
    assert result.ok, result.report.warnings
    ident = result.report.identity
    assert ident["machine-id"].old == MASTER_ID
    assert read(root, "/etc/machine-id") == ""
    assert stat.S_IMODE(os.stat(root / "etc/machine-id").st_mode) == 0o444
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    # host keys: new, root-owned, right modes, fingerprints as ssh-keygen computes them
    for name, old in old_prints.items():
        pub = root / "etc/ssh" / name
        new = ssh_fingerprint(pub)
        assert new != old
        key_type = name.split("_")[2]
        assert ident[f"ssh-host-key:{key_type}"].new == new
        private = pub.with_suffix("")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert stat.S_IMODE(pub.stat().st_mode) == 0o644
        assert private.stat().st_uid == 0 and pub.stat().st_uid == 0
        assert "root@clone-7" in pub.read_text()
    # the leftover scan found nothing
    assert not [w for w in result.report.warnings if "still holds" in w], result.report.warnings
    assert ident["hostname"].new == "clone-7"
    if family == "rhel6":
        assert "HOSTNAME=clone-7" in read(root, "/etc/sysconfig/network")
        assert not (root / "etc/hostname").exists()
    else:
        assert read(root, "/etc/hostname") == "clone-7\n"


def test_undo_puts_every_byte_back(family_root: tuple[str, Path], tmp_path: Path) -> None:
    _family, root = family_root
    dbus_id = root / "var/lib/dbus/machine-id"
    if not dbus_id.is_symlink():  # see test_undo_of_a_file_the_run_replaced_by_a_link
        dbus_id.unlink()
        os.symlink("/etc/machine-id", dbus_id)
    before = tree_digest(root)
    run(root, tmp_path)
    assert tree_digest(root) != before
    undo_run(root, tmp_path / "run/journal")
    assert tree_digest(root) == before


def test_undo_of_a_file_the_run_replaced_by_a_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    before = tree_digest(root)
    run(root, tmp_path, only=["linux-machine-id"])
    undo_run(root, tmp_path / "run/journal")
    assert tree_digest(root) == before


def test_dry_run_writes_nothing_and_runs_no_keygen(family_root: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    _family, root = family_root
    before = tree_digest(root)
    result = run(root, tmp_path, dry_run=True)
    assert tree_digest(root) == before
    assert any(c.where == "/etc/machine-id" for c in result.report.changes)
    assert any(c.new == "(new key)" for c in result.report.changes)


# ----------------------------------------------------------------- hostname per family
def test_debian_hosts_and_mailname_follow(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    run(root, tmp_path, hostname="web-01", only=["linux-hostname"])
    hosts = read(root, "/etc/hosts")
    assert "127.0.1.1\tweb-01.lab.example web-01\n" in hosts and MASTER_HOST not in hosts
    assert "::1 localhost ip6-localhost" in hosts and "# IPv6" in hosts
    assert read(root, "/etc/mailname") == "web-01.lab.example\n"


def test_fqdn_goes_first_with_short_alias(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["rhel6"](root)
    run(root, tmp_path, hostname="db-2.corp.example", only=["linux-hostname"])
    assert "10.0.0.5\tdb-2.corp.example db-2\n" in read(root, "/etc/hosts")
    assert "HOSTNAME=db-2.corp.example" in read(root, "/etc/sysconfig/network")


def test_suse_hostname_link_is_kept_a_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["suse"](root)
    result = run(root, tmp_path, hostname="leap-3", only=["linux-hostname"])
    assert os.readlink(root / "etc/HOSTNAME") == "hostname"
    assert read(root, "/etc/hostname") == "leap-3\n"
    assert [c.where for c in result.report.changes].count("/etc/HOSTNAME") == 0


def test_no_hostname_requested_leaves_it_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["arch"](root)
    before = read(root, "/etc/hostname")
    result = run(root, tmp_path, hostname=None, only=["linux-hostname"])
    assert read(root, "/etc/hostname") == before
    assert any("no hostname requested" in n for n in result.report.notes)


# ----------------------------------------------------------------- bad input: nothing written
@pytest.mark.parametrize("name, rule", [
    ("bad_name", "RFC 1123"), ("-lead", "RFC 1123"), ("a" * 64, "63"), ("x." * 40 + "y", "64"),
    ("two..dots", "empty label"), ("", "empty"), ("trailing.", "trailing dot"),
])
def test_bad_hostname_is_refused_before_anything_is_written(name: str, rule: str,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    before = tree_digest(root)
    with pytest.raises(BadInput, match=rule):
        run(root, tmp_path, hostname=name)
    assert tree_digest(root) == before
    assert not (tmp_path / "run").exists()


def test_hostname_link_out_of_the_root_is_refused_and_nothing_written(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    (root / "etc/hostname").unlink()
    os.symlink("/etc/../../../../etc/passwd", root / "etc/hostname")
    before = tree_digest(root)
    host_passwd = Path("/etc/passwd").read_bytes()
    with pytest.raises(UnsafePath, match="leaves the image root"):
        run(root, tmp_path)
    assert tree_digest(root) == before
    assert Path("/etc/passwd").read_bytes() == host_passwd


def test_relative_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["fedora"](root)
    os.symlink("../../../../../tmp/evil.nmconnection",
               root / "etc/NetworkManager/system-connections/evil.nmconnection")
    before = tree_digest(root)
    with pytest.raises(UnsafePath):
        run(root, tmp_path)
    assert tree_digest(root) == before


def test_bad_machine_id_and_mac_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    before = tree_digest(root)
    settings = RunSettings(request=IdentityRequest(machine_id="XYZ"), only=LINUX_OPS)
    with pytest.raises(BadInput, match="32 lower-case"):
        run_generalize(root, settings, run_dir=tmp_path / "r1")
    with pytest.raises(BadInput, match="MAC address"):
        run(root, tmp_path, options={"linux-net-bindings": NetBindingOptions(new_mac="zz")})
    assert tree_digest(root) == before


# ----------------------------------------------------------------- machine-id
def test_machine_id_written_offline_is_valid_and_seeded(tmp_path: Path) -> None:
    ids = []
    for n in range(2):
        root = tmp_path / f"root{n}"
        BUILDERS["debian"](root)
        run(root, tmp_path / f"r{n}", only=["linux-machine-id"], seed=n,
            options={"linux-machine-id": MachineIdOptions(write_new=True)})
        value = read(root, "/etc/machine-id").strip()
        assert len(value) == 32 and value[12] == "4" and value != MASTER_ID
        ids.append(value)
    assert ids[0] != ids[1]


def test_requested_machine_id_is_used(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["fedora"](root)
    wanted = "a" * 31 + "b"
    settings = RunSettings(request=IdentityRequest(machine_id=wanted), only=["linux-machine-id"])
    run_generalize(root, settings, run_dir=tmp_path / "run")
    assert read(root, "/etc/machine-id") == wanted + "\n"
    # read through the link as the guest resolves it (the host path would reach the host's id)
    assert GuestFS(root).read_text("/var/lib/dbus/machine-id") == wanted + "\n"


# ----------------------------------------------------------------- ssh keys
def test_ssh_remove_mode_warns_on_debian_not_fedora(tmp_path: Path) -> None:
    warnings = {}
    for family in ("debian", "fedora"):
        root = tmp_path / family
        BUILDERS[family](root)
        result = run(root, tmp_path / f"r-{family}", only=["linux-ssh-hostkeys"],
                     options={"linux-ssh-hostkeys": SshHostKeyOptions(mode="remove")})
        assert not list((root / "etc/ssh").glob("ssh_host_*"))
        warnings[family] = result.report.warnings
    assert any("ssh-keygen -A" in w for w in warnings["debian"])
    assert not warnings["fedora"]


def test_ssh_key_owner_is_root_even_when_the_old_key_was_not(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    os.chown(root / "etc/ssh/ssh_host_ed25519_key", 1234, 1234)
    run(root, tmp_path, only=["linux-ssh-hostkeys"])
    assert (root / "etc/ssh/ssh_host_ed25519_key").stat().st_uid == 0


# ----------------------------------------------------------------- network bindings
def test_networkmanager_keyfile_new_uuid_no_mac_and_secret_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["fedora"](root)
    result = run(root, tmp_path, only=["linux-net-bindings"])
    path = root / "etc/NetworkManager/system-connections/eth0.nmconnection"
    keyfile = configparser.ConfigParser(interpolation=None)
    keyfile.read_string(path.read_text())
    assert keyfile["connection"]["uuid"] != NM_UUID
    assert "mac-address" not in keyfile["ethernet"]
    assert "cloned-mac-address" not in keyfile["ethernet"]
    assert keyfile["wifi-security"]["psk"] == "s3cret-psk"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" not in repr(result.report.changes) + repr(result.report.warnings)
    ifcfg = read(root, "/etc/sysconfig/network-scripts/ifcfg-eth0")
    assert "HWADDR" not in ifcfg and NM_UUID not in ifcfg and "DEVICE=eth0" in ifcfg


def test_new_mac_moves_the_bindings(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["ubuntu"](root)
    run(root, tmp_path, only=["linux-net-bindings"],
        options={"linux-net-bindings": NetBindingOptions(new_mac="52:54:00:00:00:99")})
    plan = yaml.safe_load(read(root, "/etc/netplan/50-cloud-init.yaml"))
    assert plan["network"]["ethernets"]["lan"]["match"] == {"macaddress": "52:54:00:00:00:99"}
    assert "macaddress" not in plan["network"]["ethernets"]["spoofed"]
    keyfile = configparser.ConfigParser(interpolation=None)
    keyfile.read_string(read(root, "/etc/NetworkManager/system-connections/Wired.nmconnection"))
    assert keyfile["ethernet"]["mac-address"] == "52:54:00:00:00:99"
    assert keyfile["ethernet"]["cloned-mac-address"] == "stable"  # a policy, not an address
    assert not (root / "var/lib/NetworkManager/secret_key").exists()
    assert not (root / "var/lib/NetworkManager/internal-x-eth0.lease").exists()


def test_netplan_match_without_new_mac_becomes_a_name_match(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["ubuntu"](root)
    result = run(root, tmp_path, only=["linux-net-bindings"])
    text = read(root, "/etc/netplan/50-cloud-init.yaml")
    plan = yaml.safe_load(text)
    assert plan["network"]["ethernets"]["lan"]["match"] == {"name": "e*"}
    assert plan["network"]["ethernets"]["lan"]["set-name"] == "lan"
    assert MAC not in text.lower()
    assert any("fixed MAC" in w for w in result.report.warnings)
    assert stat.S_IMODE((root / "etc/netplan/50-cloud-init.yaml").stat().st_mode) == 0o600


def test_networkd_udev_and_leases(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    result = run(root, tmp_path, only=["linux-net-bindings"])
    # the name eth0 is kept for the first Ethernet device, without the master's MAC
    rules = read(root, "/etc/udev/rules.d/70-persistent-net.rules")
    assert MAC not in rules.lower()
    (rule,) = [line for line in rules.splitlines() if line and not line.startswith("#")]
    assert 'KERNEL=="eth0"' in rule and 'NAME="eth0"' in rule and 'ATTR{type}=="1"' in rule
    assert not (root / "var/lib/dhcp/dhclient.eth0.leases").exists()
    link = configparser.ConfigParser(interpolation=None)
    link.optionxform = str  # type: ignore[assignment,method-assign]
    link.read_string(read(root, "/etc/systemd/network/10-lan.link"))
    assert dict(link["Match"]) == {"OriginalName": "e*"} and link["Link"]["Name"] == "lan0"
    network = configparser.ConfigParser(interpolation=None)
    network.optionxform = str  # type: ignore[assignment,method-assign]
    network.read_string(read(root, "/etc/systemd/network/20-lan.network"))
    assert dict(network["Match"]) == {"Name": "e*"}
    assert result.report.identity["mac:1"].old == MAC


def test_arch_networkd_permanent_mac_and_duid(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["arch"](root)
    run(root, tmp_path, only=["linux-net-bindings"])
    text = read(root, "/etc/systemd/network/20-wired.network")
    assert "PermanentMACAddress" not in text and "DUIDRawData" not in text and "Name=e*" in text


def test_suse_ifcfg_lladdr_dropped_loopback_untouched(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["suse"](root)
    before = read(root, "/etc/sysconfig/network/ifcfg-lo")
    run(root, tmp_path, only=["linux-net-bindings"])
    assert "LLADDR" not in read(root, "/etc/sysconfig/network/ifcfg-eth0")
    assert read(root, "/etc/sysconfig/network/ifcfg-lo") == before


# ----------------------------------------------------------------- boot loader (directory)
def test_bootloader_directory_uses_fstab_root_for_root_param(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    (root / "etc/fstab").write_text(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
                                    f"UUID={SWAP_UUID} none swap sw 0 0\n")
    result = run(root, tmp_path, only=["linux-bootloader"])
    cfg = read(root, "/boot/grub/grub.cfg")
    assert f"root=UUID={ROOT_UUID} ro" in cfg and "/dev/sda" not in cfg
    default = read(root, "/etc/default/grub")
    assert f'"root=UUID={ROOT_UUID} resume=UUID={SWAP_UUID} quiet"' in default
    assert not result.report.warnings


def test_bootloader_unknown_device_is_warned_not_guessed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)  # fstab swap is /dev/sda3: reseal cannot know its UUID here
    result = run(root, tmp_path, only=["linux-bootloader"])
    assert "/dev/sda3 none swap" in read(root, "/etc/fstab")
    assert any("/dev/sda3 still names a partition" in w for w in result.report.warnings)


def test_legacy_grub_and_systemd_boot_entries(tmp_path: Path) -> None:
    for family, path in (("rhel6", "/boot/grub/grub.conf"), ("arch", "/boot/loader/entries/arch.conf"),
                         ("fedora", "/boot/grub2/grub.cfg")):
        root = tmp_path / family
        BUILDERS[family](root)
        run(root, tmp_path / f"r-{family}", only=["linux-bootloader"])
        assert f"root=UUID={ROOT_UUID}" in read(root, path), family


def test_lilo_root_rewritten_and_rerun_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    (root / "etc/lilo.conf").write_text(
        "boot=/dev/sda\nroot=/dev/sda2\nmap=/boot/map\nimage=/boot/vmlinuz\n\tlabel=linux\n"
        '\tinitrd=/boot/initrd.img\n\tappend="root=/dev/sda2 quiet"\n\tread-only\n')
    (root / "boot/map").write_bytes(b"\0" * 4096)  # `lilo` ran once: its map is there
    result = run(root, tmp_path, only=["linux-bootloader"])
    text = read(root, "/etc/lilo.conf")
    assert f'root="UUID={ROOT_UUID}"' in text and f'append="root=UUID={ROOT_UUID} quiet"' in text
    assert "boot=/dev/sda\n" in text
    assert any("LILO must be re-installed" in w for w in result.report.warnings)


def test_fs_uuids_on_a_directory_says_it_cannot(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    before = tree_digest(root)
    result = run(root, tmp_path, only=["linux-fs-uuids"])
    assert any("only be changed on an opened disk image" in w for w in result.report.warnings)
    assert tree_digest(root) == before


def test_rsa_key_requested_is_generated_with_its_size(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["arch"](root)
    run(root, tmp_path, only=["linux-ssh-hostkeys"],
        options={"linux-ssh-hostkeys": SshHostKeyOptions(types=["rsa", "ed25519"])})
    out = subprocess.run(["ssh-keygen", "-lf", str(root / "etc/ssh/ssh_host_rsa_key.pub")],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("3072 ") and out.rstrip().endswith("(RSA)")


def test_lilo_never_installed_and_disk_sections_give_no_false_warnings(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    (root / "etc/lilo.conf").write_text(
        "boot=/dev/sda\ndisk=/dev/sda\n\tbios=0x80\n\tpartition=/dev/sda1\n\t\tstart=2048\n"
        "image=/boot/vmlinuz\n\tlabel=linux\n\tinitrd=/boot/initrd.img\n"
        f'\troot="UUID={ROOT_UUID}"\n\tread-only\n')
    result = run(root, tmp_path, only=["linux-bootloader"])
    lilo_warnings = [w for w in result.report.warnings if "lilo" in w.lower()]
    assert lilo_warnings == [], lilo_warnings
    assert any("`lilo` never ran here" in n for n in result.report.notes)


def test_grub_menu_entry_ids_follow_the_new_uuid() -> None:
    from reseal.linux.bootrefs import rewrite_text

    new = "0d9c3b2a-1f4e-4d5c-8b7a-6f5e4d3c2b1a"
    cfg = (f"menuentry 'Debian' --class debian $menuentry_id_option 'gnulinux-simple-{ROOT_UUID}' {{\n"
           f"\tlinux /vmlinuz root=UUID={ROOT_UUID} ro\n\tinitrd /initrd.img\n}}\n"
           f"submenu 'Advanced' $menuentry_id_option 'gnulinux-advanced-{ROOT_UUID}' {{\n"
           f"  menuentry 'x' $menuentry_id_option 'gnulinux-6.1.0-advanced-{ROOT_UUID}' {{\n"
           f"  }}\n}}\n")
    text, _ = rewrite_text(cfg, "grub", {ROOT_UUID: new}, {}, None, None)
    assert ROOT_UUID not in text
    assert f"'gnulinux-simple-{new}'" in text and f"gnulinux-6.1.0-advanced-{new}'" in text


def test_kernel_only_entries_get_partuuid_not_uuid() -> None:
    from reseal.linux.bootrefs import rewrite_text

    devices = {"/dev/sda2": f"UUID={ROOT_UUID}"}
    parts = {"/dev/sda2": "PARTUUID=1a2b3c4d-02"}
    legacy = ("default=0\ntitle kernel-only\n\tkernel /vmlinuz root=/dev/sda2 ro\n"
              "title with-initrd\n\tkernel /vmlinuz root=/dev/sda2 ro\n\tinitrd /initrd.img\n")
    text, _ = rewrite_text(legacy, "legacy", {}, devices, f"UUID={ROOT_UUID}", None,
                           partuuid_map=parts)
    first, second = text.split("title with-initrd")
    assert "root=PARTUUID=1a2b3c4d-02" in first and "root=UUID=" not in first
    assert f"root=UUID={ROOT_UUID}" in second
    grub = ("menuentry 'a' {\n\tlinux /vmlinuz root=/dev/sda2\n}\n"
            "menuentry 'b' {\n\tlinux /vmlinuz root=/dev/sda2\n\tinitrd /initrd.img\n}\n")
    text, _ = rewrite_text(grub, "grub", {}, devices, None, None, partuuid_map=parts)
    assert text.count("root=PARTUUID=1a2b3c4d-02") == 1 and text.count("root=UUID=") == 1
    lilo = ("boot=/dev/sda\nroot=/dev/sda2\nappend=\"quiet\"\nimage=/boot/vmlinuz\n\tlabel=a\n"
            "\tread-only\nimage=/boot/vmlinuz-2\n\tlabel=b\n\tinitrd=/boot/initrd.img\n")
    text, _ = rewrite_text(lilo, "lilo", {}, devices, f"UUID={ROOT_UUID}", None,
                           partuuid_map=parts)
    section_a = text.split("image=/boot/vmlinuz\n")[1].split("image=")[0]
    assert 'append="root=PARTUUID=1a2b3c4d-02 quiet"' in section_a
    assert f'root="UUID={ROOT_UUID}"' in text.split("image=")[0]  # global root, for b
    # without a partition map (a directory target) a kernel-only entry is left as it was
    text, _ = rewrite_text(legacy, "legacy", {}, devices, f"UUID={ROOT_UUID}", None)
    assert "kernel /vmlinuz root=/dev/sda2 ro\ntitle" in text


def test_networkmanager_dhcp_hostname_and_timestamps(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["ubuntu"](root)
    path = root / "etc/NetworkManager/system-connections/Wired.nmconnection"
    path.write_text(path.read_text() + "dhcp-hostname=master\n\n[ipv6]\ndhcp-hostname=other\n")
    (root / "var/lib/NetworkManager/timestamps").write_text(f"[timestamps]\n{NM_UUID}=1700000000\n")
    result = run(root, tmp_path, hostname="clone-9")
    text = path.read_text()
    assert "dhcp-hostname=clone-9" in text and "dhcp-hostname=other" in text
    assert not (root / "var/lib/NetworkManager/timestamps").exists()
    assert not [w for w in result.report.warnings if "still holds" in w], result.report.warnings


def test_random_seed_replaced_and_never_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    seed = root / "var/lib/systemd/random-seed"
    seed.parent.mkdir(parents=True)
    old = os.urandom(512)
    seed.write_bytes(old)
    result = run(root, tmp_path, only=["linux-random-seed"])
    new = seed.read_bytes()
    assert len(new) == 512 and new != old
    assert stat.S_IMODE(seed.stat().st_mode) == 0o600
    report = json.dumps([vars(c) for c in result.report.changes])
    assert old.hex()[:16] not in report and new.hex()[:16] not in report
    undo_run(root, tmp_path / "run/journal")
    assert seed.read_bytes() == old
