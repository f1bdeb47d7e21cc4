"""The identity kinds the audit knows: how bad a shared value is, and what removes it.

Severity follows what breaks when two machines share the value:
- high: authentication and trust break or can be subverted (one machine SID: local accounts and
  ACLs of one machine are valid on the other; one SSH host key: users cannot tell the machines
  apart, one stolen key impersonates all), or the network breaks (one NetBIOS name, one MAC,
  one address);
- medium: management and inventory merge machines (machine-id, DHCP DUID, MachineGuid,
  SusClientId: one DHCP lease, one WSUS client, one journal id for several machines);
- low: disk identifiers (file-system UUIDs, GPT GUIDs, MBR signatures) that only matter when
  two such disks meet on one host (Windows takes the second disk offline; Linux mounts by UUID
  pick either one);
- info: signals known not to identify a machine (Samba derives its SMB ServerGuid from the
  NetBIOS name; Samba's NBNS answer carries no MAC). Shown, never scored.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITY_ORDER = {"high": 3, "medium": 2, "low": 1, "info": 0}


@dataclass(frozen=True)
class Kind:
    name: str
    title: str
    severity: str
    why: str
    fix: str
    operations: tuple[str, ...] = ()
    scored: bool = True


def _kind(name: str, title: str, severity: str, why: str, fix: str,
          operations: tuple[str, ...] = (), scored: bool = True) -> tuple[str, Kind]:
    return name, Kind(name, title, severity, why, fix, operations, scored)


KINDS: dict[str, Kind] = dict([
    _kind("machine-sid", "machine SID", "high",
          "local accounts, groups and file ACLs of one machine are valid on the other; "
          "a domain cannot tell the machines' local identities apart",
          "give each Windows machine a new SID offline",
          ("windows-machine-sid", "windows-file-acls")),
    _kind("ssh-host-key", "SSH host key", "high",
          "clients cannot tell the machines apart, and the private key of one "
          "impersonates every other",
          "make new SSH host keys on each machine",
          ("linux-ssh-hostkeys",)),
    _kind("netbios-name", "NetBIOS name", "high",
          "name registration conflicts; SMB, printing and domain logons reach the wrong machine",
          "give each machine its own name (Windows computer name; on Linux the host name "
          "Samba takes its NetBIOS name from)",
          ("windows-computer-name", "linux-hostname")),
    _kind("dns-name", "DNS host name", "high",
          "forward and reverse lookups, Kerberos service names and certificates match "
          "either machine",
          "give each machine its own host name",
          ("windows-computer-name", "linux-hostname")),
    _kind("computer-name", "Windows computer name", "high",
          "NetBIOS name conflict and one computer account for several machines once deployed",
          "give each clone its own computer name",
          ("windows-computer-name",)),
    _kind("hostname", "host name", "medium",
          "DHCP-registered DNS names, logs and monitoring merge the machines once deployed",
          "give each clone its own host name",
          ("linux-hostname",)),
    _kind("mac", "MAC address", "high",
          "frames for one machine reach the other; the switch's table flaps and both lose "
          "connectivity; DHCP hands both one lease",
          "give each machine (or VM) its own MAC; drop MAC-bound network configuration "
          "cloned with the image",
          ("linux-net-bindings", "windows-hardware-bindings")),
    _kind("duplicate-address", "IP address answered by several MACs", "high",
          "two machines answer for one address; connections go to either at random",
          "give each machine its own address (a static address was cloned with the image, "
          "or two DHCP clients share one identity)",
          ("linux-net-bindings",)),
    _kind("machine-id", "systemd machine-id", "medium",
          "journald, D-Bus and DHCP (networkd derives its DUID from it) see one machine",
          "give each Linux machine a new machine-id (or empty it for first boot)",
          ("linux-machine-id",)),
    _kind("dhcp-duid", "DHCP DUID", "medium",
          "the DHCP server gives several machines one lease, or they take each other's",
          "new machine-id (networkd's default DUID follows it); drop saved DUIDs and leases",
          ("linux-machine-id", "linux-net-bindings", "windows-clone-ids")),
    _kind("machine-guid", "Windows MachineGuid", "medium",
          "software licensing, telemetry and management tools count the machines as one",
          "give each Windows machine a new MachineGuid",
          ("windows-clone-ids",)),
    _kind("sus-client-id", "WSUS SusClientId", "medium",
          "WSUS shows one client for all of them and updates only one",
          "drop the WSUS client id so each machine makes its own",
          ("windows-clone-ids",)),
    _kind("fs-uuid", "file-system UUID", "low",
          "when two of these disks meet on one host, mounts by UUID take either one "
          "(btrfs refuses or confuses devices)",
          "give the Linux file systems new UUIDs; references follow",
          ("linux-fs-uuids",)),
    _kind("disk-guid", "GPT disk GUID", "low",
          "when two of these disks meet on one host, Windows takes one offline and "
          "by-id names collide",
          "give the disk a new GUID (Linux disks; a disk holding Windows is refused, since "
          "Windows binds its volumes to it: use `sgdisk -G` and rebuild MountedDevices/BCD)",
          ("linux-disk-ids",)),
    _kind("partition-guid", "GPT partition GUID", "low",
          "PARTUUID= references match partitions of either disk when both are attached",
          "give the partitions new GUIDs; PARTUUID= references follow (Linux disks)",
          ("linux-disk-ids",)),
    _kind("mbr-signature", "MBR disk signature", "low",
          "when two of these disks meet on one Windows host, the second is taken offline "
          "(signature collision)",
          "give the disk a new signature; PARTUUID= references follow (Linux disks; Windows "
          "binds C: to the signature, so a Windows disk is refused)",
          ("linux-disk-ids",)),
    _kind("smb-server-guid", "SMB ServerGuid", "info",
          "Samba derives it from the NetBIOS name, so equal values are expected there; on "
          "Windows it is random per installation",
          "nothing to do unless the hosts are Windows with equal NetBIOS names",
          scored=False),
    _kind("nbns-mac", "MAC in the NetBIOS node status", "info",
          "Samba answers all zeros; the address answering ARP is the one that counts",
          "nothing to do (see MAC address)",
          scored=False),
])


def kind(name: str) -> Kind:
    return KINDS[name]
