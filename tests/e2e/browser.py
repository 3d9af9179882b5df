"""The real browser the UI tests drive: Debian's Chromium (/usr/bin/chromium, installed by
include/stack/install.sh), through Playwright; Playwright's own browser downloads are never used."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Root in a closed network: no sandbox (needs user namespaces), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: install the Debian package `chromium` (include/stack/install.sh does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


@contextmanager
def screenshot_on_failure(page: Page, path: Path):
    try:
        yield
    except BaseException:
        page.screenshot(path=str(path), full_page=True)
        raise


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url)
    # The simple auth manager redirects anonymous visitors to its own login form.
    expect(page.get_by_role("heading", name="Sign into Airflow")).to_be_visible()
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Dags")).to_be_visible()
    assert "/auth/login" not in page.url, f"still on the login page after signing in: {page.url}"
