"""`graph-alerts`: Microsoft Graph security alerts_v2 of one detection source.

`GET {graph_url}/v1.0/security/alerts_v2?$filter=detectionSource eq
'microsoftDefenderForApiManagement' and lastUpdateDateTime ge {since}`, paged by
`@odata.nextLink`, with `Prefer: include-unknown-enum-members`: the Defender for API
Management detection source is a member of an evolvable enumeration, which Graph shows (and
filters on) only to callers that send that header. Filtering on lastUpdateDateTime also
brings back alerts whose status changed since the last pull.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from clampdown.collectors.base import Collector
from clampdown.collectors.settings import GraphAlertsSource
from clampdown.targets.azure.token import GRAPH_SCOPE

PREFER = "include-unknown-enum-members"


class GraphAlerts(Collector):
    """Graph security alerts of the configured detection source."""

    type: ClassVar[str] = "graph-alerts"
    shape: ClassVar[str] = "graph"
    token_scope: ClassVar[str] = GRAPH_SCOPE
    next_key: ClassVar[str] = "@odata.nextLink"
    headers: ClassVar[dict[str, str]] = {"Prefer": PREFER}
    forbidden_hint: ClassVar[str] = (
        "the application needs the SecurityAlert.Read.All application permission, "
        "with admin consent"
    )
    settings: GraphAlertsSource

    def first_url(self, since: datetime) -> str:
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        expression = (
            f"detectionSource eq '{self.settings.detection_source}' "
            f"and lastUpdateDateTime ge {stamp}"
        )
        query = urlencode({"$filter": expression}, quote_via=quote, safe="$")
        return f"{self.settings.graph_url}/v1.0/security/alerts_v2?{query}"

    def keep(self, record: dict[str, Any], since: datetime) -> bool:
        # The service filters already; this keeps a misbehaving filter from widening the pull.
        return record.get("detectionSource") == self.settings.detection_source
