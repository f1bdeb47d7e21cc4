"""The demo's set of sample images, built from the project's own hives (fixtures/hives)."""

from __future__ import annotations

from pathlib import Path

from reseal.samples.builders import (
    SampleImage,
    build_linux_gpt,
    build_linux_mbr,
    build_qcow2,
    build_windows_gpt,
    build_windows_mbr,
)

REPO = Path(__file__).resolve().parents[3]
HIVE_NAMES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT")


def project_hives(hives_dir: Path | None = None) -> tuple[dict[str, Path], list[str]]:
    """The hives found in `hives_dir` (default: fixtures/hives); notes for the missing ones."""
    directory = hives_dir or REPO / "fixtures" / "hives"
    found: dict[str, Path] = {}
    notes = []
    for name in HIVE_NAMES:
        candidates = [p for p in directory.glob("*") if p.name.upper() == name] if directory.is_dir() else []
        if candidates:
            found[name] = candidates[0]
        else:
            notes.append(f"hive {name} not found in {directory}: the Windows samples lack it")
    return found, notes


def build_all(outdir: Path, hives_dir: Path | None = None) -> tuple[list[SampleImage], list[str]]:
    """Build every sample image into `outdir`; returns them and notes about what is missing."""
    outdir.mkdir(parents=True, exist_ok=True)
    hives, notes = project_hives(hives_dir)
    images = [
        build_windows_gpt(outdir / "windows-gpt.img", hives),
        build_windows_mbr(outdir / "windows7-mbr.img", hives),
    ]
    linux = build_linux_gpt(outdir / "linux-gpt.img")
    images += [linux, build_linux_mbr(outdir / "linux-mbr.img")]
    images.append(build_qcow2(linux, outdir / "linux-gpt.qcow2"))
    return images, notes
