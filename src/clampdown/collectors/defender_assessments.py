"""`defender-assessments`: Defender for Cloud recommendations for API Management resources.

`GET {management_url}/subscriptions/{sub}/providers/Microsoft.Security/assessments
?api-version=2021-06-01&$expand=metadata` (metadata brings the severity and the remediation
text), paged by `nextLink`. Kept: assessments whose resource (`properties.resourceDetails`
id, else the part of the assessment id before `/providers/Microsoft.Security/assessments/`)
is an API Management resource, in the configured resource group if one is. Every pull
ingests them all, whatever their time: a status may have changed (Unhealthy -> Healthy).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

from clampdown.collectors.base import Collector
from clampdown.collectors.settings import DefenderAssessmentsSource
from clampdown.targets.azure.token import MANAGEMENT_SCOPE

APIM = "/providers/microsoft.apimanagement/"
_ASSESSMENT = "/providers/microsoft.security/assessments/"


class DefenderAssessments(Collector):
    """Assessments of one subscription's API Management resources."""

    type: ClassVar[str] = "defender-assessments"
    shape: ClassVar[str] = "defender-assessment"
    token_scope: ClassVar[str] = MANAGEMENT_SCOPE
    forbidden_hint: ClassVar[str] = (
        "the application needs the Security Reader role on the subscription"
    )
    settings: DefenderAssessmentsSource

    def first_url(self, since: datetime) -> str:
        settings = self.settings
        query = urlencode({"api-version": settings.api_version, "$expand": "metadata"}, safe="$")
        return (
            f"{settings.management_url}{settings.scope.path(group=False)}"
            f"/providers/Microsoft.Security/assessments?{query}"
        )

    def keep(self, record: dict[str, Any], since: datetime) -> bool:
        resource = resource_id(record).casefold()
        if APIM not in resource:
            return False
        group = self.settings.scope.resource_group
        if group is None:
            return True
        return resource.startswith(self.settings.scope.path().casefold() + "/")


def resource_id(assessment: dict[str, Any]) -> str:
    """The id of the resource an assessment is about ("" when it names none)."""
    props = assessment.get("properties")
    details = props.get("resourceDetails") if isinstance(props, dict) else None
    if isinstance(details, dict):
        for key, value in details.items():
            if key.casefold() in ("id", "resourceid") and isinstance(value, str) and value:
                return value
    own = assessment.get("id")
    if isinstance(own, str):
        cut = own.casefold().find(_ASSESSMENT)
        if cut > 0:
            return own[:cut]
    return ""
