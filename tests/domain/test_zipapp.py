"""The first-boot zipapp: self-contained (no module from outside it but the standard library),
runs on an older python3 than the imaging host's, and derives the same keys there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reseal.domain import krbkeys
from reseal.domain.hook import zipapp_bytes

OLD_PYTHONS = ["python3.8", "python3.9", "python3.10"]


def find_python(name: str) -> str | None:
    """A real interpreter of that version (pyenv's shims only work where one is selected)."""
    found = shutil.which(name)
    if found and "/shims/" not in found:
        return found
    for candidate in sorted(Path.home().glob(f".pyenv/versions/{name[6:]}.*/bin/{name}")):
        return str(candidate)
    return None


def zipapp(tmp_path: Path, compiled: bool = False) -> Path:
    path = tmp_path / "reseal-firstboot.pyz"
    path.write_bytes(zipapp_bytes(compiled))
    return path


def run_isolated(python: str, app: Path, code: str) -> subprocess.CompletedProcess[str]:
    # -I -S: no site-packages, no user paths: only the zipapp and the standard library
    return subprocess.run([python, "-I", "-S", "-c",
                           f"import sys; sys.path.insert(0, {str(app)!r})\n{code}"],
                          capture_output=True, text=True, timeout=120)


def test_self_contained_and_stable(tmp_path: Path) -> None:
    app = zipapp(tmp_path)
    assert zipapp_bytes() == app.read_bytes()  # byte-for-byte the same each build
    names = zipfile.ZipFile(app).namelist()
    assert "__main__.py" in names and "ldap3/__init__.py" in names
    assert "pyasn1/__init__.py" in names and "reseal/domain/ldapacct.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    assert not [n for n in names if n.startswith(("impacket", "reseal/pipeline", "reseal/image"))]
    code = ("import reseal.domain.firstboot, reseal.domain.ldapacct, ldap3\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('impacket', 'Cryptodome', "
            "'yaml', 'regipy')]\nprint('foreign', bad)")
    result = run_isolated(sys.executable, app, code)
    assert result.returncode == 0 and "foreign []" in result.stdout, result.stderr
    compiled = zipapp(tmp_path / "c" if (tmp_path / "c").mkdir() is None else tmp_path, True)
    assert "reseal/domain/ldapacct.pyc" in zipfile.ZipFile(compiled).namelist()
    assert run_isolated(sys.executable, compiled, "import ldap3").returncode == 0


@pytest.mark.parametrize("python", OLD_PYTHONS)
def test_runs_on_older_python(python: str, tmp_path: Path) -> None:
    found = find_python(python)
    if found is None:
        pytest.skip(f"{python} is not installed here")
    app = zipapp(tmp_path, compiled=True)  # bytecode of another version is ignored
    salt = krbkeys.computer_salt("RESEAL.TEST", "old1")
    code = ("from reseal.domain import krbkeys\n"
            f"keys = krbkeys.derive_keys('x' * 120, {salt!r}, [18, 17, 23])\n"
            "print(' '.join(k.key.hex() for k in keys))")
    result = run_isolated(found, app, code)
    assert result.returncode == 0, result.stderr
    expected = krbkeys.derive_keys("x" * 120, salt, [18, 17, 23])
    assert result.stdout.split() == [k.key.hex() for k in expected]
    program = subprocess.run([found, "-I", str(app), "--root", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert program.returncode == 1 and "cannot read /etc/reseal/firstboot.json" in program.stdout
