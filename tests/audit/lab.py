"""A LAN of network namespaces for the audit tests and the benchmark.

One namespace holds the switch (a bridge), one the scanner, and one per host, each joined to the
bridge by a veth pair. Nothing is added to the machine's own network namespace, so the lab's
traffic never leaves it and its addresses cannot meet another test's. Each host runs in its own
PID, mount and UTS namespace (the research notes' recipe): killing the namespace's init ends
smbd, nmbd, samba-dcerpcd and sshd together, /run/samba is a private tmpfs, and the host name
the host reports is its own. Mount propagation is `slave`, so a file system another test unmounts
on the machine is unmounted in the lab's copies as well and never held busy by them.

Names carry the owning process id (`rsa<pid>x<random>`): a lab left behind by a killed test run
is removed by the next one, and no other helper's namespaces match the pattern.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "rsa"
NAME_PATTERN = re.compile(rf"^{PREFIX}(\d+)x([0-9a-f]+)-")
REPO = Path(__file__).resolve().parents[2]
RESPONDER = Path(__file__).resolve().parent / "responder.py"
START_TIMEOUT = 20.0


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
         input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=input_text, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc


def tools_missing() -> list[str]:
    """Programs the lab needs that are not installed (the tests skip with their names)."""
    needed = ("ip", "unshare", "setpriv", "smbd", "nmbd", "net", "smbpasswd", "ssh-keygen")
    missing = [t for t in needed if shutil.which(t) is None]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("sshd")
    return missing


@dataclass
class HostSpec:
    """What one lab host is and runs. `kind` "samba" runs smbd+nmbd(+sshd); "responder" runs
    tests/audit/responder.py with the given `behaviour` (garbage, resets, silence)."""

    name: str
    index: int  # last octet of the address
    mac: str | None = None
    sid: str | None = None  # set with `net setlocalsid` before anything else
    ssh_keys: str | None = None  # name of a host-key set; hosts with the same name share keys
    ssh: bool = True
    nmbd: bool = True
    machine_id: str | None = None  # bind-mounted over /etc/machine-id inside the host
    registry: dict[str, str] = field(default_factory=dict)  # value name -> data, under HKLM\SOFTWARE
    kind: str = "samba"
    behaviour: str = ""
    extra_addresses: list[int] = field(default_factory=list)  # more last octets on the same NIC
    drop_from_scanner: bool = False  # replies to the scanner go to a blackhole route
    key_types: tuple[str, ...] = ("ed25519", "ecdsa", "rsa")
    smb_user: bool = True  # root in the host's passdb, for the credentialed probes


@dataclass
class LabHost:
    spec: HostSpec
    netns: str
    address: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name


class Lab:
    """Build with `Lab.create(hosts)` (a context manager removes everything, also on failure)."""

    def __init__(self, specs: Sequence[HostSpec], workdir: Path | None = None,
                 start_timeout: float = START_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.tag = f"{PREFIX}{os.getpid()}x{secrets.token_hex(3)}"
        octets = secrets.randbelow(200) + 20, secrets.randbelow(250) + 1
        self.network = ipaddress.ip_network(f"10.{octets[0]}.{octets[1]}.0/24")
        self.switch = f"{self.tag}-sw"
        self.scanner = f"{self.tag}-scan"
        self.scanner_address = str(self.network.network_address + 254)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir=workdir))
        self.password = secrets.token_urlsafe(12)
        self.client_key = self.workdir / "client_ed25519"
        self.hosts = [LabHost(s, f"{self.tag}-h{s.index}", self.address(s.index),
                              self.workdir / f"h{s.index}") for s in specs]
        self.namespaces: list[str] = []

    def address(self, index: int) -> str:
        return str(self.network.network_address + index)

    def host(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)

    @classmethod
    @contextlib.contextmanager
    def create(cls, specs: Sequence[HostSpec], workdir: Path | None = None,
               start_timeout: float = START_TIMEOUT) -> Iterator[Lab]:
        remove_stale_labs()
        lab = cls(specs, workdir, start_timeout)
        try:
            lab.build()
            lab.start()
            yield lab
        finally:
            lab.close()

    # -- build -----------------------------------------------------------------------------
    def build(self) -> None:
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-client",
              "-f", str(self.client_key)])
        self._netns_add(self.switch)
        sw = ["ip", "-n", self.switch]
        _run([*sw, "link", "add", "br0", "type", "bridge", "ageing_time", "0"])
        _run([*sw, "link", "set", "br0", "up"])
        self._netns_add(self.scanner)
        self._plug(self.scanner, "vscan", None, [self.scanner_address])
        keysets: dict[str, Path] = {}
        for host in self.hosts:
            self._netns_add(host.netns)
            addresses = [host.address] + [self.address(i) for i in host.spec.extra_addresses]
            self._plug(host.netns, f"vh{host.spec.index}", host.spec.mac, addresses)
            if host.spec.drop_from_scanner:
                _run(["ip", "-n", host.netns, "route", "add", "blackhole",
                      f"{self.scanner_address}/32"])
            host.directory.mkdir(parents=True)
            if host.spec.kind == "samba":
                self._configure_samba(host)
                if host.spec.ssh:
                    self._configure_sshd(host, keysets)

    def _netns_add(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _plug(self, netns: str, port: str, mac: str | None, addresses: list[str]) -> None:
        sw = ["ip", "-n", self.switch]
        _run([*sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns])
        _run([*sw, "link", "set", port, "master", "br0", "up"])
        if mac:
            _run(["ip", "-n", netns, "link", "set", "eth0", "address", mac])
        for address in addresses:
            _run(["ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0"])
        _run(["ip", "-n", netns, "link", "set", "eth0", "up"])

    def _configure_samba(self, host: LabHost) -> None:
        d = host.directory
        for sub in ("private", "lock", "state", "cache", "pid", "log", "share"):
            (d / sub).mkdir()
        (d / "smb.conf").write_text(
            "[global]\n"
            f"  netbios name = {host.name}\n"
            "  workgroup = LAB\n"
            "  server role = standalone server\n"
            f"  interfaces = {host.address}/24\n"
            "  bind interfaces only = yes\n"
            f"  private dir = {d}/private\n"
            f"  lock directory = {d}/lock\n"
            f"  state directory = {d}/state\n"
            f"  cache directory = {d}/cache\n"
            f"  pid directory = {d}/pid\n"
            f"  log file = {d}/log/%m.log\n"
            "  log level = 0\n"
            "  passdb backend = tdbsam\n"
            "  load printers = no\n"
            "  printcap name = /dev/null\n"
            "  disable spoolss = yes\n"
            "  map to guest = never\n"
            "  local master = no\n"
            "  domain master = no\n"
            "  preferred master = no\n"
            "  dns proxy = no\n"
            "[data]\n"
            f"  path = {d}/share\n"
            "  read only = yes\n")
        conf = str(d / "smb.conf")
        if host.spec.sid:
            _run(["net", "-s", conf, "setlocalsid", host.spec.sid])
        if host.spec.smb_user:
            _run(["smbpasswd", "-c", conf, "-a", "-s", "root"],
                 input_text=f"{self.password}\n{self.password}\n")
        if host.spec.registry:
            key = r"HKLM\SOFTWARE\Microsoft\Cryptography"
            _run(["net", "-s", conf, "registry", "createkey", key])
            for name, data in host.spec.registry.items():
                target = key if name == "MachineGuid" else (
                    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate")
                if target != key:
                    _run(["net", "-s", conf, "registry", "createkey", target])
                _run(["net", "-s", conf, "registry", "setvalue", target, name, "sz", data])
        if host.spec.machine_id:
            (d / "machine-id").write_text(host.spec.machine_id + "\n")

    def _configure_sshd(self, host: LabHost, keysets: dict[str, Path]) -> None:
        keyset = host.spec.ssh_keys or host.name
        if keyset not in keysets:
            keydir = self.workdir / f"keys-{keyset}"
            keydir.mkdir()
            bits_of = {"ed25519": None, "ecdsa": "256", "rsa": "2048"}
            for kind in host.spec.key_types:
                bits = bits_of[kind]
                argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{keyset}",
                        "-f", str(keydir / f"ssh_host_{kind}_key")]
                if bits:
                    argv[4:4] = ["-b", bits]
                _run(argv)
            keysets[keyset] = keydir
        keydir = keysets[keyset]
        d = host.directory
        authorized = d / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        lines = [f"ListenAddress {host.address}", "Port 22", f"PidFile {d}/pid/sshd.pid",
                 "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password",
                 "PasswordAuthentication no", f"AuthorizedKeysFile {authorized}",
                 "LogLevel ERROR"]
        lines += [f"HostKey {keydir}/ssh_host_{k}_key" for k in host.spec.key_types]
        (d / "sshd_config").write_text("\n".join(lines) + "\n")

    # -- start / stop ---------------------------------------------------------------------
    def _host_script(self, host: LabHost) -> list[str]:
        d = host.directory
        if host.spec.kind == "responder":
            return [sys.executable, str(RESPONDER), host.spec.behaviour, host.address,
                    host.name]
        steps = [f"hostname {host.name.lower()}",
                 "mount -t tmpfs -o mode=0755 tmpfs /run/samba"]
        if host.spec.machine_id:
            steps.append(f"mount --bind {d}/machine-id /etc/machine-id")
        if host.spec.nmbd:
            steps.append(f"(nmbd -F --no-process-group -s {d}/smb.conf </dev/null &)")
        if host.spec.ssh:
            steps.append("mkdir -p /run/sshd")
            steps.append(f"(/usr/sbin/sshd -D -f {d}/sshd_config </dev/null &)")
        steps.append(f"exec smbd -F --no-process-group -s {d}/smb.conf </dev/null")
        return ["sh", "-c", " && ".join(steps)]

    def start(self) -> None:
        for host in self.hosts:
            argv = ["setpriv", "--pdeathsig", "KILL", "ip", "netns", "exec", host.netns,
                    "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount",
                    "--uts", "--propagation", "slave", *self._host_script(host)]
            log = open(host.directory / "console.log", "wb")  # noqa: SIM115 (lives with the host)
            host.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        deadline = time.monotonic() + self.start_timeout
        for host in self.hosts:
            for port in self._ports(host):
                self._wait_port(host, port, deadline)
        self.warm()

    def warm(self) -> None:
        """One LSA call per Samba host: smbd starts samba-dcerpcd and rpcd_lsad on the first
        one (0.2 s idle, seconds on a loaded machine), so the tests measure a warm server."""
        samba = [h.address for h in self.hosts if h.spec.kind == "samba"]
        script = (
            "import sys, threading\n"
            "from impacket.smbconnection import SMBConnection\n"
            "from impacket.dcerpc.v5 import transport, lsad\n"
            "def warm(a):\n"
            "    for _ in range(3):\n"
            "        try:\n"
            "            c = SMBConnection(a, a, timeout=20); c.login('', '')\n"
            "            t = transport.SMBTransport(a, filename=r'\\lsarpc', smb_connection=c)\n"
            "            d = t.get_dce_rpc(); d.connect(); d.bind(lsad.MSRPC_UUID_LSAD)\n"
            "            lsad.hLsarOpenPolicy2(d, lsad.POLICY_VIEW_LOCAL_INFORMATION)\n"
            "            return\n"
            "        except Exception as e:\n"
            "            print(a, e, file=sys.stderr)\n"
            "ts = [threading.Thread(target=warm, args=(a,)) for a in sys.argv[1:]]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
        if samba:
            self.scanner_run([sys.executable, "-c", script, *samba], timeout=120)

    def _ports(self, host: LabHost) -> list[int]:
        if host.spec.kind != "samba":
            return [445] if host.spec.behaviour in ("garbage", "reset", "silent") else []
        return [445, 139] + ([22] if host.spec.ssh else [])

    def _wait_port(self, host: LabHost, port: int, deadline: float) -> None:
        probe = ("import socket,sys,time\n"
                 "d=time.monotonic()+float(sys.argv[3])\n"
                 "while time.monotonic()<d:\n"
                 "  try:\n"
                 "    socket.create_connection((sys.argv[1],int(sys.argv[2])),0.5).close(); sys.exit(0)\n"
                 "  except OSError: time.sleep(0.05)\n"
                 "sys.exit(1)\n")
        remaining = max(0.5, deadline - time.monotonic())
        proc = _run(["ip", "netns", "exec", host.netns, sys.executable, "-c", probe,
                     host.address, str(port), str(remaining)], check=False,
                    timeout=remaining + 10)
        if proc.returncode != 0:
            console = (host.directory / "console.log").read_text(errors="replace")[-800:]
            raise RuntimeError(f"lab host {host.name}: port {port} did not open: {console}")

    def scanner_run(self, argv: Sequence[str], timeout: float = 120.0,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the scanner's namespace (traffic reaches only the lab)."""
        return subprocess.run(["ip", "netns", "exec", self.scanner, *argv], capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env={**os.environ, **(env or {})})

    def close(self) -> None:
        for host in self.hosts:
            if host.process is not None and host.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(host.process.pid, signal.SIGKILL)
        for host in self.hosts:
            if host.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.process.wait(timeout=10)
        for name in reversed(self.namespaces):
            _run(["ip", "netns", "del", name], check=False)
        self.namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def remove_stale_labs() -> None:
    """Remove labs whose owning process is gone (a test run that was killed)."""
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = NAME_PATTERN.match(name)
        if match and not _alive(int(match.group(1))):
            pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "del", name], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
