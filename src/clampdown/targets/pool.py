"""One driver per configured target, kept for the life of the worker (tokens are cached)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from clampdown.actions.http import TargetHttp
from clampdown.targets.azure.apim import ApimDriver
from clampdown.targets.defender import DefenderDriver
from clampdown.targets.driver import Driver
from clampdown.targets.graph import GraphDriver
from clampdown.targets.jira import JiraDriver
from clampdown.targets.kong import KongDriver
from clampdown.targets.nginx import NginxDriver
from clampdown.targets.oauth import RevocationDriver
from clampdown.targets.pacing import Pacer
from clampdown.targets.pagerduty import PagerDutyDriver
from clampdown.targets.servicenow import ServiceNowDriver
from clampdown.targets.settings import TargetConfig
from clampdown.targets.slack import SlackDriver
from clampdown.targets.smtp import SmtpDriver
from clampdown.targets.teams import TeamsDriver

DRIVERS: dict[str, type[Driver]] = {
    driver.type: driver
    for driver in (
        ApimDriver,
        KongDriver,
        NginxDriver,
        RevocationDriver,
        TeamsDriver,
        SlackDriver,
        PagerDutyDriver,
        ServiceNowDriver,
        JiraDriver,
        SmtpDriver,
        GraphDriver,
        DefenderDriver,
    )
}


class Drivers:
    """Drivers of the configured targets, created on first use."""

    def __init__(self, targets: Mapping[str, TargetConfig], session: aiohttp.ClientSession):
        self._targets = targets
        self._session = session
        self._made: dict[str, Driver] = {}
        self._pacers = {
            name: Pacer(settings.rate_limit)
            for name, settings in targets.items()
            if settings.rate_limit is not None
        }

    def pacer(self, name: str) -> Pacer | None:
        """The rate limit of target `name`, if it has one."""
        return self._pacers.get(name)

    def http(self, name: str) -> TargetHttp:
        """Outbound HTTP limited to the origins of target `name`."""
        return TargetHttp(self._session, self._targets[name].origins(), name)

    def get(self, name: str) -> Driver | None:
        """The driver of target `name`; None for types that need none (builtin, webhooks)."""
        driver = self._made.get(name)
        if driver is None:
            settings = self._targets[name]
            kind = DRIVERS.get(settings.type)
            if kind is None:
                return None
            driver = self._made[name] = kind(name, settings, self.http(name))
        return driver

    async def close(self) -> None:
        """Close every driver made."""
        for driver in self._made.values():
            await driver.close()
        self._made.clear()
