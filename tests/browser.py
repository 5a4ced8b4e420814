"""A real browser for the tests: Debian's Chromium driven by Selenium through Debian's chromedriver (given by
path; nothing is downloaded), headless, with its own empty profile. Failures keep a screenshot."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# The notebook a student makes in the browser tests: one cell whose output is easy to find.
CHECK_NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "check", "metadata": {}, "outputs": [],
                             "source": "print('answer', 6 * 7)"}],
                  "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                  "nbformat": 4, "nbformat_minor": 5}
CHECK_OUTPUT = "answer 42"
AXE = Path(__file__).resolve().parents[1] / "tools" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(os.environ.get("COURSEKIT_SCREENSHOTS", Path(__file__).resolve().parents[1] / "build" / "screenshots"))
# Without these, Chromium keeps calling out to Google's services, which this machine's closed network refuses.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
         "--window-size=1400,1000", "--ignore-certificate-errors")  # the gateways' internal CA


@contextlib.contextmanager
def chromium(profile: Path, name: str) -> Iterator[webdriver.Chrome]:
    """One headless Chromium with an empty profile; a screenshot in SCREENSHOTS/<name>.png if the block fails."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    except BaseException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(WebDriverException):
            driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        raise
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], object], timeout: float = 90, interval: float = 0.5):
    """check() until it returns something true (its value), else AssertionError naming what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except WebDriverException as exc:  # a page still loading, an element replaced while read
            last = exc
        time.sleep(interval)
    raise AssertionError(f"waited {timeout:.0f} s for {what}" + (f" (last: {str(last).splitlines()[0]})" if last else ""))


def lab_shown(driver: webdriver.Chrome) -> bool:
    """JupyterLab's shell is on the page and its launcher or file browser has drawn."""
    return bool(driver.find_elements(By.CSS_SELECTOR, "#jp-main-dock-panel")) and \
        bool(driver.find_elements(By.CSS_SELECTOR, ".jp-DirListing, .jp-Launcher"))


def run_first_cell_and_save(driver: webdriver.Chrome, expected: str, tries: int = 4) -> None:
    """In the open notebook: the first cell run (Shift+Enter) until its output shows expected, then Ctrl+S.
    While its kernel's first connection settles, JupyterLab 4 can drop an execution it was sent (the cell shows
    no count); a student presses Shift+Enter again, and so does this, up to `tries` times."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    wait_for("a kernel that is idle", lambda: _first(driver, ".jp-Notebook-ExecutionIndicator[data-status='idle']"),
             timeout=120)

    def shown() -> bool:
        return any(expected in e.text for e in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))

    for attempt in range(1, tries + 1):
        # The notebook redraws while its kernel connects: find the first cell's editor afresh until a click lands.
        wait_for("a click in the first cell", lambda: _click(driver, ".jp-Notebook .jp-Cell .cm-content"))
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        try:
            wait_for(f"the cell's output {expected!r}", shown, timeout=30 if attempt < tries else 90)
            break
        except AssertionError:
            if attempt == tries:
                raise
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()


def _click(driver: webdriver.Chrome, selector: str) -> bool:
    element = _first(driver, selector)
    if element is None:
        return False
    element.click()
    return True


def _first(driver: webdriver.Chrome, selector: str):
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found else None


def axe_violations(driver: webdriver.Chrome) -> list[dict]:
    """axe-core (npm, in tools/) run in the page: the serious and critical violations."""
    driver.execute_script(AXE.read_text())
    driver.set_script_timeout(60)
    result = driver.execute_async_script("const done = arguments[arguments.length - 1];"
                                         "axe.run(document).then(r => done(r.violations), e => done([{id: String(e)}]));")
    return [{"id": v["id"], "impact": v.get("impact"), "help": v.get("help")} for v in result
            if v.get("impact") in ("serious", "critical") or "impact" not in v]


def pdf_pages(pdf: bytes) -> int:
    """Pages of a PDF Chromium printed (its page objects)."""
    import re

    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
