"""linux-shell-history (off by default): shell and tool histories of root and every user,
like virt-sysprep's bash-history (and the other shells and REPLs that keep one)."""

from __future__ import annotations

from reseal.errors import ResealError
from reseal.image.guestfs import GuestFS
from reseal.image.model import OSFamily
from reseal.operations._hygiene import HygieneOptions, Sweep, run_sweep
from reseal.operations.base import Operation, OperationContext

ORDER = 80
HISTORY_FILES = (".bash_history", ".zsh_history", ".history", ".sh_history", ".ash_history",
                 ".python_history", ".node_repl_history", ".mysql_history", ".psql_history",
                 ".sqlite_history", ".lesshst", ".wget-hsts", ".local/share/fish/fish_history")
MAX_USERS = 10_000
MAX_PASSWD = 4 << 20


def home_directories(fs: GuestFS) -> list[str]:
    """/root, every directory under /home, and the homes /etc/passwd names (guest paths)."""
    homes = ["/root"] + [f"/home/{name}" for name in fs.listdir("/home")]
    try:
        passwd = fs.read_bytes("/etc/passwd", limit=MAX_PASSWD).decode("utf-8", "replace") \
            if fs.is_file("/etc/passwd") else ""
    except (ResealError, OSError):
        passwd = ""
    for line in passwd.splitlines()[:MAX_USERS]:
        fields = line.split(":")
        if len(fields) >= 7 and fields[5].startswith("/") and fields[5] not in ("/", "/nonexistent"):
            homes.append(fields[5])
    unique: list[str] = []
    for home in homes:
        try:
            if home not in unique and fs.is_dir(home) and not fs.is_symlink(home):
                unique.append(home)
        except ResealError:
            continue  # a home whose path leaves the image is not this operation's
    return unique


def build(sweep: Sweep) -> None:
    for home in home_directories(sweep.fs):
        for name in HISTORY_FILES:
            sweep.file(f"{home.rstrip('/')}/{name}")


def apply(ctx: OperationContext) -> None:
    run_sweep(ctx, "shell histories", build, ctx.options)


OPERATION = Operation(
    name="linux-shell-history",
    description="remove shell and REPL histories (bash, zsh, fish, python, mysql, psql, less) "
    "of root and every user",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=HygieneOptions,
)
