"""The `reseal` command line.

Each subcommand lives in its own module in this package with a `register(subparsers)`
function that adds its parser and sets `handler` to a function `(args) -> int`.
Exit codes: 0 success, 1 the work failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from reseal import __version__
from reseal.errors import ResealError
from reseal.formatting import terminal_lines, terminal_safe

# Modules that provide subcommands, in the order `reseal --help` lists them.
COMMAND_MODULES = (
    "inspect_cmd",
    "generalize_cmd",
    "verify_cmd",
    "undo_cmd",
    "operations_cmd",
    "batch_cmd",
    "drivers_cmd",
    "hive_cmd",
    "domain_cmd",
    "audit_cmd",
)


class Terminated(BaseException):
    """Raised on SIGTERM so that every context manager releases what it holds."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _modules_for(argv: Sequence[str] | None) -> tuple[str, ...]:
    """Only the named subcommand's module: importing all of them (regipy, the driver and
    inspection code) costs more than a Linux run's own work. Help and typos get all."""
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    if first is not None and f"{first}_cmd" in COMMAND_MODULES and "-h" not in words[:1]:
        return (f"{first}_cmd",)
    return COMMAND_MODULES


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reseal",
        description="Give a cloned disk image (Windows or Linux) an identity of its own, offline.",
    )
    parser.add_argument("--version", action="version", version=f"reseal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_modules_for(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.handler(args) or 0)
    except ResealError as exc:
        # one line, whatever an image put into the message; a list of answer-file errors
        # keeps one line per error
        shown = terminal_lines(exc) if getattr(exc, "errors", None) else terminal_safe(exc)
        print(f"reseal: error: {shown}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("reseal: interrupted; everything attached was released", file=sys.stderr)
        return 130
    except Terminated:
        print("reseal: terminated; everything attached was released", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return 1
    except OSError as exc:
        # a file that could not be read or written (a full disk, a vanished mount): one
        # line naming it, as for every other failure
        print(f"reseal: error: {terminal_safe(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
