"""Bad packages: one clear error (exit 2), and not one byte of the image changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.drivers.conftest import SAMPLES, Image, package_from_inf, snapshot

from reseal.cli import main


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESEAL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def storage_sample(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    """A copy of the sample storage package, with one text replacement in its INF."""
    dest = tmp_path / "pkg"
    shutil.copytree(SAMPLES / "resealstor", dest)
    if edit is not None:
        inf = dest / "resealstor.inf"
        text = inf.read_text()
        assert edit[0] in text, edit
        inf.write_text(text.replace(edit[0], edit[1]))
    return dest / "resealstor.inf"


def refused(image: Image, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `drivers add`; it must exit 2 with a one-line error and leave the image as it was."""
    before = snapshot(image.root)
    code = main(["drivers", "add", str(image.root), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert snapshot(image.root) == before
    assert err.startswith("reseal: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(("edit", "message"), [
    (("resealstor.sys,,,2", "resealstor.sys,..\\..\\evil.sys,,2"), "climbs out of the package"),
    (("resealstor.sys,,,2", "..\\..\\resealstor.sys,,,2"), "must be a plain file name"),
    (("resealstor.sys = 1,,", "..\\..\\x.sys = 1,,"), "climbs out of the package"),
    (("resealstor.sys = 1,,", "C:\\Windows\\x.sys = 1,,"), "absolute path"),
    (("resealstor.sys = 1,,", "resealstor.sys = 1,..\\..\\.."), "climbs out"),
    (('1 = %DiskName%,,,""', '1 = %DiskName%,,,"C:\\pkg"'), "absolute path"),
    (("resealstor.sys,,,2", "\\\\server\\share\\x.sys,,,2"), "plain file name"),
])
def test_path_traversal_is_refused(make_image, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   edit: tuple[str, str], message: str) -> None:
    image: Image = make_image("win10")
    err = refused(image, capsys, str(storage_sample(tmp_path, edit)))
    assert message in err and "resealstor.inf" in err


def test_missing_file(make_image, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win10")
    inf = storage_sample(tmp_path)
    (inf.parent / "resealstor.sys").unlink()
    err = refused(image, capsys, str(inf))
    assert "resealstor.sys" in err and "missing" in err


def test_missing_catalog(make_image, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win10")
    inf = storage_sample(tmp_path)
    (inf.parent / "resealstor.cat").unlink()
    assert "catalog resealstor.cat" in refused(image, capsys, str(inf))


def test_wrong_architecture(make_image, shared_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win7")  # x86
    inf = package_from_inf(shared_dir / "inf/python-opsi/vioscsi_amd64.inf", tmp_path / "p")
    err = refused(image, capsys, str(inf))
    assert "NTamd64.6.3 is for amd64, the image is x86" in err


def test_unsigned_needs_allow_unsigned(make_image, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win10")
    inf = storage_sample(tmp_path, ("CatalogFile = resealstor.cat\n", ""))
    assert "--allow-unsigned" in refused(image, capsys, str(inf))
    assert main(["drivers", "add", str(image.root), str(inf), "--allow-unsigned"]) == 0


def test_existing_service_is_not_replaced(make_image, shared_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win10")
    inf = package_from_inf(shared_dir / "inf/windows-driver-samples/diskdev.inf", tmp_path / "p")
    err = refused(image, capsys, str(inf), "--boot-critical")
    assert "service disk already exists" in err


def test_template_and_bad_inf(make_image, shared_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win10")
    assert "INF template" in refused(image, capsys,
                                     str(shared_dir / "inf/virtio-win/viostor.inx"))
    assert "INF template" in refused(
        image, capsys, str(shared_dir / "inf/windows-driver-samples/lsi_u3.inf"))
    broken = storage_sample(tmp_path, ("[Manufacturer]", "[Manufacturer"))
    assert "resealstor.inf:24: section header" in refused(image, capsys, str(broken))
    assert "no such driver package" in refused(image, capsys, str(tmp_path / "nowhere"))


def test_folder_with_nothing_for_this_image(make_image, shared_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win7")
    folder = tmp_path / "pack"
    package_from_inf(shared_dir / "inf/netkvm4m1/netkvm.inf", folder / "netkvm")
    err = refused(image, capsys, str(folder))
    assert "no driver package fits" in err and "is for arm64" in err


def test_remove_unknown_package(make_image, capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win10")
    before = snapshot(image.root)
    assert main(["drivers", "remove", str(image.root), "oem99.inf"]) == 2
    assert main(["drivers", "remove", str(image.root), "..\\x.inf"]) == 2
    assert snapshot(image.root) == before


def test_package_file_linking_out_of_the_package(make_image, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    image: Image = make_image("win10")
    inf = storage_sample(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of any package\n")
    (inf.parent / "resealstor.sys").unlink()
    (inf.parent / "resealstor.sys").symlink_to(outside)
    assert "leaves the driver package" in refused(image, capsys, str(inf))
