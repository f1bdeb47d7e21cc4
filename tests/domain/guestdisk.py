"""Files in and out of the test VM image's root file system with debugfs: no loop device, no
mount. A mount made by a test in the host's namespace is copied into every private mount
namespace another process makes meanwhile (other tests, other reseal runs), which keeps the
device busy; debugfs works on the image file and has nothing to release."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

ROOT_OFFSET = 2048 * 512  # partition 1 of the boot test's master (build_master.sh PART_START)


def _spec(image: Path) -> str:
    return f"{image}?offset={ROOT_OFFSET}"


def debugfs(image: Path, commands: list[str], *, write: bool = False) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
        script.write("\n".join(commands) + "\n")
        script.flush()
        done = subprocess.run(["debugfs", *(["-w"] if write else []), "-f", script.name,
                               _spec(image)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"debugfs failed: {done.stderr.strip()[-500:]}")
    return done.stdout + done.stderr


def read_file(image: Path, path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        log = debugfs(image, [f"dump -p {path} {out}"])
        if not out.exists() or "not found" in log:
            return None
        return out.read_bytes()


def mode_of(image: Path, path: str) -> int | None:
    log = debugfs(image, [f"stat {path}"])
    for line in log.splitlines():
        if "Mode:" in line:
            return int(line.split("Mode:")[1].split()[0], 8)
    return None


def exists(image: Path, path: str) -> bool:
    return "not found" not in debugfs(image, [f"stat {path}"])


def put_tree(image: Path, tree: Path) -> None:
    """Every directory and file under `tree` into the image at the same guest paths (files
    keep their mode; existing files are replaced)."""
    commands = []
    for path in sorted(tree.rglob("*")):
        guest = "/" + path.relative_to(tree).as_posix()
        if path.is_dir():
            commands.append(f"mkdir {guest}")
        elif path.is_symlink():
            commands += [f"rm {guest}", f"symlink {guest} {path.readlink()}"]
        else:
            commands += [f"rm {guest}", f"write {path} {guest}"]
    debugfs(image, commands, write=True)


def dump_tree(image: Path, path: str, destination: Path) -> Path | None:
    destination.mkdir(parents=True, exist_ok=True)
    debugfs(image, [f"rdump {path} {destination}"])
    copied = destination / Path(path).name
    return copied if copied.exists() else None
