"""The command line loads only the subcommand it runs, yet help and typos see all of them."""

from __future__ import annotations

import subprocess
import sys

from reseal.cli import COMMAND_MODULES

COMMANDS = [name.removesuffix("_cmd") for name in COMMAND_MODULES]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)


def test_top_level_help_lists_every_command() -> None:
    done = _python("from reseal.cli import main; main(['--help'])")
    assert done.returncode == 0
    for command in COMMANDS:
        assert f"    {command}" in done.stdout


def test_one_command_does_not_import_the_others() -> None:
    done = _python(
        "import sys\nfrom reseal.cli import main\n"
        "try:\n    main(['generalize', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(('reseal.cli.', 'regipy',"
        " 'reseal.drivers', 'reseal.inspection'))))"
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split("LOADED", 1)[1]
    assert "reseal.cli.generalize_cmd" in loaded
    for other in ("inspect_cmd", "batch_cmd", "drivers_cmd", "hive_cmd", "regipy",
                  "reseal.inspection"):
        assert other not in loaded


def test_unknown_command_is_refused_with_the_list() -> None:
    done = _python("from reseal.cli import main; raise SystemExit(main(['genralize', 'x']))")
    assert done.returncode == 2
    assert "invalid choice: 'genralize'" in done.stderr
    assert "'generalize'" in done.stderr and "'hive'" in done.stderr
