"""Fixtures of the SegNets Web tests: a real Chromium (Debian's) driven by Playwright."""

from __future__ import annotations

import pytest
from web_helpers import CHROMIUM_ARGS, ensure_chromium, ensure_playwright


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the module's tests (web_helpers.ensure_chromium: Debian's, never a download)."""
    chromium = ensure_chromium()
    ensure_playwright()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
