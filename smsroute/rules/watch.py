"""Hot reload: the rules in force, replaced when their files change and the new files are valid.

``watchfiles`` (inotify and friends, polling where those are missing) reports changes in the
directory holding the rules. Every change leads to a reload, whatever the file name: a Kubernetes
ConfigMap swaps a ``..data`` symlink rather than touching ``*.yaml``. A reload whose content hash is
unchanged is a no-op, and an invalid edit is logged problem by problem and counted, while the rules
in force stay in force.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import watchfiles

from ..metrics import RULES_INFO, RULES_RELOADS, RULES_ROUTES
from .loader import RuleError, load_rules
from .matcher import RuleSet

log = logging.getLogger("smsroute.rules")


class RulesWatcher:
    """Holds the rule set in force in :attr:`rules`. Construction loads it and raises
    :class:`RuleError` when invalid: an engine does not start without valid rules."""

    def __init__(self, path: Path, debounce_ms: int = 300, force_polling: bool | None = None) -> None:
        self.path = Path(path)
        self.debounce_ms, self.force_polling = debounce_ms, force_polling
        try:
            self.rules: RuleSet = load_rules(self.path)
        except RuleError:
            RULES_RELOADS.labels("failure").inc()
            raise
        self._activate(self.rules)

    def reload(self) -> bool:
        """Load the files again; True when the rules in force are now the files' content."""
        try:
            rules = load_rules(self.path)
        except RuleError as exc:
            RULES_RELOADS.labels("failure").inc()
            for problem in exc.problems:
                log.error(
                    f"routing rules rejected, version {self.rules.version} stays in force: {problem}",
                    extra={"event": "rules_rejected", "problem": str(problem), "version": self.rules.version},
                )
            return False
        if rules.version == self.rules.version:
            log.info("routing rules unchanged", extra={"event": "rules_unchanged", "version": rules.version})
            return True
        previous, self.rules = self.rules.version, rules
        self._activate(rules)
        log.info(
            f"routing rules reloaded: version {rules.version}, {len(rules.routes)} routes",
            extra={
                "event": "rules_reloaded",
                "version": rules.version,
                "previous": previous,
                "routes": len(rules.routes),
            },
        )
        return True

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Reload on every change until ``stop`` is set; loading runs in a thread, off the event loop."""
        directory = self.path if self.path.is_dir() else self.path.parent
        async for _ in watchfiles.awatch(
            directory, debounce=self.debounce_ms, stop_event=stop, force_polling=self.force_polling, recursive=False
        ):
            await asyncio.to_thread(self.reload)

    @staticmethod
    def _activate(rules: RuleSet) -> None:
        RULES_RELOADS.labels("success").inc()
        RULES_INFO.clear()
        RULES_INFO.labels(rules.version).set(1)
        RULES_ROUTES.set(len(rules.routes))
