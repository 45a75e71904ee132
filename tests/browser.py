"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``; browsers cannot be
downloaded here) driven by Selenium, and the sandbox page as a person uses it: pick a user,
type in the composer, click a message's button, read the cards and the ground-truth panel.

Every wait is on the page's DOM, with a deadline; never a fixed sleep.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

INSTALL = "apt-get install -y chromium chromium-driver (and pip install -r requirements-dev.txt)"
DEADLINE_S = 90.0  # generous: two cores shared by a whole team's test runs
SETTLE_S = 5.0  # a change the server made reaches the page within a few event-stream polls
# Quiet, offline, throwaway: on this closed network anything else floods refused connections.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
    "--lang=en-US",
)


def require_browser() -> tuple[str, str]:
    """Chromium's and chromedriver's paths; outside CI a missing browser skips with what to
    install (in CI, .ci/run installs it, so it fails there)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if chromium and driver:
        return chromium, driver
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests need Chromium, its driver and Selenium: {INSTALL}")
    pytest.skip(f"browser tests skipped: {INSTALL}")


@contextmanager
def chromium() -> Iterator[Any]:
    binary, driver_path = require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="runback-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class PageUser:
    """One person at the sandbox page in the browser."""

    def __init__(self, driver: Any, url: str, shots: Path) -> None:
        self.driver = driver
        self.url = url
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    # -- waiting ------------------------------------------------------------------------------

    def poll(self, condition: Callable[[Any], Any], timeout: float) -> Any:
        """What ``condition`` returns once it is truthy; None after ``timeout`` seconds."""
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
            TimeoutException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        waiting = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.1,
            ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
        )
        try:
            return waiting.until(condition)
        except TimeoutException:
            return None

    def until(self, condition: Callable[[Any], Any], what: str, timeout: float = DEADLINE_S) -> Any:
        found = self.poll(condition, timeout)
        if not found:
            self.screenshot("timed-out")
            log = self.driver.find_element("id", "log").text
            raise AssertionError(f"waited {timeout:.0f}s for {what}; console log:\n{log}")
        return found

    def press(self, selector: str) -> None:
        """Click the element ``selector`` finds, found again if the page redrew it meanwhile
        (the sidebar and the panel are redrawn on every update)."""

        def click(d: Any) -> bool:
            d.find_element("css selector", selector).click()
            return True

        self.until(click, f"a click on {selector}")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    # -- acting -------------------------------------------------------------------------------

    def open(self) -> PageUser:
        self.driver.get(self.url)
        self.until(lambda d: self.js("return document.body.classList.contains('ready')"), "page")
        self.js("window.__sameDocument = true")  # gone if the page ever reloads
        return self

    def still_same_document(self) -> bool:
        return bool(self.js("return window.__sameDocument === true"))

    def act_as(self, name: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element("id", "user")).select_by_value(name)
        self.until(lambda d: self.js("return document.body.dataset.user") == name, f"user {name}")
        self.idle()

    def type(self, line: str) -> None:
        from selenium.webdriver.common.keys import Keys

        composer = self.driver.find_element("id", "composer-input")
        composer.send_keys(line + Keys.ENTER)

    def idle(self) -> None:
        self.until(
            lambda d: not self.driver.find_element("id", "status-busy").is_displayed(), "idle"
        )

    def click(self, label: str, on: str, pane: str = "messages", confirm: bool = True) -> None:
        """Click ``label`` on the newest message in ``pane`` showing ``on`` and having that
        button; accept its confirm dialog when it has one."""

        def press(_: Any) -> bool:
            for message in reversed(self.driver.find_elements("css selector", f"#{pane} .msg")):
                if on not in message.text:
                    continue
                for button in message.find_elements("css selector", ".bk-button"):
                    if button.text == label:
                        button.click()
                        return True
            return False

        self.until(press, f"button {label!r} on a message with {on!r}")
        if confirm and self.js("return !document.getElementById('confirm').hidden"):
            self.screenshot_once("confirm-dialog")
            self.press("#confirm-yes")

    def message(self, text: str, pane: str = "messages", timeout: float = DEADLINE_S) -> Shown:
        """The newest message in ``pane`` whose text contains ``text``, once there is one."""

        def find(_: Any) -> Any:
            found = [
                m
                for m in self.driver.find_elements("css selector", f"#{pane} .msg")
                if text in m.text
            ]
            return found[-1].get_attribute("data-key") if found else None

        key = self.until(find, f"a message with {text!r} in #{pane}", timeout)
        return Shown(self, f'#{pane} .msg[data-key="{key}"]')

    def wait_until(self, text: str, step: str, most: int = 4) -> Any:
        """Let sandbox time pass (the panel's ``+step`` button), a step at a time, until a
        message shows ``text``; at most ``most`` steps."""
        for _ in range(most - 1):
            self.press(f'[data-wait="{step}"]')
            self.idle()
            if self.poll(lambda d: self.messages_with(text), timeout=SETTLE_S):
                return self.message(text)
        self.press(f'[data-wait="{step}"]')
        return self.message(text)

    def click_replies(self, text: str) -> None:
        """Open the thread of the newest message showing ``text``, once it has replies."""

        def press(_: Any) -> bool:
            for message in reversed(self.messages_with(text)):
                for link in message.find_elements("css selector", ".msg-replies"):
                    link.click()
                    return True
            return False

        self.until(press, f"the thread of a message with {text!r}")

    def messages_with(self, text: str) -> list[Any]:
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(10):  # a message redrawn while it is read: read the list again
            try:
                found = self.driver.find_elements("css selector", "#messages .msg")
                return [m for m in found if text in m.text]
            except StaleElementReferenceException:
                continue
        raise AssertionError(f"the messages with {text!r} kept changing while read")

    def percent(self, service: str, revision_prefix: str) -> dict[str, int]:
        """The ground-truth panel: revision -> percent, for revisions starting with the prefix
        (read in one script: the panel is redrawn as the truth changes)."""
        rows = self.js(
            "return [...document.querySelectorAll(arguments[0])]"
            ".map(row => [row.dataset.revision, row.dataset.percent])",
            f'.service[data-service="{service}"] tr[data-revision]',
        )
        return {
            str(revision): int(percent or 0)
            for revision, percent in rows
            if str(revision).startswith(revision_prefix)
        }

    def wait_percent(self, service: str, revision: str, percent: int) -> None:
        self.until(
            lambda d: any(v == percent for v in self.percent(service, revision).values()),
            f"{revision} at {percent}% in the panel",
        )

    def screenshot_once(self, name: str) -> None:
        if not (self.shots / f"{name}.png").exists():
            self.screenshot(name)

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


class Shown:
    """A message on the page, found again at every use: the page draws a new node for a
    message each time the bot edits it, so an element read a moment ago may be gone."""

    def __init__(self, page: PageUser, selector: str) -> None:
        self.page, self.selector = page, selector

    def _read(self, read: Callable[[Any], Any], what: str) -> Any:
        return self.page.until(
            lambda d: (read(d.find_element("css selector", self.selector)),), what
        )[0]

    @property
    def text(self) -> str:
        return str(self._read(lambda node: node.text, f"the text of {self.selector}"))

    def find_element(self, by: str, value: str) -> Any:
        return self._read(lambda node: node.find_element(by, value), f"{value} in the message")

    def find_elements(self, by: str, value: str) -> list[Any]:
        return list(self._read(lambda node: node.find_elements(by, value), value))
