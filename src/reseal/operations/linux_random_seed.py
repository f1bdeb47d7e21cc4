"""linux-random-seed: every clone gets its own random seed file.

systemd-random-seed.service feeds /var/lib/systemd/random-seed into the kernel's pool early
in boot (and systemd-boot passes /loader/random-seed on the ESP to the kernel): a master's
seed copied into every clone makes them start from the same state. The file is replaced by
fresh bytes from the host's CSPRNG (never the run's seeded random source, which tests and
batches may make reproducible), of the size it had (at least 512 bytes), mode 0600.
Nothing of either seed is put in the report: only sizes and that it changed.
"""

from __future__ import annotations

import secrets

from reseal.image.model import OSFamily
from reseal.operations._linux_support import preflight
from reseal.operations.base import Operation, OperationContext

ORDER = 22
SEED_FILES = ("/var/lib/systemd/random-seed", "/boot/efi/loader/random-seed",
              "/efi/loader/random-seed", "/boot/loader/random-seed")
MIN_SEED = 512
MAX_SEED = 4096  # systemd writes 512 bytes (up to the pool size); never trust a bigger size


def apply(ctx: OperationContext) -> None:
    preflight(ctx)
    fs = ctx.system.fs
    done: set[str] = set()
    for path in SEED_FILES:
        if not fs.is_file(path) or fs.is_symlink(path):
            continue
        key = str(fs.resolve(path))
        if key in done:
            continue
        done.add(key)
        old_size = fs.stat(path).st_size
        size = min(max(old_size, MIN_SEED), MAX_SEED)
        fs.write_bytes(path, secrets.token_bytes(size), mode=0o600)
        ctx.change(path, "set", f"the master's seed ({old_size} bytes)",
                   f"{size} fresh random bytes")
    if not done:
        ctx.note("no random seed file in the image (systemd makes one on first shutdown)")


OPERATION = Operation(
    name="linux-random-seed",
    description="replace systemd's random seed (/var/lib/systemd/random-seed, the ESP's "
    "loader/random-seed) with fresh random bytes, so clones do not share it",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
)
