"""`make demo`: build the sample disk images, inspect them, then generalize clones of them.

1. `python -m reseal.samples build demo-out/samples`: small real disk images (GPT/MBR,
   Windows with the project's own hives, Linux with ext4, GRUB and LILO, a qcow2).
2. `reseal inspect` of the Linux qcow2 master: the identity every clone starts with.
3. `reseal batch answerfiles/demo.yaml`: five qcow2 overlay clones with distinct identities.
4. `reseal inspect --json` of each clone, summarised: every hostname and machine-id differs.
5. Windows: a domain-member sample built from the real hives in ../shared/fixtures where present
   (the project's synthetic hives otherwise, said so), a clone generalized, old and new identity
   side by side, and `reseal verify` clean.
6. `reseal audit images`: two raw copies of the master collide on every identity (exit 3);
   the generalized clones share none at medium or high severity (exit 0). HTML reports are
   written beside them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "demo-out"
RESEAL = [sys.executable, "-m", "reseal"]


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(args: list[str], ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    print("$ " + " ".join(str(a) for a in args).replace(sys.executable + " -m ", ""), flush=True)
    proc = subprocess.run(args, cwd=REPO, check=False, text=True, stdout=subprocess.PIPE)
    if proc.returncode not in ok:
        print(proc.stdout)
        raise subprocess.CalledProcessError(proc.returncode, args)
    return proc


def audit(clones: list[Path], backing: Path) -> bool:
    """The audit of images: raw copies of the master collide, generalized clones do not."""
    out = OUT / "audit"
    out.mkdir(exist_ok=True)
    master = OUT / "samples" / "linux-gpt.img"
    copies = [out / "raw-copy-1.img", out / "raw-copy-2.img"]
    for copy in copies:
        subprocess.run(["cp", "--sparse=always", str(master), str(copy)], check=True)
    step("audit: two raw copies of the master (never generalized)")
    raw_html = out / "raw-copies.html"
    raw = run([*RESEAL, "audit", "images", *map(str, copies), "--html", str(raw_html)],
              ok=(3,))
    print(raw.stdout)
    step("audit: the generalized clones")
    clones_html = out / "clones.html"
    done = run([*RESEAL, "audit", "images", "--allow-backing", str(backing), *map(str, clones),
                "--html", str(clones_html)])
    print(done.stdout)
    print(f"HTML reports: {raw_html}\n              {clones_html}")
    return raw.returncode == 3 and done.returncode == 0


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    step("build the sample disk images")
    print(run([sys.executable, "-m", "reseal.samples", "build", str(OUT / "samples")]).stdout)
    master = OUT / "samples" / "linux-gpt.qcow2"
    step("the master image, before")
    print(run([*RESEAL, "inspect", str(master)]).stdout)
    step("make and generalize five clones")
    print(run([*RESEAL, "batch", "answerfiles/demo.yaml"]).stdout)
    step("each clone, inspected")
    rows = []
    for clone in sorted((OUT / "clones").glob("*.qcow2")):
        info = json.loads(run([*RESEAL, "inspect", "--json", "--allow-backing", str(master),
                               str(clone)]).stdout)
        for system in info.get("linux", []):
            rows.append((clone.name, system.get("hostname"), system.get("machine_id")))
    for name, hostname, machine_id in rows:
        print(f"{name:20} {hostname!s:12} {machine_id}")
    distinct = len({r[1] for r in rows}) == len(rows) and len({r[2] for r in rows}) == len(rows)
    print(f"\n{len(rows)} clones, identities distinct: {'yes' if distinct else 'NO'}")
    windows_ok = windows_demo()
    audited = audit(sorted((OUT / "clones").glob("*.qcow2")), master)
    return 0 if rows and distinct and audited and windows_ok else 1


def windows_demo() -> bool:
    """A Windows domain member (real hives from ../shared where present) generalized, with the
    old and new identity side by side and `reseal verify` clean."""
    step("the Windows sample: a domain member with a second NTFS volume")
    facts = json.loads(run([sys.executable, "-m", "reseal.samples", "windows",
                            str(OUT / "windows")]).stdout)
    print(f"built from {facts['source']}")
    master = Path(facts["path"])
    clone = OUT / "windows" / "clone-01.img"
    subprocess.run(["cp", "--sparse=always", str(master), str(clone)], check=True)
    before = json.loads(run([*RESEAL, "inspect", "--json", str(clone)]).stdout)["windows"][0]
    step("generalize a clone of it")
    run_dir = OUT / "windows" / "run-clone-01"
    shutil.rmtree(run_dir, ignore_errors=True)
    print(run([*RESEAL, "generalize", str(clone), "--hostname", "WIN-CLONE-01", "--seed", "1",
               "--run-dir", str(run_dir)]).stdout[-3000:])
    after = json.loads(run([*RESEAL, "inspect", "--json", str(clone)]).stdout)["windows"][0]
    step("the Windows identity, before and after")
    for label, key in (("computer name", "computer_name"), ("machine SID (SAM)", "sam_sid"),
                       ("machine SID (SECURITY)", "security_sid"), ("MachineGuid", "machine_guid"),
                       ("membership", "membership"), ("machine account secret", "machine_secret"),
                       ("cached domain logons", "cached_logons")):
        print(f"{label:24} {before.get(key)!s:48} -> {after.get(key)}")
    step("reseal verify: traces of the old identity left")
    verify = subprocess.run([*RESEAL, "verify", str(clone), "--report",
                             str(run_dir / "report.json")], cwd=REPO, text=True,
                            stdout=subprocess.PIPE)
    print(verify.stdout)
    return verify.returncode == 0 and before.get("sam_sid") != after.get("sam_sid")


if __name__ == "__main__":
    sys.exit(main())
