"""Built-in providers, one module each, found by name: adding a provider means adding one module
(and its fixtures). A provider module has two halves, ``Receiving`` (a :class:`~.base.Receiver`:
the HTTP request) and ``Normalizing`` (a :class:`~.base.Normalizer`: the logged event); the
framework beside them is :mod:`.base`, :mod:`.kit` (parsing helpers) and :mod:`.mail`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache

from pydantic import ValidationError

from ..config import ConfigError, Settings, describe
from .base import Normalizer, Receiver


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    receiving: type[Receiver]
    normalizing: Normalizer


@cache
def available() -> dict[str, Provider]:
    """Provider type -> its two halves, for every provider module of this package."""
    found: dict[str, Provider] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        receiving, normalizing = getattr(module, "Receiving", None), getattr(module, "Normalizing", None)
        if receiving is not None and normalizing is not None:
            found[receiving.provider] = Provider(receiving.provider, receiving, normalizing())
    return dict(sorted(found.items()))


def normalizers() -> dict[str, Normalizer]:
    """One normalizer per provider type: what the pipeline reads logged events with."""
    return {name: provider.normalizing for name, provider in available().items()}


def build_receivers(settings: Settings) -> dict[str, Receiver]:
    """One receiver per configured ingress; with none configured, every provider under its own name."""
    providers = available()
    configured = settings.ingress or {
        name: {}
        for name, provider in providers.items()
        if provider.receiving.kinds and provider.receiving.default_mount
    }
    receivers: dict[str, Receiver] = {}
    for name, options in configured.items():
        provider = options.get("provider", name)
        if provider not in providers:
            raise ConfigError(
                f"ingress.{name}.provider: unknown provider {provider!r} (built-in: {', '.join(providers)})"
            )
        receiving = providers[provider].receiving
        if not receiving.kinds:
            raise ConfigError(
                f"ingress.{name}.provider: {provider} is not received over HTTP; configure a bind as [{provider}.NAME]"
            )
        try:
            config = receiving.config_class.model_validate({**options, "provider": provider})
        except ValidationError as exc:
            raise ConfigError(describe(exc, source="configuration", prefix=f"ingress.{name}")) from exc
        receivers[name] = receiving(name, config)
    return receivers
