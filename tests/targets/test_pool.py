"""Every target type an action names has a driver, and drivers are made once per target."""

from __future__ import annotations

import aiohttp

from clampdown.actions.registry import CATALOG
from clampdown.config import Config
from clampdown.targets.kong import KongDriver
from clampdown.targets.pool import DRIVERS, Drivers

NO_DRIVER = {"builtin", "webhook", "flow"}  # the store, or a plain POST, does the work


def test_every_target_type_of_an_action_has_a_driver() -> None:
    named = {kind for action in CATALOG.values() for kind in action.target_types}
    assert named - NO_DRIVER == set(DRIVERS)
    for kind, driver in DRIVERS.items():
        assert driver.type == kind


async def test_one_driver_per_target_and_none_for_builtin() -> None:
    config = Config.model_validate(
        {"targets": {"edge": {"type": "kong", "admin_url": "http://127.0.0.1:9"}}}
    )
    async with aiohttp.ClientSession() as session:
        drivers = Drivers(config.targets, session)
        edge = drivers.get("edge")
        assert isinstance(edge, KongDriver)
        assert drivers.get("edge") is edge
        assert drivers.get("builtin") is None
        await drivers.close()
