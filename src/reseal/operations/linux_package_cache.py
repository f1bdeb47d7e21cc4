"""linux-package-cache (off by default): downloaded packages and package-manager caches of
apt, dnf, yum, zypper, pacman and apk, like virt-sysprep's package-manager-cache. The
directories stay (apt needs archives/partial to exist)."""

from __future__ import annotations

from reseal.image.model import OSFamily
from reseal.operations._hygiene import HygieneOptions, Sweep, run_sweep
from reseal.operations.base import Operation, OperationContext

ORDER = 80
CACHE_TREES = ("/var/cache/apt/archives", "/var/cache/dnf", "/var/cache/yum",
               "/var/cache/zypp/packages", "/var/cache/pacman/pkg", "/var/cache/apk")
CACHE_FILES = ("/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin")


def build(sweep: Sweep) -> None:
    for top in CACHE_TREES:
        sweep.tree(top, keep=lambda path: path.endswith("/archives/lock"))
    for path in CACHE_FILES:
        sweep.file(path)


def apply(ctx: OperationContext) -> None:
    run_sweep(ctx, "package caches", build, ctx.options)


OPERATION = Operation(
    name="linux-package-cache",
    description="remove downloaded packages and caches of apt, dnf, yum, zypper, pacman, apk",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=HygieneOptions,
)
