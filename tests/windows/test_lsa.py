"""reseal.windows.lsa: Windows-made test vectors, own round trips, and impacket reading back
what reseal wrote into the real SECURITY hives of ../shared (both key forms)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conftest import copy_maybe_xz

from reseal.errors import BadInput
from reseal.registry import Hive
from reseal.windows.lsa import (
    LsaForm,
    LsaKey,
    LsaSecrets,
    aes_decrypt_value,
    boot_key,
    delete_secret,
    des_decrypt_value,
    des_encrypt_value,
    install_lsa_key,
    read_lsa_key,
    scramble_boot_key,
    secret_changed,
    secret_names,
)

from .helpers import load_builder
from .lsa_helpers import (
    REAL_SECURITY,
    expected_lines,
    impacket_dump,
    known_value,
    make_consistent,
)

# Values Windows itself wrote, as published with dissect.target's LSA plugin tests
# (tests/plugins/os/windows/credential/test_lsa.py): Lsa class names, the stored PolEKList /
# PolSecretEncryptionKey and DPAPI_SYSTEM, and what they decrypt to.
WIN10_CLASSES = ("51fe8c74", "3e14f655", "7bf5e093", "3b03ce4f")
WIN10_POLEKLIST = bytes.fromhex(
    "00000001ecffe17b2a997440aa939adbff26f1fc030000000000000061f61040"
    "72b7b9117289a891bc1edb9fa83fafae5d8648b8674825dc9bdcf1bf5ffbe591"
    "27fd3a1baca6c5447530574c27a41ab721b13e54a9af857e682b8458859c0fab"
    "55461a8f1b2b8c12d8f186a80991012e2d3ede5b1167554c726e404ed0eb96f6"
    "488b90ece5b0b3ef9bf244f35dd65a30b2b450c4e227838810b631564b89300e"
    "d4355040f23890f8b6b8eab8")
WIN10_LSA_KEY = "26c34326a9f1d8db4f465487857d47d1481f0040c6becc8c65862c0cfb210631"
WIN10_DPAPI = bytes.fromhex(
    "00000001001f9b85984f68a8ed3e9d44dbd5b79c0300000000000000835b4ff6"
    "6e74154ffab75afd31a2860616c87411bc97d368a068fca62d1564ae1396f88e"
    "06de87b5e5632c668538ee36c75f67cee98d49ebc1e88fa7e9be16144af31e8e"
    "5fd78329279e50d792e8a6b35a59cb55016748ecd8e12f148b1d32b3")
WIN10_DPAPI_CLEAR = bytes.fromhex(
    "010000003ac5746c27b424489300a781ba237676da7605083e7947c67271c16fc84cc567870148931cf29eb8")
XP_CLASSES = ("8397b619", "9dfad6c8", "36ec555b", "0e1eaddb")
XP_POLSECRET = bytes.fromhex(
    "0100000001000000000000003e4253c6ab72f73306ffe45a33a4ec5d47d21483"
    "85be6036b4c5bab2666d7f5793f23fed8513577b79abddb40eaa92c7a19b34ab"
    "b9c134e88bf5dd2b2fbf6356")
XP_LSA_KEY = "e32851688cf1e05b1da350682a2e07d2"
XP_DPAPI = bytes.fromhex(
    "3800000038000020acb90c00a26440bdf0382bdbcb5d51a743cb4cca01cfecb3"
    "202848e00dfae25f8f0f3f4710ff37828532b5f600e97f6a00528fd8e0137f49"
    "6fd2d905")
XP_DPAPI_CLEAR = bytes.fromhex(
    "010000000307e7679d5bc2d7a2212e216d527af1687f7183333dac1af5cc9d33ccd97238f3a25ebfaec94ac6")


def _system_with_classes(classes: tuple[str, str, str, str]) -> Hive:
    builder = load_builder()
    return builder.build_system(builder.Machine(lsa_classes=classes))


def _security_with(path: str, data: bytes) -> Hive:
    hive = load_builder().new_hive("SECURITY")
    hive.create_key(path).set_value("", 0, data)
    return hive


def test_windows_vectors_aes_form() -> None:
    boot = boot_key(_system_with_classes(WIN10_CLASSES))
    assert boot.hex() == "7b143e8c93f5037451f6fe3bcee04f55"
    assert scramble_boot_key(boot) == WIN10_CLASSES
    security = _security_with("Policy\\PolEKList", WIN10_POLEKLIST)
    lsa_key = read_lsa_key(security, boot)
    assert lsa_key.form is LsaForm.AES and lsa_key.key.hex() == WIN10_LSA_KEY
    assert aes_decrypt_value(lsa_key.key, WIN10_DPAPI, where="DPAPI_SYSTEM") == WIN10_DPAPI_CLEAR


def test_windows_vectors_rc4_form() -> None:
    boot = boot_key(_system_with_classes(XP_CLASSES))
    security = _security_with("Policy\\PolSecretEncryptionKey", XP_POLSECRET)
    lsa_key = read_lsa_key(security, boot)
    assert lsa_key.form is LsaForm.RC4 and lsa_key.key.hex() == XP_LSA_KEY
    assert des_decrypt_value(lsa_key.key, XP_DPAPI, where="DPAPI_SYSTEM") == XP_DPAPI_CLEAR
    # the writer makes the same bytes Windows made (the DES walk is deterministic)
    assert des_encrypt_value(lsa_key.key, XP_DPAPI_CLEAR)[12:] == XP_DPAPI[12:]


def test_wrong_boot_key_is_one_clear_error() -> None:
    security = _security_with("Policy\\PolEKList", WIN10_POLEKLIST)
    with pytest.raises(BadInput, match="different machines"):
        read_lsa_key(security, bytes(16))
    xp = _security_with("Policy\\PolSecretEncryptionKey", XP_POLSECRET)
    with pytest.raises(BadInput, match="different machines"):
        read_lsa_key(xp, bytes(16))


@pytest.mark.parametrize("form", [LsaForm.AES, LsaForm.RC4])
def test_write_read_delete_list(form: LsaForm) -> None:
    rng = random.Random(5)
    system = _system_with_classes(WIN10_CLASSES)
    security = load_builder().new_hive("SECURITY")
    lsa_key = install_lsa_key(security, boot_key(system), form,
                              random_bytes=lambda n: bytes(rng.getrandbits(8) for _ in range(n)))
    assert "key=" not in repr(lsa_key) and lsa_key.key.hex() not in repr(lsa_key)
    reopened = LsaSecrets.open(Hive.from_bytes(security.to_bytes()), boot_key(system))
    assert reopened.lsa_key == lsa_key
    lsa = LsaSecrets(security, lsa_key)
    when = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    for size in (0, 1, 15, 16, 17, 44, 64, 240):
        lsa.write(f"L$size{size}", bytes(range(size)), b"old" * size, when=when)
    lsa.write("only-current", b"now", None, when=when)
    hive = Hive.from_bytes(security.to_bytes())  # as written to disk
    again = LsaSecrets(hive, lsa_key)
    for size in (0, 1, 15, 16, 17, 44, 64, 240):
        secret = again.read(f"L$size{size}")
        assert secret is not None
        assert secret.current == bytes(range(size)) and secret.old == b"old" * size
        assert secret.current_time == when and secret.old_time == when
        assert str(bytes(range(size))) not in repr(secret) or size == 0
    only = again.read("only-current")
    assert only is not None and only.current == b"now" and only.old is None
    assert secret_changed(hive, "only-current") == when
    assert "only-current" in secret_names(hive)
    assert delete_secret(hive, "only-current") and again.read("only-current") is None
    assert hive.key("Policy\\Secrets\\L$size1\\SecDesc") is not None


def test_secret_under_another_key_id_is_refused() -> None:
    security = load_builder().new_hive("SECURITY")
    system = _system_with_classes(WIN10_CLASSES)
    first = install_lsa_key(security, boot_key(system))
    LsaSecrets(security, first).write("NL$KM", b"k" * 64)
    other = LsaKey(LsaForm.AES, first.key, bytes(16))
    with pytest.raises(BadInput, match="cannot be read"):
        LsaSecrets(security, other).read("NL$KM")


@pytest.fixture(scope="module")
def real_system(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """The dissect.regf SYSTEM (a real Windows 10 SYSTEM), decompressed once, and its boot key."""
    path = tmp_path_factory.mktemp("system") / "SYSTEM"
    copy_maybe_xz(shared_dir / "hives" / "dissect.regf" / "SYSTEM.xz", path)
    return path, boot_key(Hive.open(path))


# every real SECURITY in the AES form it has; the XP/2003 RC4 form on the two Windows 7 era ones
@pytest.mark.parametrize("security_path,form", [
    *[(path, LsaForm.AES) for path in REAL_SECURITY],
    ("dfwinreg/SECURITY", LsaForm.RC4), ("dfir-artifact-museum/Win7-EZ/SECURITY", LsaForm.RC4),
])
def test_impacket_reads_back_real_security(shared_dir: Path, real_system: tuple[Path, bytes],
                                           tmp_path: Path,
                                           security_path: str, form: LsaForm) -> None:
    """Every secret of a real SECURITY (and a new one) gets a known current and old value;
    impacket's offline dump, with the real SYSTEM's boot key, prints exactly those values."""
    config = tmp_path / "config"
    config.mkdir()
    system_path, boot = real_system
    (config / "SYSTEM").symlink_to(system_path)
    security = Hive.open(shared_dir / "hives" / security_path)
    lsa = make_consistent(security, boot, form)
    names = [*lsa.names(), "L$reseal-new"]
    for name in names:
        lsa.write(name, known_value(name, "cur"), known_value(name, "old"))
    security.save(config / "SECURITY")

    lines = impacket_dump(config)
    for name in names:
        for which, suffix in (("cur", ""), ("old", "_history")):
            for expected in expected_lines(name, known_value(name, which), suffix):
                assert any(line.endswith(expected) or line == expected for line in lines), \
                    (name, which, expected)
    # and reseal reads its own writing back from the saved file
    reread = LsaSecrets.open(Hive.open(config / "SECURITY"), boot)
    for name in names:
        secret = reread.read(name)
        assert secret is not None and secret.current == known_value(name, "cur")
