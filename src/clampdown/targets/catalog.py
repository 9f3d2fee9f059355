"""What each target type can do, and a read-only check of the configured targets."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

import aiohttp

from clampdown.actions.registry import CATALOG
from clampdown.errors import ActionError, ConfigError
from clampdown.targets.driver import Check
from clampdown.targets.pool import Drivers
from clampdown.targets.settings import TARGET_SETTINGS, TargetConfig, type_name


def describe_types() -> list[dict[str, Any]]:
    """Every target type with its summary, the verbs it implements and its settings."""
    types = []
    for settings in TARGET_SETTINGS:
        name = type_name(settings)
        fields = {
            field: {
                "required": info.is_required(),
                "description": info.description or "",
            }
            for field, info in settings.model_fields.items()
            if field != "type"
        }
        types.append(
            {
                "type": name,
                "summary": inspect.cleandoc(settings.__doc__ or "").split("\n")[0],
                "verbs": sorted(a.name for a in CATALOG.values() if name in a.target_types),
                "settings": fields,
            }
        )
    return types


async def check_targets(
    targets: Mapping[str, TargetConfig], *, timeout: float = 30.0
) -> dict[str, list[Check]]:
    """Run every configured target's read-only check, side by side."""
    async with aiohttp.ClientSession() as session:
        drivers = Drivers(targets, session)

        async def one(name: str) -> list[Check]:
            try:
                driver = drivers.get(name)
                if driver is None:
                    return [Check("configuration", True, "nothing to reach until a step runs")]
                async with asyncio.timeout(timeout):
                    return await driver.check()
            except TimeoutError:
                return [Check("reachable", False, f"no answer within {timeout:g}s")]
            except (ActionError, ConfigError) as exc:
                return [Check("reachable", False, str(exc))]

        names = sorted(targets)
        try:
            results = await asyncio.gather(*(one(name) for name in names))
        finally:
            await drivers.close()
    return dict(zip(names, results, strict=True))
