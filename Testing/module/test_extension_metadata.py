"""The top-level CMakeLists.txt carries what the Slicer Extensions Index checks before it lists the extension."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CMAKE = (ROOT / "CMakeLists.txt").read_text()
INDEX_LICENSE_NAMES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt")
RAW_URL = re.compile(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/main/(\S+)")


def _setting(name: str) -> str:
    match = re.search(rf'set\s*\({name}\s*"([^"]*)"\s*\)', CMAKE)
    assert match, f"{name} is not set in CMakeLists.txt"
    return match.group(1)


def test_the_repository_root_holds_the_license_the_index_requires():
    """The Index's check_license_file looks for one of these names in the repository root."""
    found = [name for name in INDEX_LICENSE_NAMES if (ROOT / name).is_file()]
    assert found, "no license file in the repository root"
    assert "Apache License" in (ROOT / found[0]).read_text() and "Version 2.0" in (ROOT / found[0]).read_text()


def test_the_project_is_named_as_the_extension_and_its_image_urls_name_files_of_the_repository():
    assert re.search(r"^project\(SegNets\)", CMAKE, re.MULTILINE)
    urls = [_setting("EXTENSION_ICONURL"), *_setting("EXTENSION_SCREENSHOTURLS").split()]
    for url in urls:
        match = RAW_URL.fullmatch(url)
        assert match, f"{url} is not a raw.githubusercontent.com download URL"
        assert (ROOT / match.group(1)).is_file(), f"{url} names {match.group(1)}, which is not in the repository"
