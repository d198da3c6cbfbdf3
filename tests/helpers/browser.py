"""A real headless Chromium (Debian's `chromium` with its `chromium-driver`), driven by Selenium.

Selenium blocks; the service under test runs in the test's event loop, so every browser call
goes through asyncio.to_thread (otherwise the page could never load). Screenshots go to
test-artifacts/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class Browser:
    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def text(self, css: str) -> str | None:
        """The element's text, or None while it is not on the page."""

        def read() -> str | None:
            try:
                return str(self.driver.find_element(By.CSS_SELECTOR, css).text)
            except (NoSuchElementException, StaleElementReferenceException):
                return None

        return await self.call(read)

    async def until_text(
        self, css: str, wanted: Callable[[str], bool], timeout: float = 10.0
    ) -> str:
        last = None
        for _ in range(int(timeout / 0.1)):
            last = await self.text(css)
            if last is not None and wanted(last):
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{css}: {last!r} not as wanted within {timeout}s")

    async def fill(self, css: str, value: str) -> None:
        def do() -> None:
            element = self.driver.find_element(By.CSS_SELECTOR, css)
            element.clear()
            element.send_keys(value)

        await self.call(do)

    async def click(self, css: str) -> None:
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def source(self) -> str:
        return str(await self.call(lambda: self.driver.page_source))

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.call(self.driver.save_screenshot, str(path))
        return path


@asynccontextmanager
async def chromium(width: int = 1600, height: int = 1000) -> AsyncIterator[Browser]:
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver_path, "Debian's chromium and chromium-driver (scripts/bootstrap.sh)"
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    service = Service(executable_path=driver_path)  # the system driver: nothing downloaded
    driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=service)
    try:
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)
