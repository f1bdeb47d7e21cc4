"""The indexed leftover scan finds exactly what the value-by-value scan found, on real hives.

`reference_scan` is the scan as it was before the hive index: every key and value of every hive
decoded and checked against every needle. The indexed scan (`scan_hives`) must give the same
hits, in the same order: on the real hives as loaded (logs applied), and on the same hives after
a whole generalize run edited them (the index is kept current by the edits, not rebuilt).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from reseal.image.target import OpenOptions, open_target
from reseal.operations.base import IdentityRequest
from reseal.operations.windows_leftovers import Hit, _needles, scan_hives
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.registry import Hive
from reseal.registry.check import check_hive
from reseal.registry.index import LIVE_KINDS, Needle
from reseal.registry.scrub import scrub
from reseal.windows.hives import HiveSet, LoadedHive
from reseal.windows.sid import Sid

from .helpers import RATHBUN_NAME, RATHBUN_SID, build_real_tree

SYSTEM_B = "regipy/SYSTEM_B.xz"
SYSTEM_B_NAME = "DESKTOP-PM6C56D"


def reference_scan(hives: Iterable[LoadedHive], old_identity: dict[str, str]) -> list[Hit]:
    """The leftover scan before the index: every value of every key, every needle."""
    needles = _needles(old_identity)
    hits: list[Hit] = []
    for loaded in hives:
        for key in loaded.hive.walk():
            for needle in needles:
                if needle.text.found_in_text(key.name):
                    hits.append(Hit(loaded.label, key.path, None, "key name", needle.identity,
                                    needle.text.text))
            for value in key.values():
                raw = value.raw
                for needle in needles:
                    if needle.text.found_in_text(value.name):
                        hits.append(Hit(loaded.label, key.path, value.name, "value name",
                                        needle.identity, needle.text.text))
                    form = needle.text.found_in_bytes(raw)
                    if form is None and needle.sid is not None and needle.sid.contains_binary(raw):
                        form = "binary SID"
                    if form is None and needle.binary is not None and needle.binary in raw:
                        form = "binary GUID"
                    if form is not None:
                        hits.append(Hit(loaded.label, key.path, value.name, form,
                                        needle.identity, needle.text.text))
        for needle in needles:
            if needle.sid is None:
                continue
            for descriptor in loaded.hive.security_descriptors():
                if needle.sid.contains_binary(descriptor):
                    hits.append(Hit(loaded.label, "", None, "security descriptor",
                                    needle.identity, needle.text.text))
                    break
    return hits


def _guids(hive: Hive, limit: int) -> list[str]:
    """GUID strings that occur in the hive's values (as text), to use as needles."""
    import re

    found: list[str] = []
    pattern = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?")
    for key in hive.walk():
        for value in key.values():
            if value.type == 1 and isinstance(value.data, str):
                match = pattern.search(value.data)
                if match and match.group(0) not in found:
                    found.append(match.group(0))
            if len(found) >= limit:
                return found
    return found


@pytest.fixture(scope="module")
def real_tree(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_real_tree(shared_dir, tmp_path_factory.mktemp("equiv") / "root", system=SYSTEM_B)


def _identities(hives: HiveSet) -> dict[str, str]:
    system = hives.require("SYSTEM").hive
    old = {"machine-sid": RATHBUN_SID, "computer-name": SYSTEM_B_NAME,
           "computer-name-2": RATHBUN_NAME, "sqm-machine-id": "{0000}", "x": "S"}
    for index, guid in enumerate(_guids(system, 6)):
        old[f"machine-guid-{index}"] = guid
    old["dhcpv6-duid"] = "000100011d3e4b2a000c29"
    return old


def test_indexed_scan_equals_reference_on_real_hives(real_tree: Path) -> None:
    with open_target(real_tree, OpenOptions()) as target:
        hives = HiveSet(target.windows[0])
        loaded = list(hives.every_hive())
        assert len(loaded) == 7
        old = _identities(hives)
        reference = reference_scan(loaded, old)
        indexed = scan_hives(loaded, old)
    assert len(reference) > 100  # the needles are really there: SIDs, names and GUIDs
    assert {h.form for h in reference} >= {"utf-16le", "binary SID", "security descriptor", "key name"}
    assert indexed == reference


@pytest.fixture(scope="module")
def generalized(real_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A default generalize of a copy of the real tree; returns it and the old identities."""
    import shutil

    base = tmp_path_factory.mktemp("generalized")
    root = base / "root"
    shutil.copytree(real_tree, root, symlinks=True)
    os.environ["RESEAL_STATE_DIR"] = str(base / "state")
    result = run_generalize(root, RunSettings(machine="equiv", request=IdentityRequest(
        hostname="CLONE-7", machine_sid=NEW_SID, seed=3)), run_dir=base / "run")
    old = {name: v.old for name, v in result.report.identity.items() if v.old and v.old != v.new}
    return root, old


NEW_SID = "S-1-5-21-1111111111-222222222-333333333"


def test_indexed_scan_equals_reference_after_edits(generalized: tuple[Path, dict[str, str]]) -> None:
    """After a real generalize (renamed keys, rewritten values, removed keys), from disk."""
    root, old = generalized
    old = {**old, "new-sid": NEW_SID, "new-name": "CLONE-7"}  # these are everywhere now
    with open_target(root, OpenOptions()) as target:
        loaded = list(HiveSet(target.windows[0]).every_hive())
        reference = reference_scan(loaded, old)
        indexed = scan_hives(loaded, old)
    assert any(h.identity == "new-sid" for h in reference)
    assert indexed == reference


def test_index_follows_edits_in_memory(real_tree: Path) -> None:
    """Edits made after the index was built: the kept-current index answers like a new one."""
    with open_target(real_tree, OpenOptions()) as target:
        hives = HiveSet(target.windows[0])
        system = hives.require("SYSTEM").hive
        system.index().build()
        old = {"computer-name": SYSTEM_B_NAME, "machine-sid": RATHBUN_SID}
        params = system.key("ControlSet001\\Services\\Tcpip\\Parameters")
        assert params is not None
        params.set_value("Hostname", 1, "x" * 300)  # data moves to a new cell
        params.set_value("ResealCopy", 3, ("pre " + SYSTEM_B_NAME).encode("utf-16-le") * 50)
        system.create_key(f"Software\\{SYSTEM_B_NAME}\\Sub").set_value(SYSTEM_B_NAME, 1, "v")
        system.rename_key("ControlSet001\\Control\\ComputerName", "ComputerName_" + "n" * 40)
        system.delete_key("ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces")
        loaded = [hives.require("SYSTEM")]
        indexed = scan_hives(loaded, old)
        reference = reference_scan(loaded, old)
        fresh = Hive.from_bytes(system.to_bytes(), name=system.name)
        fresh_hits = scan_hives([LoadedHive("SYSTEM", "x", fresh, [])], old)
    assert indexed == reference == fresh_hits
    assert any(h.value == SYSTEM_B_NAME for h in indexed)
    assert any(h.value == "ResealCopy" for h in indexed)


def _hive_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.upper() in
                  ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT", "NTUSER.DAT"))


def test_committed_hives_hold_no_old_sid_outside_live_data(
        real_tree: Path, generalized: tuple[Path, dict[str, str]]) -> None:
    """A byte search of every hive: the old SID (binary and text) and the old names occur only
    in live data, never in free cells or slack; a hive the run wrote has nothing left to zero."""
    root, old = generalized
    old_sid = Sid.parse(old["machine-sid"])
    needles = [Needle(old_sid.to_bytes()[2:]), Needle(old["machine-sid"].lower().encode("utf-16-le"), True),
               Needle(old["machine-sid"].lower().encode(), True)]
    for name in (old["computer-name"], old["computer-name-2"]):
        needles += [Needle(name.lower().encode("utf-16-le"), True), Needle(name.lower().encode(), True)]
    files = _hive_files(root)
    assert len(files) == 7
    written = 0
    for path in files:
        raw = path.read_bytes()
        hive = Hive.open(path)
        assert not hive.warnings, hive.warnings
        found = hive.index().find(needles)
        unused = [hit for hit in found if hit.kind not in LIVE_KINDS]
        assert unused == [], (path, unused[:3])
        assert raw.find(old_sid.to_bytes()[2:]) == -1, path  # not even in live data
        if raw != (real_tree / path.relative_to(root)).read_bytes():  # written by the run
            report = scrub(hive)
            assert report[:2] == (0, 0), (path, report)
            written += 1
    assert written >= 5


def test_three_readers_read_every_value_of_committed_hives(generalized: tuple[Path, dict[str, str]]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
    import oracles

    root, _old = generalized
    for path in _hive_files(root):
        tree = oracles.ours(Hive.open(path))
        assert sum(len(values) for values in tree.values()) > 0
        assert oracles.python_registry(path) == tree, path
        assert oracles.hivex(path) == tree, path
        if path.stat().st_size < 3_000_000:  # regipy's value walk is quadratic on big hives
            got = {oracles.ascii_text(k): oracles.ascii_names(v) for k, v in oracles.regipy_names(path).items()}
            assert got == {oracles.ascii_text(k): oracles.ascii_names(set(v)) for k, v in tree.items()}, path
        assert check_hive(Hive.open(path)) is None, path


def _plant_in_free_cell(path: Path, data: bytes) -> int:
    """Write `data` into the body of a free cell of the hive file; returns its file offset."""
    hive = Hive.open(path)
    offset = next(off for off, size in sorted(hive.store.free_cells().items()) if size >= len(data) + 16)
    at = 4096 + offset + 8
    raw = bytearray(path.read_bytes())
    raw[at : at + len(data)] = data
    path.write_bytes(raw)
    return at


def test_stale_copy_in_a_free_cell_is_zeroed_and_verify_sees_a_new_one(real_tree: Path, tmp_path: Path) -> None:
    """An old SID that only a free cell of an otherwise untouched hive holds: the run writes
    that hive (zero-filled); a copy planted after the run is what verify reports."""
    import shutil

    from reseal.operations.windows_leftovers import scan_windows_leftovers

    root = tmp_path / "root"
    shutil.copytree(real_tree, root, symlinks=True)
    default_user = root / "Users" / "Default" / "NTUSER.DAT"
    planted = RATHBUN_SID.encode("utf-16-le")
    _plant_in_free_cell(default_user, planted)
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    result = run_generalize(root, RunSettings(machine="stale", request=IdentityRequest(
        hostname="CLONE-8", machine_sid=NEW_SID, seed=5)), run_dir=tmp_path / "run")
    assert planted not in default_user.read_bytes()
    assert any("free cells and cell slack" in note for note in result.report.notes)
    old = {"machine-sid": RATHBUN_SID}
    with open_target(root, OpenOptions()) as target:
        assert [h for h in scan_windows_leftovers(target.windows[0], old) if h.unused] == []
    at = _plant_in_free_cell(default_user, planted)
    with open_target(root, OpenOptions()) as target:
        hits = [h for h in scan_windows_leftovers(target.windows[0], old) if h.unused]
    assert [(h.form, h.key) for h in hits] == [("free cell", f"<free cell at file offset {at:#x}>")]
