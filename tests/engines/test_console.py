"""The operators' API and console on a running embedded engine with real traffic over HTTP; the
console in a real headless Chromium (Debian's, driven by Playwright; no browser is downloaded).
Each page's screenshot is written to ``<pytest tmp dir>/screenshots/<page>.png``."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, async_playwright

from engines import StartEngine
from helpers import eventually
from local_server import Receiver
from samples import AGILE

pytestmark = pytest.mark.parametrize("engine", ["embedded"], indirect=True)

TOKEN = "op-token-for-tests-0123456789"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} missing: scripts/tools installs Debian's chromium")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=ARGS, headless=True
        )
        yield context
        await context.close()


async def api(run: Any, path: str, method: str = "GET", token: str | None = TOKEN, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with run.http.request(method, run.url + path, headers=headers, **kwargs) as response:
        body = await response.text()
        return response.status, json.loads(body) if response.content_type == "application/json" else body


async def test_api_needs_the_token_and_answers_search_trace_and_rules_test(
    start_engine: StartEngine, receiver: Receiver
) -> None:
    run = await start_engine(operator_token=TOKEN)
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "Ciao from the API"}) == 200
    await eventually(lambda: len(receiver.at("/inbox")) == 1)

    assert (await api(run, "/api/messages", token=None))[0] == 401
    assert (await api(run, "/api/messages", token="wrong"))[0] == 401
    status, found = await api(run, "/api/messages", params={"number": AGILE["originator"], "text": "ciao"})
    assert status == 200 and [row["text"] for row in found] == ["Ciao from the API"]
    status, trace = await api(run, f"/api/messages/{found[0]['id']}")
    assert status == 200 and trace["routes"] == ["inbox"] and trace["deliveries"][0]["state"] == "delivered"
    assert (await api(run, "/api/messages/nope"))[0] == 404
    assert (await api(run, "/api/messages", params={"outcome": "sideways"}))[0] == 400
    status, explained = await api(run, "/api/rules/test", "POST", json={"text": "arresta", "from": "+39333"})
    assert status == 200 and explained["matched"] == ["opt-out"]
    status, traffic = await api(run, "/api/traffic", params={"hours": 2})
    assert status == 200 and sum(bucket["messages"] for bucket in traffic["buckets"]) == 1


async def test_no_token_on_a_public_address_is_refused(start_engine: StartEngine) -> None:
    run = await start_engine(host="0.0.0.0")
    run.url = run.url.replace("0.0.0.0", "127.0.0.1")
    assert (await api(run, "/api/messages", token=None))[0] == 403
    assert (await api(run, "/console", token=None))[0] == 403


async def test_console_pages_in_chromium(
    start_engine: StartEngine, receiver: Receiver, browser: BrowserContext, tmp_path: Path
) -> None:
    run = await start_engine(operator_token=TOKEN)
    receiver.fail["/dead"] = -1
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "Where is my parcel"}) == 200
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "DEAD on arrival"}) == 200
    await eventually(lambda: len(receiver.at("/inbox")) == 1)

    async def dead_lettered() -> bool:  # its retries failed too
        return bool(await run.dead_letters())

    await eventually(dead_lettered)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = await browser.new_page()

    await page.goto(f"{run.url}/console?token={TOKEN}")  # the token once; a cookie from then on
    assert page.url == f"{run.url}/console"
    assert await page.locator("#traffic tr").count() == 25  # a header and 24 hours
    await page.screenshot(path=shots / "overview.png", full_page=True)

    await page.goto(f"{run.url}/console/messages")
    await page.fill("input[name=text]", "parcel")
    await page.click("button[type=submit]")
    results = page.locator("#results tr")
    assert await results.count() == 2 and "Where is my parcel" in await results.nth(1).inner_text()
    await page.screenshot(path=shots / "messages.png", full_page=True)

    await results.nth(1).locator("a").click()
    await page.wait_for_url("**/console/messages/*")
    assert "inbox" in await page.locator("#routed").inner_text()
    assert "delivered" in await page.locator("#deliveries").inner_text()
    await page.screenshot(path=shots / "trace.png", full_page=True)

    await page.goto(f"{run.url}/console/playground")
    await page.fill("input[name=text]", "arresta subito")
    await page.click("button[type=submit]")
    assert "opt-out" in await page.locator("#matched").inner_text()
    await page.screenshot(path=shots / "playground.png", full_page=True)

    await page.goto(f"{run.url}/console/dead-letters")
    assert "deliver" in await page.locator("#letters").inner_text()
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/dead-letters?replayed=*")
    assert await page.locator("#replayed").inner_text() == "1 deliveries due again."
    await page.screenshot(path=shots / "dead-letters.png", full_page=True)

    assert sorted(path.name for path in shots.iterdir()) == [
        "dead-letters.png",
        "messages.png",
        "overview.png",
        "playground.png",
        "trace.png",
    ]
