"""Built-in provider adapters, one module each; a module exports its class as ``ADAPTER``.

Adding a provider means adding one module here (and its tests): it is found by name.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from pydantic import ValidationError

from ...config import ConfigError, Settings, describe
from ..base import Adapter


@cache
def available() -> dict[str, type[Adapter]]:
    """Provider type -> adapter class, for every module in this package."""
    found: dict[str, type[Adapter]] = {}
    for info in pkgutil.iter_modules(__path__):
        adapter: type[Adapter] = importlib.import_module(f"{__name__}.{info.name}").ADAPTER
        found[adapter.provider] = adapter
    return dict(sorted(found.items()))


def build_adapters(settings: Settings) -> dict[str, Adapter]:
    """One adapter per configured ingress; with none configured, every provider under its own name."""
    providers = available()
    configured = settings.ingress or {provider: {} for provider in providers}
    adapters: dict[str, Adapter] = {}
    for name, options in configured.items():
        provider = options.get("provider", name)
        if provider not in providers:
            raise ConfigError(
                f"ingress.{name}.provider: unknown provider {provider!r} (built-in: {', '.join(providers)})"
            )
        adapter = providers[provider]
        try:
            config = adapter.config_class.model_validate({**options, "provider": provider})
        except ValidationError as exc:
            raise ConfigError(describe(exc, source="configuration", prefix=f"ingress.{name}")) from exc
        adapters[name] = adapter(name, config)
    return adapters
