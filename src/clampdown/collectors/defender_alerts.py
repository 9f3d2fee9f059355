"""`defender-alerts`: Defender for Cloud alerts over ARM, kept to the Defender for APIs types.

`GET {management_url}/subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Security
/alerts?api-version=2022-01-01`, paged by `nextLink`. The list cannot be filtered by time on
the server, so every page is read and the alerts kept are those of a configured type whose
`timeGeneratedUtc` (or `processingEndTimeUtc`, whichever is later) is at or after the pull's
start (an alert with neither is kept: ingest is idempotent).
"""

from __future__ import annotations

from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, ClassVar
from urllib.parse import urlencode

from clampdown.collectors.base import Collector
from clampdown.collectors.settings import DefenderAlertsSource
from clampdown.targets.azure.token import MANAGEMENT_SCOPE

TIME_FIELDS = ("timeGeneratedUtc", "processingEndTimeUtc")


class DefenderAlerts(Collector):
    """Defender for Cloud alerts of one subscription or resource group."""

    type: ClassVar[str] = "defender-alerts"
    shape: ClassVar[str] = "defender-rest"
    token_scope: ClassVar[str] = MANAGEMENT_SCOPE
    forbidden_hint: ClassVar[str] = (
        "the application needs the Security Reader role on the subscription or resource group"
    )
    settings: DefenderAlertsSource

    def first_url(self, since: datetime) -> str:
        settings = self.settings
        query = urlencode({"api-version": settings.api_version})
        return (
            f"{settings.management_url}{settings.scope.path()}"
            f"/providers/Microsoft.Security/alerts?{query}"
        )

    def keep(self, record: dict[str, Any], since: datetime) -> bool:
        props = record.get("properties")
        if not isinstance(props, dict):
            return False
        alert_type = props.get("alertType")
        if not isinstance(alert_type, str) or not any(
            fnmatchcase(alert_type, pattern) for pattern in self.settings.alert_types
        ):
            return False
        times = [t for t in (parse_time(props.get(name)) for name in TIME_FIELDS) if t]
        return not times or max(times) >= since


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (no offset means UTC); None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
