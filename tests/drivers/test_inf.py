"""INF parsing and Models selection, on the real INF files and on small hand-made ones."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from tests.drivers.conftest import stamp

from reseal.drivers.inf import load_inf, parse_inf_bytes, parse_inf_text
from reseal.drivers.select import WindowsVersion, parse_decoration, select_models
from reseal.errors import CorruptData

WIN7_X86 = WindowsVersion(6, 1, 7601, "x86")
WIN7_X64 = WindowsVersion(6, 1, 7601, "amd64")
WIN10_1709 = WindowsVersion(10, 0, 16299, "amd64")
WIN10_1607 = WindowsVersion(10, 0, 14393, "amd64")
WIN11_24H2 = WindowsVersion(10, 0, 26100, "amd64")
WIN10_ARM = WindowsVersion(10, 0, 19041, "arm64")


def real_infs(shared_dir: Path) -> list[Path]:
    found = sorted(p for p in (shared_dir / "inf").rglob("*")
                   if p.suffix.lower() in (".inf", ".inx") or p.name == "netkvm-base.txt")
    assert len(found) >= 15, found
    return found


def test_every_real_inf_parses_into_the_typed_model(shared_dir: Path) -> None:
    for path in real_infs(shared_dir):
        inf = load_inf(path)
        version = inf.version()
        assert version.class_name, path
        assert version.class_guid.startswith("{") and len(version.class_guid) == 38, path
        assert version.catalog_files, path
        manufacturers = inf.manufacturers()
        assert manufacturers, path
        for manufacturer in manufacturers:
            for decoration in manufacturer.decorations:
                models = inf.models(f"{manufacturer.models_section}.{decoration}")
                assert models and all(m.install_section for m in models), (path, decoration)
                for model in models:
                    section = inf.install_section(model.install_section, "amd64")
                    assert section.copy_files or section.services or path.name in (
                        "TrEEMiniportSample.inf",), (path, model)


def test_netkvm_template_is_built_from_its_two_parts(shared_dir: Path) -> None:
    base = (shared_dir / "inf/virtio-win/netkvm-base.txt").read_bytes()
    uso = (shared_dir / "inf/virtio-win/netkvm-add-uso.txt").read_bytes()
    inf = parse_inf_bytes(base + b"\n" + uso, Path("netkvm.inx"))
    assert inf.is_template
    alone = parse_inf_bytes(base, Path("netkvm.inx"))
    added = [f for _k, f, _n in inf.entries("kvmnet6.Reg") if "*UsoIPv4" in f[1]]
    assert added and not [f for _k, f, _n in alone.entries("kvmnet6.Reg") if "*UsoIPv4" in f[1]]
    assert added[0][2:] == ["ParamDesc", "0", "UDP Segmentation Offload (IPv4)"]
    with pytest.raises(CorruptData, match=r"netkvm-add-uso.txt:1: text before the first"):
        load_inf(shared_dir / "inf/virtio-win/netkvm-add-uso.txt")


def test_viostor_typed_values(shared_dir: Path) -> None:
    inf = load_inf(shared_dir / "inf/smtomes-public/viostor.inf")
    version = inf.version()
    assert (version.class_name, version.class_guid, version.provider) == (
        "SCSIAdapter", "{4D36E97B-E325-11CE-BFC1-08002BE10318}", "Red Hat, Inc.")
    assert version.driver_date == date(2021, 8, 30)
    assert version.driver_version == (100, 85, 104, 20800)
    assert version.catalog_files == {"": "viostor.cat"}
    models = inf.models("VioStor.NTamd64.6.3")
    assert [m.hardware_id for m in models] == [
        "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",
        "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01"]
    assert models[0].compatible_ids == ("PCI\\VEN_1AF4&DEV_1001",)
    section = inf.install_section("scsi_inst", "amd64")
    assert [c.destination for c in section.copy_files] == ["viostor.sys"]
    assert inf.destination_dir("viostor_Files_Driver") == (12, "")
    (service,) = section.services
    assert (service.name, service.flags) == ("viostor", 2)
    assert service.spec is not None
    assert (service.spec.service_type, service.spec.start_type, service.spec.error_control,
            service.spec.service_binary, service.spec.load_order_group) == (
        1, 0, 1, "%12%\\viostor.sys", "SCSI miniport")
    # %% is a literal percent sign inside a substituted AddReg line
    event_log = [f for k, f, _n in inf.entries("scsi_EventLog_AddReg") if k is None]
    assert event_log[0][4] == "%SystemRoot%\\System32\\IoLogMsg.dll"


def test_utf16_inf_reads_like_utf8(shared_dir: Path) -> None:
    path = shared_dir / "inf/windows-driver-samples/netvadapter.inf"
    assert path.read_bytes()[:2] == b"\xff\xfe"
    inf = load_inf(path)
    assert inf.encoding == "utf-16"
    assert inf.version().provider == "Microsoft"
    again = parse_inf_bytes(path.read_bytes().decode("utf-16").encode("utf-8"), path)
    assert again.entries("netvadapter.ndi") == inf.entries("netvadapter.ndi")


def test_grammar_details() -> None:
    text = (
        "; leading comment\n"
        "[version]\n"
        'signature = "$Windows NT$"  ; comment\n'
        "Provider=%Who%\n"
        "[Strings]\n"
        'Who = "A; not a comment, and a ""quote"""\n'
        "[Strings.0407]\n"
        'Who = "German"\n'
        "[Many]\n"
        "key = one, \\\n"
        "      two , \"th,ree\"\n"
        "%Who% = 100%%\n"
    )
    inf = parse_inf_text(text, Path("g.inf"))
    assert inf.version().provider == 'A; not a comment, and a "quote"'
    assert inf.values("MANY", "KEY") == [(["one", "two", "th,ree"], 10)]
    assert inf.entries("many")[1][:2] == ('A; not a comment, and a "quote"', ["100%"])
    german = parse_inf_text(text, Path("g.inf"), locale="0407")
    assert german.version().provider == "German"


@pytest.mark.parametrize(("text", "line", "what"), [
    ("[Version]\nSignature=x\n[Broken\n", 3, "no closing"),
    ("junk before\n[Version]\n", 1, "before the first"),
    ('[Version]\nProvider="open\n', 2, "unterminated"),
    ("[Version]\nDriverVer=13/45/2020,1.0\n", 2, "DriverVer date"),
    ("[Version]\nDriverVer=01/01/2020,1.x.0\n", 2, "DriverVer version"),
    ("[Version]\n= value\n", 2, "no key"),
    ("[Version]\n[Manufacturer]\n%M% = \n", 3, "names no Models"),
])
def test_malformed_inf_names_file_and_line(text: str, line: int, what: str) -> None:
    with pytest.raises(CorruptData, match=rf"bad\.inf:{line}: .*{what}"):
        inf = parse_inf_text(text, Path("bad.inf"))
        inf.version()
        inf.manufacturers()


def test_binary_junk_is_not_an_inf() -> None:
    with pytest.raises(CorruptData, match="NUL bytes"):
        parse_inf_bytes(b"[Version]\x00\x01", Path("x.inf"))


def test_decoration_fields() -> None:
    d = parse_decoration("NTamd64.10.0...16299")
    assert (d.arch, d.major, d.minor, d.product_type, d.suite_mask, d.build) == (
        "amd64", 10, 0, None, None, 16299)
    d = parse_decoration("NT.6.1.3")
    assert (d.arch, d.major, d.minor, d.product_type) == ("", 6, 1, 3)
    with pytest.raises(CorruptData, match="unknown architecture"):
        parse_decoration("NTmips", "x.inf:3")


def test_ndisprot_picks_the_most_specific_os_section(shared_dir: Path, tmp_path: Path) -> None:
    text = stamp((shared_dir / "inf/windows-driver-samples/ndisprot.inx").read_text(), "amd64")
    inf = parse_inf_text(text, tmp_path / "ndisprot.inf")
    assert not inf.is_template

    def chosen(target: WindowsVersion) -> str:
        selection = select_models(inf, target)
        return selection.choices[0].section if selection.applies else selection.skipped_reason

    assert chosen(WIN11_24H2) == "Standard.NTamd64.10.0...25341"
    assert chosen(WIN10_1709) == "Standard.NTamd64.10.0"
    assert chosen(WIN7_X64) == "Standard.NTamd64.6.1"
    assert "is for amd64, the image is x86" in chosen(WIN7_X86)
    assert "is for amd64, the image is arm64" in chosen(WIN10_ARM)


def test_build_number_and_architecture_rules(shared_dir: Path) -> None:
    text = stamp((shared_dir / "inf/windows-driver-samples/netvmini680.inf").read_text(),
                 "amd64")
    inf = parse_inf_text(text, Path("netvmini680.inf"))
    assert select_models(inf, WIN10_1709).applies
    skipped = select_models(inf, WIN10_1607)
    assert not skipped.applies and "needs build 16299 or later" in skipped.skipped_reason
    arm = load_inf(shared_dir / "inf/netkvm4m1/netkvm.inf")
    assert select_models(arm, WIN10_ARM).choices[0].section == "NetKVM.NTARM64.10.0"
    assert "is for arm64" in select_models(arm, WIN10_1709).skipped_reason
    toast = load_inf(shared_dir / "inf/windows-driver-samples/toastpkg.inf")
    assert select_models(toast, WIN7_X86).choices[0].section == "ToastRUs.NTx86"
    assert select_models(toast, WIN10_1709).choices[0].section == "ToastRUs.NTamd64"
    viostor = load_inf(shared_dir / "inf/smtomes-public/viostor.inf")
    assert "needs Windows NT 6.3 or later" in select_models(viostor, WIN7_X64).skipped_reason


def test_undecorated_models_apply_to_x86_only() -> None:
    text = ("[Version]\nClass=System\n[Manufacturer]\n%M%=Models\n"
            "[Models]\nDev = Inst, ROOT\\DEV\n[Strings]\nM=\"m\"\n")
    inf = parse_inf_text(text, Path("old.inf"))
    assert select_models(inf, WIN7_X86).choices[0].section == "Models"
    assert "only x86 Windows uses" in select_models(inf, WIN7_X64).skipped_reason


def test_templates_are_parsed_but_not_selected(shared_dir: Path) -> None:
    for name in ("virtio-win/viostor.inx", "windows-driver-samples/echo.inx",
                 "windows-driver-samples/lsi_u3.inf"):
        inf = load_inf(shared_dir / "inf" / name)
        assert inf.is_template
        assert "INF template" in select_models(inf, WIN10_1709).skipped_reason
