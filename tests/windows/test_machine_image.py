"""End to end on disk images of the domain members of ../shared (Win10 Belkasoft in depth, Win7-EZ
and dfwinreg for the essentials), built from their real hives: GPT with
an ESP, the Windows NTFS volume and a second NTFS data volume; RegBack copies, a scheduled task,
`$Recycle.Bin\\<SID>` on both volumes, a DPAPI folder, Remote Desktop's certificate and key file,
MSDTC CIDs, and crafted ACLs (deny ACE, object ACE, SACL, a domain SID, look-alike SIDs).

After a default `reseal generalize`: impacket's offline LSA dump shows no $MACHINE.ACC; a byte
search of every file reseal manages finds no old SID; every volume's ACLs follow the SID (the
domain and look-alike SIDs untouched); `reseal verify` exits 0, then 1 naming a file whose ACL
the test sets back to the old SID; `--deep` labels what no file tool reaches; `reseal undo` puts
back every byte, every name and every ACL of both volumes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reseal.image.target import OpenOptions, open_target
from reseal.operations.base import IdentityRequest
from reseal.registry import Hive
from reseal.samples.builders import SampleImage, build_windows_machine
from reseal.samples.windows_machine import compose_windows_machine
from reseal.windows.domain import read_domain_state
from reseal.windows.ntfsvolumes import ACL_XATTR, read_acl
from reseal.windows.secdesc import rewrite_descriptor
from reseal.windows.sid import Sid, SidRewriter

from .domain_helpers import impacket_cached_logons
from .lsa_helpers import impacket_dump

NEW_NAME = "CLONE-042"
NEW_SID = "S-1-5-21-1111111111-2222222222-3333333333"
RESEAL = [sys.executable, "-m", "reseal"]


@dataclass
class Generalized:
    master: SampleImage
    clone: Path
    run_dir: Path
    before: dict[tuple[str, str], tuple[str, str]]  # (volume, path) -> (content digest, ACL hex)
    report: dict[str, object]
    work: Path
    lock: Path  # reseal refuses an image attached twice: workers take turns on the shared clone

    @contextlib.contextmanager
    def turn(self) -> Iterator[Path]:
        with open(self.lock, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield self.clone


def _reseal(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESEAL_STATE_DIR": str(env_dir)}
    return subprocess.run([*RESEAL, *args], capture_output=True, text=True, timeout=900, env=env)


def snapshot(image: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """Every file and folder of every mounted volume: sha256 of its bytes and its NTFS ACL."""
    state: dict[tuple[str, str], tuple[str, str]] = {}
    with open_target(image) as target:
        for volume in target.volumes:
            fs = volume.fs
            if fs is None:
                continue
            for directory, dirs, files in fs.walk("/"):
                for name in [*dirs, *files]:
                    path = f"{directory.rstrip('/')}/{name}"
                    digest = "dir" if name in dirs else hashlib.sha256(fs.read_bytes(path)).hexdigest()
                    acl = read_acl(fs, path) if volume.fstype == "ntfs" else None
                    state[(volume.key, path)] = (digest, acl.hex() if acl else "")
    return state


def _build_once(shared_dir: Path, work: Path) -> None:
    """Master image, generalized clone and snapshot; made by the first test worker only."""
    (work / "hives").mkdir(parents=True)
    sample = compose_windows_machine(shared_dir, work / "hives")
    assert sample.facts["source"].startswith("real hives")
    master = build_windows_machine(work / "master.img", sample)
    shutil.rmtree(work / "hives")
    clone = work / "clone.img"
    subprocess.run(["cp", "--sparse=always", str(master.path), str(clone)], check=True)
    before = snapshot(clone)
    proc = _reseal("generalize", str(clone), "--hostname", NEW_NAME, "--machine-sid", NEW_SID,
                   "--run-dir", str(work / "run"), env_dir=work / "state")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (work / "done.json").write_text(json.dumps({
        "facts": master.facts, "before": [[*key, *value] for key, value in before.items()]}))


@pytest.fixture(scope="module")
def generalized(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Generalized:
    if os.geteuid() != 0 or not shutil.which("mkntfs") or not shutil.which("ntfscluster"):
        pytest.skip("needs root and ntfs-3g (mkntfs, ntfscluster)")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this run
    work = base / "windows-machine"
    with open(base / "windows-machine.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work / "done.json").exists():
            shutil.rmtree(work, ignore_errors=True)
            _build_once(shared_dir, work)
    done = json.loads((work / "done.json").read_text())
    master = SampleImage(work / "master.img", "windows-machine", "gpt", [], done["facts"])
    before = {(row[0], row[1]): (row[2], row[3]) for row in done["before"]}
    report = json.loads((work / "run" / "report.json").read_text())
    mine = tmp_path_factory.mktemp("machine")
    return Generalized(master, work / "clone.img", work / "run", before, report, mine,
                       base / "windows-machine.lock")


def _copy_out(image: Path, paths: dict[str, str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with open_target(image) as target:
        fs = target.windows[0].fs
        for name, guest in paths.items():
            (dest / name).write_bytes(fs.read_bytes(guest))


def test_no_master_machine_secret_or_cached_logon(generalized: Generalized) -> None:
    config = "/Windows/System32/config"
    before, after = generalized.work / "lsa-before", generalized.work / "lsa-after"
    _copy_out(generalized.master.path, {"SYSTEM": f"{config}/SYSTEM",
                                        "SECURITY": f"{config}/SECURITY"}, before)
    with generalized.turn() as clone:
        _copy_out(clone, {"SYSTEM": f"{config}/SYSTEM", "SECURITY": f"{config}/SECURITY"}, after)
    assert any("plain_password_hex" in line for line in impacket_dump(before))
    dumped = impacket_dump(after)
    assert dumped and not any("MACHINE.ACC" in line or "plain_password_hex" in line
                              for line in dumped)
    assert impacket_cached_logons(after) == []
    state = read_domain_state(Hive.open(after / "SECURITY"))
    assert not state.member and state.primary_name == "WORKGROUP"
    facts = generalized.master.facts
    notes = "\n".join(generalized.report["notes"])  # type: ignore[arg-type]
    assert f"left domain {facts['domain']}" in notes and "must be joined" in notes


def test_no_old_sid_in_any_file_reseal_manages(generalized: Generalized) -> None:
    old = Sid.parse(generalized.master.facts["machine_sid"])
    binary = re.compile(rb"\x01[\x04-\x0f]" + re.escape(old.to_bytes()[2:]))
    text = [re.compile(re.escape(str(old).encode(enc)) + tail) for enc, tail in
            (("ascii", rb"(?![0-9])"), ("utf-16-le", rb"(?![0-9]\x00)"))]
    left: list[str] = []
    with generalized.turn() as clone, open_target(clone) as target:
        for volume in target.volumes:
            fs = volume.fs
            if fs is None:
                continue
            for directory, _dirs, files in fs.walk("/"):
                for name in files:
                    path = f"{directory.rstrip('/')}/{name}"
                    if "/winevt/" in path:  # event logs: windows-event-logs, off by default
                        continue
                    if "/Microsoft/Protect/" in path:
                        continue  # DPAPI: reported, never renamed (its files do not hold the SID)
                    data = fs.read_bytes(path)
                    if binary.search(data) or any(p.search(data) for p in text):
                        left.append(f"{volume.key}:{path}")
    assert left == []


def test_acls_on_every_volume(generalized: Generalized) -> None:
    facts = generalized.master.facts
    rewriter = SidRewriter(Sid.parse(facts["machine_sid"]), Sid.parse(NEW_SID))
    rich = bytes.fromhex(facts["rich_acl"])
    expected_rich = rewrite_descriptor(rich, rewriter.map_sid)
    foreign = bytes.fromhex(facts["foreign_acl"])
    assert expected_rich is not None and expected_rich != rich
    # the mapped descriptor keeps the domain SID, the neighbour and the longer look-alike
    for sid in (f"{facts['domain_sid']}-513", facts["neighbour_sid"], facts["longer_lookalike_sid"]):
        assert Sid.parse(sid).to_bytes() in expected_rich
    user, new_user = facts["user_name"], f"{NEW_SID}-1001"
    with generalized.turn() as clone, open_target(clone) as target:
        fs = {v.key: v.fs for v in target.volumes if v.fs is not None}
        checks = {("p3", f"/Users/{user}"): expected_rich,
                  ("p3", f"/Users/{user}/Documents/notes.txt"): expected_rich,
                  ("p3", f"/$Recycle.Bin/{new_user}"): expected_rich,
                  ("p3", "/Windows/explorer.exe"): foreign,
                  ("p4", "/Data/Projects"): expected_rich,
                  ("p4", "/Data/Projects/report.txt"): expected_rich,
                  ("p4", f"/$Recycle.Bin/{new_user}"): expected_rich,
                  ("p4", "/Data/Shared/readme.txt"): foreign}
        for (volume, path), expected in checks.items():
            volume_fs = fs[volume]
            assert volume_fs is not None
            assert read_acl(volume_fs, path) == expected, (volume, path)
    notes = "\n".join(generalized.report["notes"])  # type: ignore[arg-type]
    assert re.search(r"volume p3 \(Windows\): 3 of \d+ file ACLs", notes)
    assert re.search(r"volume p4 \(Data\): 3 of \d+ file ACLs", notes)


def test_names_tasks_regback_and_sysprep_items(generalized: Generalized) -> None:
    facts = generalized.master.facts
    old_user, new_user = facts["user_sid"], f"{NEW_SID}-1001"
    with generalized.turn() as clone, open_target(clone) as target:
        fs = {v.key: v.fs for v in target.volumes if v.fs is not None}
        system, data = fs["p3"], fs["p4"]
        assert system is not None and data is not None
        for volume in (system, data):
            assert volume.is_dir(f"/$Recycle.Bin/{new_user}")
            assert not volume.exists(f"/$Recycle.Bin/{old_user}")
        assert system.is_dir(f"/$Recycle.Bin/{facts['lookalike_text']}")  # look-alike stays
        user = facts["user_name"]
        assert system.is_dir(f"/Users/{user}/AppData/Roaming/Microsoft/Protect/{old_user}")
        task = system.read_bytes("/Windows/System32/Tasks/ResealSampleTask")
        text = task[2:].decode("utf-16-le")
        assert task[:2] == b"\xff\xfe" and f"<UserId>{new_user}</UserId>" in text
        assert f"<Author>{NEW_NAME}\\{user}</Author>" in text
        assert facts["lookalike_text"] in text and old_user not in text
        software = Hive.from_bytes(system.read_bytes("/Windows/System32/config/SOFTWARE"))
        regback = Hive.from_bytes(system.read_bytes("/Windows/System32/config/RegBack/SOFTWARE"))
        cache = software.key("Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache\\Tasks\\"
                             "{0A7C7E55-0000-4000-8000-000000000001}")
        assert cache is not None and (held := cache.value("Hash")) is not None
        assert held.raw == hashlib.sha256(task).digest()
        assert regback.key(f"Microsoft\\Windows NT\\CurrentVersion\\ProfileList\\{new_user}")
        wu = software.key("Microsoft\\Windows\\CurrentVersion\\WindowsUpdate")
        assert wu is not None and wu.value("PingID") is None and wu.value("AccountDomainSid") is None
        cids = software.key("Classes\\CID")
        assert cids is not None and facts["msdtc_cid"] not in {k.name.strip("{}") for k in cids.subkeys()}
        assert software.key("Microsoft\\SystemCertificates\\Remote Desktop\\Certificates\\"
                            + facts["rdp_thumbprint"]) is None
        assert not system.exists(facts["rdp_key_file"])
        assert system.exists("/Windows/System32/winevt/Logs/System.evtx")  # off by default


def test_verify_clean_then_planted_acl_fails(generalized: Generalized) -> None:
    report = str(generalized.run_dir / "report.json")
    state = generalized.work / "verify-state"
    with generalized.turn() as clone:
        proc = _reseal("verify", str(clone), "--report", report, env_dir=state)
        deep = _reseal("verify", str(clone), "--report", report, "--deep", "--json", env_dir=state)
        planted = generalized.work / "planted.img"
        subprocess.run(["cp", "--sparse=always", str(clone), str(planted)], check=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 unexplained" in proc.stdout
    assert deep.returncode == 0, deep.stdout + deep.stderr
    result = json.loads(deep.stdout)
    assert result["unexplained"] == 0 and result["beyond_files"] > 0
    regions = {h["where"] for h in result["hits"] if h["beyond_files"]}
    assert "p3 $Secure" in regions and "p4 $Secure" in regions
    assert any(r.endswith("free cluster") for r in regions)
    assert all(h["remedy"] for h in result["hits"])

    old_user = Sid.parse(generalized.master.facts["user_sid"])
    with open_target(planted, OpenOptions(writable=True)) as target:
        data = next(v for v in target.volumes if v.key == "p4")
        assert data.fs is not None
        acl = read_acl(data.fs, "/Data/Projects/report.txt")
        assert acl is not None
        # the owner becomes the old machine's user (same size SID: offsets stay)
        owner_at = struct.unpack_from("<I", acl, 4)[0]
        planted_acl = acl[:owner_at] + old_user.to_bytes() + acl[owner_at + old_user.size:]
        data.fs.set_xattr("/Data/Projects/report.txt", ACL_XATTR, planted_acl)
    proc = _reseal("verify", str(planted), "--report", report, env_dir=state)
    assert proc.returncode == 1
    assert "p4:/Data/Projects/report.txt" in proc.stdout and "windows-file-acls" in proc.stdout


def test_undo_restores_every_byte_name_and_acl(generalized: Generalized) -> None:
    undone = generalized.work / "undone.img"
    with generalized.turn() as clone:
        subprocess.run(["cp", "--sparse=always", str(clone), str(undone)], check=True)
    proc = _reseal("undo", str(undone), str(generalized.run_dir / "journal"),
                   env_dir=generalized.work / "undo-state")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = snapshot(undone)
    assert after == generalized.before


@pytest.mark.parametrize("member", ["win7-ez", "dfwinreg"])
def test_other_real_members(shared_dir: Path, tmp_path: Path, member: str) -> None:
    """The Windows 7 era members (Win7-EZ, dfwinreg) as two-volume images: after a default run
    no master secret (impacket), verify clean, and undo back to every byte, name and ACL."""
    if os.geteuid() != 0 or not shutil.which("mkntfs"):
        pytest.skip("needs root and ntfs-3g")
    from reseal.pipeline.report import RunReport
    from reseal.pipeline.runner import RunSettings, run_generalize
    from reseal.pipeline.undo import undo_run
    from reseal.pipeline.verify import scan_leftovers

    (tmp_path / "hives").mkdir()
    sample = compose_windows_machine(shared_dir, tmp_path / "hives", member)
    assert sample.facts["source"].startswith("real hives")
    image = build_windows_machine(tmp_path / "member.img", sample).path
    before = snapshot(image)
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    result = run_generalize(image, RunSettings(request=IdentityRequest(hostname=NEW_NAME)),
                            run_dir=tmp_path / "run")
    config = "/Windows/System32/config"
    _copy_out(image, {"SYSTEM": f"{config}/SYSTEM", "SECURITY": f"{config}/SECURITY"},
              tmp_path / "lsa")
    assert not any("plain_password_hex" in line for line in impacket_dump(tmp_path / "lsa"))
    report = RunReport.load(tmp_path / "run" / "report.json")
    with open_target(image) as target:
        hits = scan_leftovers(target, report)
    assert [h for h in hits if not h.explained] == []
    assert result.journal_dir is not None
    undo_run(image, result.journal_dir)
    assert snapshot(image) == before
