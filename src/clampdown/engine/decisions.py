"""Allow, deny or throttle one request, from an in-memory copy of the built-in list.

The copy follows the containment change stream, so a check costs a few dictionary look-ups
and never a database round trip.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

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
_MAX_WINDOWS = 100_000
# Gateways ask about the same clients again and again: parsing an address costs more than the
# rest of a check, so the canonical forms of the most recent ones are kept.
_IP_MEMO = 8192
_IP_MEMO_TEXT = 64  # longer texts are not kept (the longest IPv6 address is 45 characters)
_SLASHES = re.compile(r"/{2,}")


class DecisionCache:
    """Active containments indexed by subject, plus fixed-window counters for throttles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_subject: dict[tuple[SubjectType, str], dict[str, Entry]] = {}
        self._networks: dict[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Entry]] = {}
        self._endpoints: dict[str, Entry] = {}
        self._index: dict[str, tuple[SubjectType, str]] = {}
        # (containment id, client) -> (window number, requests in it, window end, epoch s)
        self._windows: dict[tuple[str, str], tuple[int, int, float]] = {}
        self.cursor = 0

    def __len__(self) -> int:
        return len(self._index)

    def apply(self, changes: Iterable[tuple[str, dict[str, Any]]], cursor: int) -> None:
        """Apply ('add' | 'remove', row) changes up to `cursor`.

        A row read from the change stream carries its `seq`: one already applied is skipped,
        so a batch read earlier but applied later cannot bring back a lifted containment.
        """
        with self._lock:
            for op, row in changes:
                seq = row.get("seq")
                if seq is not None:
                    if seq <= self.cursor:
                        continue
                    self.cursor = seq
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
        candidates = self._candidates(request)
        if not candidates:
            return _ALLOW
        now = time.time() if now is None else now
        path: str | None = None  # normalized once, and only for a scope that needs it
        throttle: Entry | None = None
        for entry in candidates:
            if entry.expires_at is not None and entry.expires_at <= now:
                continue
            if entry.scope != "*":
                if path is None:
                    path = normalize_path(request.path)
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
        by_subject = self._by_subject
        with self._lock:
            if by_subject:
                if request.ip:
                    bucket = by_subject.get((SubjectType.IP, _ip_key(request.ip)))
                    if bucket:
                        found.extend(bucket.values())
                for subject_type, value in (
                    (SubjectType.API_KEY, request.api_key),
                    (SubjectType.SUBSCRIPTION, request.subscription),
                    (SubjectType.CLIENT_ID, request.client_id),
                    (SubjectType.USER, request.user),
                ):
                    if value:
                        bucket = by_subject.get((subject_type, value))
                        if bucket:
                            found.extend(bucket.values())
            if self._networks and request.ip:
                addr = _parse_ip(request.ip)
                if addr is not None:
                    found.extend(e for net, e in self._networks.values() if addr in net)
            if self._endpoints:
                found.extend(self._endpoints.values())
        return found

    def _prune(self, now: float) -> None:
        # Counters of ended windows and lifted containments are dead weight.
        self._windows = {
            key: value
            for key, value in self._windows.items()
            if value[2] > now and key[0] in self._index
        }

    def _count(self, entry: Entry, request: Request, now: float) -> Verdict:
        period = entry.period or 60
        window = int(now // period)
        # An address or range is limited per client address; a key, subscription, client id
        # or user is limited as a whole, whichever addresses it comes from.
        if entry.subject_type in (SubjectType.IP, SubjectType.CIDR):
            client = _norm(SubjectType.IP, request.ip)
        else:
            client = entry.subject
        with self._lock:
            if len(self._windows) > _MAX_WINDOWS:
                self._prune(now)
            end = (window + 1) * period
            start, count, _ = self._windows.get((entry.id, client), (window, 0, end))
            count = count + 1 if start == window else 1
            self._windows[(entry.id, client)] = (window, count, end)
        if entry.rate is not None and count > entry.rate:
            retry = int(end - now) + 1
            return Verdict(Decision.THROTTLE, entry, retry_after=retry)
        return Verdict(Decision.ALLOW, entry)


def normalize_path(raw: str) -> str:
    """The path a gateway routes to: no query, %-escapes decoded, '//', '.' and '..' resolved.

    Gateways often pass the request line as sent; a disabled endpoint must not be reachable
    through another spelling of its path.
    """
    path = unquote(raw.split("?", 1)[0].split("#", 1)[0])
    if not path:
        return ""
    return posixpath.normpath(_SLASHES.sub("/", "/" + path))


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if len(value) > _IP_MEMO_TEXT:
        return _parse_ip_text(value)
    return _parse_ip_memo(value)


def _parse_ip_text(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d: the same client.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


_parse_ip_memo = functools.lru_cache(maxsize=_IP_MEMO)(_parse_ip_text)


def _ip_key_text(value: str) -> str:
    addr = _parse_ip(value)
    return str(addr) if addr is not None else value


_ip_key_memo = functools.lru_cache(maxsize=_IP_MEMO)(_ip_key_text)


def _ip_key(value: str) -> str:
    """An address in canonical form (the text itself when it is not an address)."""
    if len(value) > _IP_MEMO_TEXT:
        return _ip_key_text(value)
    return _ip_key_memo(value)


def _norm(subject_type: SubjectType, value: str) -> str:
    if subject_type is SubjectType.IP:
        return _ip_key(value)
    return value
