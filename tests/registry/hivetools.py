"""The real hives of ../shared sorted by what they are, and copying them to a temp dir."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import copy_maybe_xz

HIVES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "hives"

# Hives damaged on purpose: opening (or walking) them must fail with one clear error.
BROKEN = {
    "dfir-artifact-museum/Win7-EZ/NotAHive",
    "dfir-artifact-museum/Win7-EZ/SAMBadHBinHeader",
    "plaso/corrupt_sub_key_list.hiv",
    "regipy/corrupted_system_hive.xz",
    "yarp/BadListHive",
    "yarp/BadSubkeyHive",
    "yarp/BadLogHive1/BadLogHive",
    "yarp/BadLogHive2/BadLogHive",
    "yarp/BadLogHive3/BadLogHive",
    "yarp/OldLogWithRemnantData",
    "yarp/TruncatedDirtyHive",
    "yarp/TruncatedHive",
    "yarp/TruncatedHiveBin",
    "yarp/TruncatedNameHive",
}
# Readable, but `check` must name a fault.
FAULTY = {
    "yarp/DuplicateSubkeysHive": "duplicate subkey",
    "yarp/InvalidParentHive": "parent offset",
    "yarp/WrongOrderHive": "not sorted",
    "yarp/GarbageHive": "checksum",
}


def all_hives() -> list[str]:
    if not HIVES.is_dir():
        return []
    out = []
    for path in sorted(HIVES.rglob("*")):
        name = path.name.lower()
        if not path.is_file() or ".log" in name or name.endswith(".md"):
            continue
        out.append(str(path.relative_to(HIVES)))
    return out


def good_hives() -> list[str]:
    return [h for h in all_hives() if h not in BROKEN and h not in FAULTY]




def copy_hive(src: Path, dst_dir: Path) -> Path:
    """Copy a hive and its logs (decompressing .xz, dropping the suffix) into dst_dir."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    base = src.name[:-3] if src.name.endswith(".xz") else src.name
    wanted = {(base + s).lower() for s in (".log", ".log1", ".log2")} | {base.lower()}
    out = dst_dir / base
    for sibling in src.parent.iterdir():
        plain = sibling.name[:-3] if sibling.name.endswith(".xz") else sibling.name
        if sibling.is_file() and plain.lower() in wanted:
            copy_maybe_xz(sibling, dst_dir / (base + plain[len(base):]))
    return out
