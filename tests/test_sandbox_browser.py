"""The sandbox page in a real headless Chromium: the five walks of issue #19, each saving its
screenshots (under the test's tmp_path, in screenshots/), and every Block Kit template drawn by
the page's own renderer without falling back to raw JSON.

Skipped outside CI when Chromium or its driver is missing (tests/browser.py says what to
install); .ci/run installs them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.config import Config
from bot.render import LOCALES, Renderer
from bot.sandbox.console import Sandbox
from bot.sandbox.web import WebPage
from tests.browser import PageUser, chromium
from tests.conftest import sandbox_config
from tests.test_templates import MESSAGES, VIEWS

IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"
HOSTILE = "<img src=x onerror=window.__pwned=1> <script>window.__pwned=2</script>"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def start(config: Config) -> tuple[Sandbox, WebPage]:
    box = Sandbox(config, retry_deadline_s=1.5)
    return box, WebPage(box).start(0)


@pytest.fixture
def page(driver: Any, tmp_path: Path) -> Iterator[PageUser]:
    """The sandbox of tests (readiness does not block releases) and its page, opened."""
    box, web = start(sandbox_config())
    try:
        yield PageUser(driver, web.url, tmp_path / "screenshots").open()
    finally:
        web.stop()
        box.close()


@pytest.fixture
def shipped_page(driver: Any, tmp_path: Path) -> Iterator[PageUser]:
    """The sandbox as app.yaml ships it: a release is blocked until a tech lead overrides the
    rollback-readiness checklist (examples/release.txt)."""
    config = sandbox_config()
    config = config.model_copy(
        update={"readiness": config.readiness.model_copy(update={"block_production": True})}
    )
    box, web = start(config)
    try:
        yield PageUser(driver, web.url, tmp_path / "screenshots").open()
    finally:
        web.stop()
        box.close()


def test_rollback_card_updates_in_place_until_done_and_the_panel_shows_the_truth(
    page: PageUser,
) -> None:
    assert page.percent("wa-backend", "wa-backend-0000") == {
        "wa-backend-00003": 100,
        "wa-backend-00002": 0,
        "wa-backend-00001": 0,
    }
    page.type("/rollback wa-backend errors after v1.2.0")
    page.message("Rollback · wa-backend")
    card = page.message("Done in")
    page.wait_percent("wa-backend", "wa-backend-00002", 100)
    page.screenshot("rollback-done")
    assert "Emergency rollback" in card.text and "@ana" in card.text
    assert page.percent("wa-backend", "wa-backend-00003") == {"wa-backend-00003": 0}
    # one card, edited in place (chat.update) and shown live: the page never reloaded
    assert len(page.messages_with("Rollback · wa-backend")) == 1
    assert "(edited)" in card.text
    assert page.still_same_document()
    # #general is another channel: the card is not there, and commands go there from now on
    page.press('.channel[data-channel="general"]')
    page.until(lambda d: page.js("return document.body.dataset.channel") == "general", "#general")
    assert page.messages_with("Rollback · wa-backend") == []
    assert "#general" in str(
        page.driver.find_element("id", "composer-input").get_attribute("placeholder")
    )


def test_a_release_to_approve_100_clicked_by_a_tech_lead_not_by_a_developer(
    shipped_page: PageUser,
) -> None:
    page = shipped_page
    page.act_as("marta")
    page.type(f"/deploy wa-backend {IMAGE}")
    page.message("did not start")
    page.screenshot("release-blocked")
    page.act_as("luis")
    page.click("Release anyway (tech lead)", on="did not start")
    page.message("Green has 10% of traffic")
    page.wait_percent("wa-backend", "wa-backend-00004", 10)
    page.screenshot("release-10")
    page.act_as("marta")
    # each canary step is judged on minutes that Monitoring shows ~3 minutes late
    page.wait_until("needs a tech lead other than @marta", "6m")
    page.wait_percent("wa-backend", "wa-backend-00004", 50)

    page.act_as("pablo")  # a developer: refused, only to him
    page.click("Approve 100%", on="needs a tech lead other than @marta")
    refusal = page.message("Only a tech lead")
    assert "Only visible to you" in refusal.text
    page.screenshot("release-refused-developer")
    page.wait_percent("wa-backend", "wa-backend-00004", 50)

    page.act_as("luis")
    assert not page.messages_with("Only a tech lead"), "pablo's note is shown to luis"
    page.click("Approve 100%", on="needs a tech lead other than @marta")
    page.message("Green has 100% of traffic")
    page.wait_percent("wa-backend", "wa-backend-00004", 100)
    page.screenshot("release-100")

    page.wait_until("Released", "10m")
    page.click_replies("Released")
    chart = page.until(
        lambda d: next(
            (
                img
                for img in d.find_elements("css selector", "#thread-messages img.msg-file-img")
                if page.js("return arguments[0].naturalWidth", img) > 0
            ),
            None,
        ),
        "the release chart PNG in the thread",
    )
    assert page.js("return arguments[0].naturalWidth", chart) == 900
    page.js("arguments[0].scrollIntoView({block: 'end'})", chart)
    page.screenshot("release-chart")


def test_an_alert_rolls_back_by_itself_and_the_postmortem_waits_in_the_thread(
    page: PageUser,
) -> None:
    from selenium.webdriver.support.ui import Select

    Select(page.driver.find_element("id", "set-revision")).select_by_value("wa-backend-00003")
    page.driver.find_element("id", "set-error_rate").send_keys("0.07")
    page.press("#set-form button[type=submit]")
    page.until(lambda d: "error_rate': 0.07" in d.find_element("id", "log").text, "set")
    page.until(
        lambda d: (
            "7% err" in d.find_element("css selector", '[data-revision="wa-backend-00003"]').text
        ),
        "the panel showing 7% errors",
    )
    page.driver.find_element("id", "wait-amount").send_keys("9m")
    page.press("#wait-form button")
    page.idle()
    Select(page.driver.find_element("id", "alert-service")).select_by_value("wa-backend")
    page.press("#alert-open")

    page.message("Rollback triggered")  # the incident card
    page.message("Emergency rollback")  # the rollback card Runback started by itself
    page.message("Done in")
    page.wait_percent("wa-backend", "wa-backend-00002", 100)
    page.click_replies("Rollback triggered")
    draft = page.message("Postmortem draft", pane="thread-messages")
    page.screenshot("incident-postmortem")
    link = draft.find_element("css selector", "a.msg-file-download")
    name, href = link.get_attribute("download"), link.get_attribute("href")
    assert str(name).startswith("postmortem-wa-backend-") and str(name).endswith(".md")
    download = requests.get(str(href), timeout=10)
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.text.startswith("#") and "wa-backend" in download.text


def test_the_migration_check_modal_gives_its_verdict_and_keeps_errors_beside_the_field(
    page: PageUser,
) -> None:
    from selenium.webdriver.support.ui import Select

    page.act_as("marta")
    page.type("/ops migration-check")
    page.until(lambda d: d.find_element("id", "modal").is_displayed(), "the modal")
    assert page.driver.find_element("id", "modal-title").text == "Migration check"
    sql = page.driver.find_element("css selector", '#modal textarea[data-action-id="sql"]')
    sql.send_keys("ALTER TABLE reservas DROP COLUMN fecha;")
    dialect = Select(page.driver.find_element("css selector", '#modal [data-action-id="dialect"]'))
    assert dialect.first_selected_option.get_attribute("value") == "postgres"
    page.screenshot("migration-modal")
    page.press("#modal-submit")
    page.until(lambda d: not d.find_element("id", "modal").is_displayed(), "the modal to close")
    verdict = page.message("DROP COLUMN")
    assert "Destructive" in verdict.text and "Only visible to you" in verdict.text
    page.screenshot("migration-verdict")

    # /deploy … --migration: a destructive migration without a feature flag keeps the form open,
    # the error beside the flag field (response_action: errors)
    page.type(f"/deploy wa-backend {IMAGE} --migration")
    page.until(lambda d: d.find_element("id", "modal").is_displayed(), "the deploy form")
    page.driver.find_element("css selector", '#modal textarea[data-action-id="sql"]').send_keys(
        "ALTER TABLE reservas DROP COLUMN fecha;"
    )
    page.press("#modal-submit")
    error = page.until(
        lambda d: next(
            (
                e
                for e in d.find_elements(
                    "css selector", '#modal [data-block-id="flag"] .bk-input-error'
                )
                if e.is_displayed()
            ),
            None,
        ),
        "the error beside the flag field",
    )
    assert "feature flag" in error.text
    assert page.driver.find_element("id", "modal").is_displayed()
    page.screenshot("deploy-form-error")
    page.press("#modal-close")
    page.until(lambda d: not d.find_element("id", "modal").is_displayed(), "the form to close")


def test_a_hostile_reason_stays_text(page: PageUser) -> None:
    page.type(f"/rollback wa-backend {HOSTILE}")
    card = page.message("Done in")
    page.screenshot("hostile-reason")
    assert HOSTILE in card.text
    assert card.find_elements("css selector", "img, script") == []
    assert page.js("return window.__pwned") is None
    assert (
        page.js("return document.querySelectorAll('#messages img, #messages script').length") == 0
    )
    log = page.driver.find_element("id", "log")
    assert "<script>" in log.text and log.find_elements("css selector", "script, img") == []


# -- the renderer: every template, no raw JSON ---------------------------------------------------


# Block Kit that Slack draws and the templates may use one day: drawn too, never as raw JSON.
BEYOND_THE_TEMPLATES = [
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*Fields* and an accessory"},
        "fields": [
            {"type": "mrkdwn", "text": "*Service*\nwa-backend"},
            {"type": "plain_text", "text": "Revision\nwa-backend-00002"},
        ],
        "accessory": {
            "type": "button",
            "action_id": "more",
            "text": {"type": "plain_text", "text": "More"},
        },
    },
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "An image beside"},
        "accessory": {"type": "image", "image_url": "/files/F0/x.png", "alt_text": "chart"},
    },
    {"type": "image", "image_url": "/files/F0/x.png", "alt_text": "release chart"},
    {
        "type": "context",
        "elements": [
            {"type": "image", "image_url": "/files/F0/x.png", "alt_text": "icon"},
            {"type": "plain_text", "text": "plain", "emoji": True},
        ],
    },
    {
        "type": "rich_text",
        "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "rich"}]},
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "code"}]},
        ],
    },
    {
        "type": "actions",
        "elements": [
            {
                "type": "static_select",
                "action_id": "pick",
                "placeholder": {"type": "plain_text", "text": "Pick"},
                "options": [{"text": {"type": "plain_text", "text": "One"}, "value": "1"}],
            },
            {
                "type": "overflow",
                "action_id": "menu",
                "options": [{"text": {"type": "plain_text", "text": "Two"}, "value": "2"}],
            },
        ],
    },
]


def rendered_templates() -> list[dict[str, Any]]:
    renderer = Renderer()
    shown: list[dict[str, Any]] = [{"name": "beyond-the-templates", "blocks": BEYOND_THE_TEMPLATES}]
    for locale in LOCALES:
        for case in MESSAGES:
            name, context = case.values
            message = renderer.message(name, locale, **context)
            shown.append({"name": f"{locale}/{case.id}", "blocks": message.blocks})
        for name, context in VIEWS.items():
            view = renderer.view(name, locale, **context)
            shown.append({"name": f"{locale}/{name}", "blocks": view["blocks"]})
    return shown


DRAW = """
const [cases, hostile] = arguments;
const gallery = document.createElement("div");
gallery.id = "gallery";
document.getElementById("messages").replaceChildren(gallery);
const ctx = {names: {U0ANA: "ana"}, channels: {C0INCIDENTS: "incidents"}, onButton: () => {}};
const report = cases.map((c, i) => {
  const node = BlockKit.renderMessage(
    {key: "t" + i, ts: "t" + i, author: c.name, bot: true, blocks: c.blocks, version: 1}, ctx);
  gallery.appendChild(node);
  return {
    name: c.name,
    blocks: c.blocks.length,
    drawn: node.querySelectorAll(".bk-blocks > .bk-block").length,
    raw: [...node.querySelectorAll(".bk-raw")].map((r) => r.dataset.fallback),
  };
});
const trap = BlockKit.mrkdwn(hostile, ctx);
gallery.appendChild(trap);
return {report, links: [...trap.querySelectorAll("a")].map((a) => a.href),
        text: trap.textContent, elements: trap.querySelectorAll("img, script").length};
"""


def test_every_template_is_drawn_without_falling_back_to_raw_json(page: PageUser) -> None:
    cases = rendered_templates()
    hostile = (
        "*bold* _it_ ~gone~ `code` <javascript:alert(1)|click me> <https://ok.example/|fine> "
        "&lt;img src=x onerror=alert(1)&gt; <@U0ANA> <#C0INCIDENTS> :white_check_mark:\n"
        "&gt; quoted\n```<script>alert(1)</script>```"
    )
    result = page.js(DRAW, cases, hostile)
    page.screenshot("templates")
    assert len(result["report"]) == len(cases) > 100
    fallbacks = [(r["name"], r["raw"]) for r in result["report"] if r["raw"]]
    assert fallbacks == []
    assert all(r["drawn"] == r["blocks"] for r in result["report"])
    assert result["links"] == ["https://ok.example/"]
    assert result["elements"] == 0
    for shown in ("<img src=x onerror=alert(1)>", "@ana", "#incidents", "✅", "<script>"):
        assert shown in result["text"]
    assert "javascript" not in json.dumps(result["links"])
