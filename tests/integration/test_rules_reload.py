"""Hot reload with a real watcher on real files: a bad edit is rejected, logged with file:line and
counted while the rules in force stay; a good edit replaces them and the metrics follow."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from helpers import eventually
from smsroute.rules import RuleError
from smsroute.rules.watch import RulesWatcher

GOOD = 'routes:\n  - name: {name}\n    actions: [{{webhook: {{url: "http://127.0.0.1/h"}}}}]\n'
BAD = "routes:\n  - name: broken\n    match: {keyword: STOP}\n    actions: [{webhook: {url: nowhere}}]\n"


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("smsroute_rules_reloads_total", {"outcome": outcome}) or 0.0


def info(version: str) -> float | None:
    return REGISTRY.get_sample_value("smsroute_rules_info", {"version": version})


async def edit_until(path: Path, text: str, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Write ``text`` and wait for ``done``; the write is repeated each second in case the watcher
    was not yet watching when it happened."""
    written = [0.0]

    def reloaded() -> bool:
        if time.monotonic() - written[0] >= 1.0:
            path.write_text(text, encoding="utf-8")
            written[0] = time.monotonic()
        return done()

    await eventually(reloaded, timeout, f"no reload after writing {path.name}", interval=0.05)


@pytest.fixture(params=[False, True], ids=["native", "polling"])
async def watching(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RulesWatcher]:
    (tmp_path / "10-main.yaml").write_text(GOOD.format(name="first"), encoding="utf-8")
    watcher = RulesWatcher(tmp_path, debounce_ms=50, force_polling=request.param)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    yield watcher
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_bad_edit_is_rejected_and_old_rules_stay(
    watching: RulesWatcher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="smsroute.rules")
    version, failures = watching.rules.version, reloads("failure")
    path = tmp_path / "10-main.yaml"

    def rejected() -> list[logging.LogRecord]:
        return [record for record in caplog.records if getattr(record, "event", "") == "rules_rejected"]

    # the reload runs in a thread: counted first, logged just after
    await edit_until(path, BAD, lambda: reloads("failure") > failures and bool(rejected()))
    assert watching.rules.version == version
    assert [route.name for route in watching.rules.routes] == ["first"]
    assert info(version) == 1
    assert rejected()[0].problem == (
        f"{path}:4:31: routes[0].actions[0].webhook.url: 'nowhere' is not an http:// or https:// URL"
    )
    assert f"version {version} stays in force" in rejected()[0].getMessage()


async def test_good_edit_replaces_the_rules_and_the_metrics_follow(watching: RulesWatcher, tmp_path: Path) -> None:
    old, successes = watching.rules.version, reloads("success")
    await edit_until(  # the reload runs in a thread: the new rules first, then their metrics, routes last
        tmp_path / "20-more.yaml",
        GOOD.format(name="second"),
        lambda: watching.rules.version != old and REGISTRY.get_sample_value("smsroute_rules_routes") == 2,
    )
    assert [route.name for route in watching.rules.routes] == ["first", "second"]
    assert reloads("success") == successes + 1
    assert (info(watching.rules.version), info(old)) == (1, None)
    assert REGISTRY.get_sample_value("smsroute_rules_routes") == 2


async def test_recovery_after_a_bad_edit(watching: RulesWatcher, tmp_path: Path) -> None:
    path, failures = tmp_path / "10-main.yaml", reloads("failure")
    await edit_until(path, BAD, lambda: reloads("failure") > failures)
    await edit_until(path, GOOD.format(name="fixed"), lambda: watching.rules.routes[0].name == "fixed")
    assert watching.reload() is True


def test_invalid_rules_at_start_are_refused(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(BAD, encoding="utf-8")
    failures = reloads("failure")
    with pytest.raises(RuleError) as caught:
        RulesWatcher(tmp_path)
    assert [problem.line for problem in caught.value.problems] == [4]
    assert reloads("failure") == failures + 1


def test_a_single_file_is_watched_through_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD.format(name="a"), encoding="utf-8")
    watcher = RulesWatcher(path)
    (tmp_path / "other.yaml").write_text(BAD, encoding="utf-8")  # not part of the rules
    path.write_text(GOOD.format(name="b"), encoding="utf-8")
    assert watcher.reload() is True
    assert [route.name for route in watcher.rules.routes] == ["b"]
