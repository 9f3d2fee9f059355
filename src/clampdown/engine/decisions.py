"""Allow, deny or throttle one request, from an in-memory copy of the built-in list.

The copy follows the containment change stream, so a check costs a few dictionary look-ups
and never a database round trip.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clampdown.engine.scopes import covers
from clampdown.model import ContainmentKind, Decision, SubjectType


@dataclass(frozen=True, slots=True)
class Entry:
    """The part of a containment a decision needs."""

    id: str
    kind: ContainmentKind
    subject_type: SubjectType
    subject: str
    scope: str
    rate: int | None
    period: int | None
    expires_at: float | None  # epoch seconds
    reason: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Entry:
        """Build from a `containments` row."""
        expires = row["expires_at"]
        return cls(
            id=row["id"],
            kind=ContainmentKind(row["kind"]),
            subject_type=SubjectType(row["subject_type"]),
            subject=row["subject"],
            scope=row["scope"],
            rate=row["rate"],
            period=row["period_seconds"],
            expires_at=expires.timestamp() if expires else None,
            reason=row["reason"],
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one request."""

    decision: Decision
    containment: Entry | None = None
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """What a gateway knows about a request."""

    ip: str = ""
    api_key: str = ""
    method: str = ""
    path: str = ""
    api: str = ""
    subscription: str = ""
    client_id: str = ""
    user: str = ""


_ALLOW = Verdict(Decision.ALLOW)


class DecisionCache:
    """Active containments indexed by subject, plus fixed-window counters for throttles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_subject: dict[tuple[SubjectType, str], dict[str, Entry]] = {}
        self._networks: dict[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Entry]] = {}
        self._endpoints: dict[str, Entry] = {}
        self._index: dict[str, tuple[SubjectType, str]] = {}
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}
        self.cursor = 0

    def __len__(self) -> int:
        return len(self._index)

    def apply(self, changes: Iterable[tuple[str, dict[str, Any]]], cursor: int) -> None:
        """Apply ('add' | 'remove', row) changes up to `cursor`."""
        with self._lock:
            for op, row in changes:
                if op == "add":
                    self._add(Entry.from_row(row))
                else:
                    self._remove(row["id"])
            self.cursor = max(self.cursor, cursor)

    def _add(self, entry: Entry) -> None:
        key = (entry.subject_type, _norm(entry.subject_type, entry.subject))
        self._index[entry.id] = key
        if entry.subject_type is SubjectType.CIDR:
            net = ipaddress.ip_network(entry.subject, strict=False)
            self._networks[entry.id] = (net, entry)
        elif entry.subject_type is SubjectType.ENDPOINT:
            self._endpoints[entry.id] = entry
        else:
            self._by_subject.setdefault(key, {})[entry.id] = entry

    def _remove(self, cid: str) -> None:
        key = self._index.pop(cid, None)
        if key is None:
            return
        self._networks.pop(cid, None)
        self._endpoints.pop(cid, None)
        bucket = self._by_subject.get(key)
        if bucket is not None:
            bucket.pop(cid, None)
            if not bucket:
                del self._by_subject[key]

    def check(self, request: Request, *, now: float | None = None) -> Verdict:
        """Deny beats throttle beats allow; expired entries no longer count."""
        now = time.time() if now is None else now
        path = request.path.split("?", 1)[0]
        throttle: Entry | None = None
        for entry in self._candidates(request):
            if entry.expires_at is not None and entry.expires_at <= now:
                continue
            if not covers(entry.scope, method=request.method, path=path, api=request.api):
                continue
            if entry.kind is not ContainmentKind.THROTTLE:
                return Verdict(Decision.DENY, entry)
            throttle = throttle or entry
        if throttle is None:
            return _ALLOW
        return self._count(throttle, request, now)

    def _candidates(self, request: Request) -> list[Entry]:
        found: list[Entry] = []
        with self._lock:
            for subject_type, value in (
                (SubjectType.IP, request.ip),
                (SubjectType.API_KEY, request.api_key),
                (SubjectType.SUBSCRIPTION, request.subscription),
                (SubjectType.CLIENT_ID, request.client_id),
                (SubjectType.USER, request.user),
            ):
                if value:
                    bucket = self._by_subject.get((subject_type, _norm(subject_type, value)))
                    if bucket:
                        found.extend(bucket.values())
            if self._networks and request.ip:
                addr = _parse_ip(request.ip)
                if addr is not None:
                    found.extend(e for net, e in self._networks.values() if addr in net)
            found.extend(self._endpoints.values())
        return found

    def _count(self, entry: Entry, request: Request, now: float) -> Verdict:
        period = entry.period or 60
        window = int(now // period)
        client = request.ip or request.api_key or request.client_id or request.user
        with self._lock:
            start, count = self._windows.get((entry.id, client), (window, 0))
            count = count + 1 if start == window else 1
            self._windows[(entry.id, client)] = (window, count)
        if entry.rate is not None and count > entry.rate:
            retry = int((window + 1) * period - now) + 1
            return Verdict(Decision.THROTTLE, entry, retry_after=retry)
        return Verdict(Decision.ALLOW, entry)


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _norm(subject_type: SubjectType, value: str) -> str:
    if subject_type is SubjectType.IP:
        addr = _parse_ip(value)
        return str(addr) if addr is not None else value
    return value


def utc_from_epoch(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)
