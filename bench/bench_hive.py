"""Registry speed on the largest real hive: full walk vs python-registry and hivexregedit, edits, rename.

Run: .venv/bin/python bench/bench_hive.py [HIVE.xz]
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reseal.formatting import format_table
from reseal.registry import Hive, RegType

SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hives" / "regipy"
DEFAULT = SHARED / "SYSTEM_WIN_10_1709.xz"


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def walk_ours(path: Path) -> tuple[int, int]:
    hive = Hive.open(path)
    keys = values = 0
    for key in hive.walk():
        keys += 1
        for value in key.values():
            _ = value.raw
            values += 1
    return keys, values


def walk_python_registry(path: Path) -> tuple[int, int]:
    from Registry import Registry  # type: ignore[import-untyped]

    keys = values = 0
    stack = [Registry.Registry(str(path)).root()]
    while stack:
        key = stack.pop()
        keys += 1
        for value in key.values():
            value.raw_data()
            values += 1
        stack.extend(key.subkeys())
    return keys, values


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not source.exists():
        print(f"hive not found: {source}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-hive-"))
    try:
        path = tmp / "SYSTEM"
        with lzma.open(source) if source.suffix == ".xz" else open(source, "rb") as fin, open(path, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        rows = []
        t, (k, v) = _timed(lambda: walk_ours(path))
        rows.append(("reseal open + full walk", f"{t:.2f}", f"{k} keys, {v} values"))
        t, (k2, v2) = _timed(lambda: walk_python_registry(path))
        rows.append(("python-registry full walk", f"{t:.2f}", f"{k2} keys, {v2} values"))
        if shutil.which("hivexregedit"):
            t, _ = _timed(lambda: subprocess.run(["hivexregedit", "--export", str(path), "\\"], stdout=subprocess.DEVNULL, check=False))
            rows.append(("hivexregedit --export", f"{t:.2f}", "whole hive"))
        hive = Hive.open(path)
        services = hive.key("ControlSet001\\Services")
        assert services is not None
        targets = [k for k in services.subkeys()][:1000]

        def edits() -> None:
            for i in range(1000):
                targets[i % len(targets)].set_value(f"ResealBench{i // len(targets)}", RegType.REG_DWORD, i)
            hive.save(path)

        t, _ = _timed(edits)
        rows.append(("1,000 value sets + commit", f"{t:.2f}", f"{len(targets)} keys, saved {path.stat().st_size} bytes"))
        biggest = max(hive.root.subkeys(), key=lambda key: sum(1 for _ in hive.walk(key)))
        count = sum(1 for _ in hive.walk(biggest))
        t, _ = _timed(lambda: (hive.rename_key(biggest.path, biggest.name + "_Renamed"), hive.save(path)))
        rows.append((f"rename {biggest.name} + commit", f"{t:.2f}", f"subtree of {count} keys"))
        print(f"hive: {source.name} ({path.stat().st_size} bytes)")
        print(format_table(["operation", "seconds", "what"], rows))
    finally:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
