"""The two nginx include files Clampdown renders, and reading them back.

Everything here is pure: containments in, text out, text in, what it enforces out. Every value
that reaches the text was validated and put in canonical form by `canonical` first; a value
that is not one of a few strict shapes (an IP address, a network, a path pattern made of a
small set of characters, a method of capital letters, whole numbers) is refused, so nothing
taken from an alert can become nginx configuration.

Endpoint patterns (`gateway.disable_endpoint`):

    endpoint := [METHOD " "] PATH
    METHOD   := 1 to 32 capital letters A-Z, or "*" for any method
    PATH     := "/" followed by characters from A-Z a-z 0-9 . _ ~ / * % -

`*` in PATH matches any run of characters, `/` included; `%HH` stands for the byte HH (nginx
compares against the decoded `$uri`). Canonical form: `*` as METHOD is dropped, escapes of
characters that are allowed as such (other than `*` and `%`) are decoded and the others
upper-cased, repeated `/` become one, repeated `*` become one, and a trailing `/` is dropped
(the pattern then matches with and without it). `.` and `..` segments are refused: nginx
resolves them in `$uri`, so a pattern holding them would never match.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from clampdown.actions.contract import ContainmentSpec
from clampdown.errors import PermanentError
from clampdown.model import ContainmentKind, SubjectType

HTTP_FILE = "clampdown-http.conf"
"""Included in the `http {}` block: the variables and rate-limit zones."""
SERVER_FILE = "clampdown-server.conf"
"""Included in each protected `server {}` block: the refusals."""

HEADER_PREFIX = "# Rendered by Clampdown; do not edit. sha256="
_HEADER = re.compile(r"# Rendered by Clampdown; do not edit\. sha256=([0-9a-f]{64})")

ZONE_SIZE = "10m"
"""Shared memory per throttle zone: about 160,000 throttled client addresses."""
MAX_PER_SECOND = 1_000_000
"""The fastest rate accepted; a throttle above it would not slow anyone down."""
MAX_METHOD = 32
MAX_PATH = 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METHOD = re.compile(r"[A-Z]{1,32}")
_PATH_CHARS = re.compile(r"[A-Za-z0-9._~/*%-]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_DECODED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~/-")


class Unsupported(Exception):
    """A containment this target type cannot enforce at all (the message says what)."""


# --- validation --------------------------------------------------------------------------------


def canonical(spec: ContainmentSpec) -> ContainmentSpec:
    """`spec` with canonical values; Unsupported or PermanentError when it cannot be rendered."""
    kind, subject_type = spec.kind, spec.subject_type
    if kind is ContainmentKind.DISABLE:
        if subject_type is not SubjectType.ENDPOINT:
            raise Unsupported(f"disable {subject_type.value}")
        endpoint = canonical_endpoint(spec.subject)
        if spec.scope.strip() not in ("*", spec.subject, endpoint):
            raise Unsupported(f"disable an endpoint at scope {shown(spec.scope)}")
        return spec.model_copy(
            update={"subject": endpoint, "scope": endpoint, "rate": None, "period_seconds": None}
        )
    if kind not in (ContainmentKind.BLOCK, ContainmentKind.THROTTLE):
        raise Unsupported(f"{kind.value} {subject_type.value}")
    if subject_type is SubjectType.IP:
        subject = str(canonical_ip(spec.subject))
    elif subject_type is SubjectType.CIDR:
        subject = str(canonical_network(spec.subject))
    else:
        raise Unsupported(f"{kind.value} {subject_type.value} (only ip and cidr)")
    if spec.scope.strip() != "*":
        raise Unsupported(
            f"{kind.value} at scope {shown(spec.scope)} (only '*', the whole gateway)"
        )
    update: dict[str, object] = {"subject": subject, "scope": "*"}
    if kind is ContainmentKind.THROTTLE:
        rate, period = check_rate(spec.rate, spec.period_seconds)
        update |= {"rate": rate, "period_seconds": period}
    else:
        update |= {"rate": None, "period_seconds": None}
    return spec.model_copy(update=update)


def canonical_ip(value: str) -> IPAddress:
    """A validated address; IPv4-mapped IPv6 becomes IPv4 (nginx matches those as IPv4)."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise PermanentError(f"not an IP address: {shown(value)}") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise PermanentError(f"IP address with a scope id is not allowed: {shown(value)}")
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def canonical_network(value: str) -> IPNetwork:
    """A validated network (host bits cleared); IPv4-mapped IPv6 ranges become IPv4."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise PermanentError(f"not a CIDR network: {shown(value)}") from None
    if isinstance(network, ipaddress.IPv6Network):
        if network.network_address.scope_id is not None:
            raise PermanentError(f"network with a scope id is not allowed: {shown(value)}")
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def check_rate(rate: int | None, period: int | None) -> tuple[int, int]:
    """(rate, period_seconds) when both are whole numbers nginx can enforce."""
    if not (isinstance(rate, int) and isinstance(period, int)) or rate < 1 or period < 1:
        raise PermanentError(
            f"a throttle needs rate >= 1 and period_seconds >= 1, got rate={rate!r} "
            f"period_seconds={period!r}"
        )
    if rate > MAX_PER_SECOND * period:
        raise PermanentError(
            f"rate {rate} per {period}s is above the {MAX_PER_SECOND} requests per second "
            "nginx is given"
        )
    return rate, period


def canonical_endpoint(value: str) -> str:
    """The endpoint pattern in canonical form (see the module's documentation)."""
    text = value.strip()
    method, space, path = text.partition(" ")
    if not space or text.startswith("/"):
        method, path = "*", text
    if method != "*" and not _METHOD.fullmatch(method):
        raise PermanentError(
            f"endpoint method must be 1 to {MAX_METHOD} capital letters or '*': "
            f"{shown(method)} in {shown(value)}"
        )
    if not path.startswith("/"):
        raise PermanentError(f"endpoint path must start with '/': {shown(value)}")
    if len(path) > MAX_PATH:
        raise PermanentError(f"endpoint path is longer than {MAX_PATH} characters")
    if not _PATH_CHARS.fullmatch(path):
        bad = sorted({c for c in path if not _PATH_CHARS.fullmatch(c)})
        raise PermanentError(
            f"endpoint path may only hold A-Z a-z 0-9 . _ ~ / * % -; refused {bad!r} in "
            f"{shown(value)}"
        )
    pieces = path.split("%")
    for piece in pieces[1:]:
        if not re.match(r"[0-9A-Fa-f]{2}", piece):
            raise PermanentError(f"'%' must start an escape like %2F: {shown(value)}")
    path = _ESCAPE.sub(_decode_escape, path)
    path = re.sub(r"/{2,}", "/", path)
    path = re.sub(r"\*{2,}", "*", path)
    if any(segment in (".", "..") for segment in path.split("/")):
        raise PermanentError(f"endpoint path may not hold '.' or '..' segments: {shown(value)}")
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path if method == "*" else f"{method} {path}"


def _decode_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _DECODED else "%" + match.group(1).upper()


def shown(value: str) -> str:
    """An untrusted value quoted for an error message, cut short."""
    return repr(value[:100] + ("..." if len(value) > 100 else ""))


# --- rendering ---------------------------------------------------------------------------------


def nginx_rate(rate: int, period: int) -> str:
    """The nearest rate nginx can express: whole requests per minute (r/s when exact), >= 1."""
    per_minute = max(1, (rate * 120 + period) // (2 * period))  # rounded half up
    return f"{per_minute // 60}r/s" if per_minute % 60 == 0 else f"{per_minute}r/m"


def burst(rate: int) -> int:
    """Requests allowed at once above the steady rate: the whole allowance of one period."""
    return rate - 1


def zone(rate: int, period: int) -> str:
    """The name of the limit_req zone of one (rate, period) throttle group."""
    return f"clampdown_{rate}_{period}"


def regex(endpoint: str) -> str:
    """The PCRE that `"$request_method $uri"` must match for `endpoint` (canonical)."""
    method, space, path = endpoint.partition(" ")
    if not space:
        method, path = "", endpoint
    out = ["(?s)^", method or "[^ ]+", " "]
    i = 0
    while i < len(path):
        char = path[i]
        if char == "*":
            out.append(".*")
        elif char == ".":
            out.append(r"\.")
        elif char == "%":
            out.append(r"\x" + path[i + 1 : i + 3])
            i += 2
        else:
            out.append(char)
        i += 1
    if not path.endswith(("*", "/")):
        out.append("/?")
    out.append("$")
    return "".join(out)


@dataclass
class Enforced:
    """What a pair of rendered files enforces."""

    blocked: set[IPNetwork] = field(default_factory=set)
    throttled: dict[tuple[int, int], set[IPNetwork]] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    zones: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, specs: Iterable[ContainmentSpec]) -> Enforced:
        """Merge canonical containments: one entry per network, group or endpoint."""
        enforced = cls()
        for spec in specs:
            if spec.kind is ContainmentKind.DISABLE:
                enforced.disabled.add(spec.subject)
                continue
            network = _as_network(spec.subject)
            if spec.kind is ContainmentKind.BLOCK:
                enforced.blocked.add(network)
            else:
                assert spec.rate is not None
                assert spec.period_seconds is not None
                group = (spec.rate, spec.period_seconds)
                enforced.throttled.setdefault(group, set()).add(network)
                enforced.zones.add(zone(*group))
        return enforced

    def holds(self, spec: ContainmentSpec) -> bool:
        """True when the canonical `spec` is enforced."""
        if spec.kind is ContainmentKind.DISABLE:
            return spec.subject in self.disabled
        network = _as_network(spec.subject)
        if spec.kind is ContainmentKind.BLOCK:
            return network in self.blocked
        groups = (
            [(spec.rate, spec.period_seconds)]
            if spec.rate is not None and spec.period_seconds is not None
            else list(self.throttled)
        )
        return any(
            network in self.throttled.get(group, set()) and zone(*group) in self.zones
            for group in groups
        )


def _as_network(subject: str) -> IPNetwork:
    return ipaddress.ip_network(subject, strict=False)


def _network_key(network: IPNetwork) -> tuple[int, int, int]:
    return network.version, int(network.network_address), network.prefixlen


def _entry(network: IPNetwork) -> str:
    """A network as a geo entry: a bare address for a single host."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def render(specs: Sequence[ContainmentSpec]) -> tuple[str, str]:
    """(http file, server file) enforcing the canonical `specs`, with their headers."""
    enforced = Enforced.of(specs)
    http = [
        "# Include inside http {}. Clampdown rewrites this file; see docs/targets/nginx.md.",
        "",
        "# gateway.block: client addresses refused with 403.",
        "geo $clampdown_blocked {",
        "    default 0;",
        *(f"    {_entry(n)} 1;" for n in sorted(enforced.blocked, key=_network_key)),
        "}",
    ]
    server = [
        "# Include inside each protected server {}. Clampdown rewrites this file;",
        "# see docs/targets/nginx.md.",
        "if ($clampdown_blocked) {",
        "    return 403;",
        "}",
        "if ($clampdown_disabled) {",
        "    return 403;",
        "}",
    ]
    for rate, period in sorted(enforced.throttled):
        name = f"{rate}_{period}"
        nginx = nginx_rate(rate, period)
        http += [
            "",
            f"# gateway.throttle: {rate} requests per {period}s, "
            f"as {nginx} burst={burst(rate)}, per client address.",
            f"geo $clampdown_throttled_{name} {{",
            "    default 0;",
            *(
                f"    {_entry(n)} 1;"
                for n in sorted(enforced.throttled[(rate, period)], key=_network_key)
            ),
            "}",
            f"map $clampdown_throttled_{name} $clampdown_throttle_key_{name} {{",
            '    default "";',
            "    1 $binary_remote_addr;",
            "}",
            f"limit_req_zone $clampdown_throttle_key_{name} zone={zone(rate, period)}:"
            f"{ZONE_SIZE} rate={nginx};",
        ]
        server.append(
            f"limit_req zone={zone(rate, period)}"
            + (f" burst={burst(rate)}" if burst(rate) else "")
            + " nodelay;"
        )
    http += [
        "",
        "# gateway.disable_endpoint: requests refused with 403, whoever sends them.",
        'map "$request_method $uri" $clampdown_disabled {',
        '    default "";',
        *(f'    "~{regex(e)}" "{e}";' for e in sorted(enforced.disabled)),
        "}",
    ]
    server.append("limit_req_status 429;")
    return with_header("\n".join(http) + "\n"), with_header("\n".join(server) + "\n")


def with_header(body: str) -> str:
    """`body` under the header line that carries its hash."""
    return f"{HEADER_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}\n{body}"


def intact(text: bytes) -> bool:
    """True when `text` is a rendered file whose body still matches its header's hash."""
    header, newline, body = text.partition(b"\n")
    match = _HEADER.fullmatch(header.decode("ascii", "replace"))
    return bool(newline and match and hashlib.sha256(body).hexdigest() == match.group(1))


# --- reading back ------------------------------------------------------------------------------

_GEO_BLOCKED = "geo $clampdown_blocked {"
_GEO_THROTTLED = re.compile(r"geo \$clampdown_throttled_(\d+)_(\d+) \{")
_MAP_DISABLED = 'map "$request_method $uri" $clampdown_disabled {'
_GEO_ENTRY = re.compile(r"([0-9A-Fa-f.:/]+) 1;")
_MAP_ENTRY = re.compile(r'"~([^"]*)" "([^"]*)";')
_LIMIT_REQ = re.compile(r"limit_req zone=(clampdown_\d+_\d+)(?: burst=\d+)? nodelay;")


def parse(http: str, server: str) -> Enforced:
    """What the rendered files enforce, read from their text (entries of other shapes ignored).

    A disabled endpoint counts only when its regex is the one Clampdown renders for it.
    """
    enforced = Enforced()
    into: set[IPNetwork] | None = None
    in_disabled = False
    for raw in http.splitlines():
        line = raw.strip()
        if line == "}":
            into, in_disabled = None, False
        elif line == _GEO_BLOCKED:
            into = enforced.blocked
        elif match := _GEO_THROTTLED.fullmatch(line):
            into = enforced.throttled.setdefault((int(match[1]), int(match[2])), set())
        elif line == _MAP_DISABLED:
            in_disabled = True
        elif into is not None and (match := _GEO_ENTRY.fullmatch(line)):
            try:
                into.add(_as_network(match[1]))
            except ValueError:
                continue
        elif in_disabled and (match := _MAP_ENTRY.fullmatch(line)):
            try:
                if regex(canonical_endpoint(match[2])) == match[1]:
                    enforced.disabled.add(match[2])
            except PermanentError:
                continue
    for raw in server.splitlines():
        if match := _LIMIT_REQ.fullmatch(raw.strip()):
            enforced.zones.add(match[1])
    return enforced
