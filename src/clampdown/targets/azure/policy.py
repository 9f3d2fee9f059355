"""Surgical edits of Azure API Management policy XML.

Clampdown owns one marked region in the inbound section of a policy; everything else is the
owner's and stays byte for byte. Raw policies may hold C# policy expressions with unescaped
`<`, `&` and quotes, so the text is scanned and spliced, never parsed and re-serialized.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from clampdown.actions.contract import ContainmentSpec
from clampdown.model import ContainmentKind, SubjectType

BEGIN = "<!-- clampdown:begin: managed by Clampdown, do not edit -->"
END = "<!-- clampdown:end -->"
CREATED = "<!-- clampdown:created -->"
BEGIN_ADDED = "<!-- clampdown:begin: managed by Clampdown, do not edit; added <inbound> -->"
"""Begin marker of a region whose whole `<inbound>` section Clampdown added."""
EXPANDED_PREFIX = "<!-- clampdown:begin: managed by Clampdown, do not edit; expanded "
"""Begin marker of a region that expanded a self-closing inbound; the original tag follows."""

MAX_RENEWAL_SECONDS = 300

SKELETON = (
    "<policies>\n    <inbound>\n        <base />\n    </inbound>\n"
    "    <backend>\n        <base />\n    </backend>\n"
    "    <outbound>\n        <base />\n    </outbound>\n"
    "    <on-error>\n        <base />\n    </on-error>\n</policies>"
)
CREATED_SKELETON = SKELETON.replace("<policies>", "<policies>\n    " + CREATED, 1)
"""The policy Clampdown writes where none existed, before its region is inserted."""

_BEGIN_STEM = "<!-- clampdown:begin"
_END_STEM = "<!-- clampdown:end"
_SELF_CLOSING_INBOUND = re.compile(r"<inbound\s*/>")
_SUBSCRIPTION_ID = re.compile(r"[A-Za-z0-9._-]{1,256}")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Enforced = tuple[str, str, str]


# --- rendering ---------------------------------------------------------------------------------


def render_owned(specs: Sequence[ContainmentSpec]) -> str:
    """Clampdown's region for one scope: every containment given, merged, in a stable order."""
    if not specs:
        return ""
    scopes = {spec.scope for spec in specs}
    if len(scopes) > 1:
        raise ValueError(f"containments for several scopes in one policy: {sorted(scopes)}")
    disable = False
    ips: set[IPAddress] = set()
    networks: set[IPNetwork] = set()
    limits: dict[tuple[SubjectType, str], tuple[int, int]] = {}
    for spec in specs:
        kind, subject_type = spec.kind, spec.subject_type
        if kind is ContainmentKind.DISABLE:
            disable = True
        elif kind is ContainmentKind.BLOCK and subject_type is SubjectType.IP:
            ips.add(_address(spec.subject))
        elif kind is ContainmentKind.BLOCK and subject_type is SubjectType.CIDR:
            networks.add(_network(spec.subject))
        elif kind is ContainmentKind.THROTTLE and subject_type in (
            SubjectType.IP,
            SubjectType.SUBSCRIPTION,
        ):
            subject = (
                str(_address(spec.subject))
                if subject_type is SubjectType.IP
                else _subscription(spec.subject)
            )
            limit = _limit(spec)
            key = (subject_type, subject)
            # One limit per subject: rate-limit-by-key counters are shared by key value, and
            # only the first matching <when> of a <choose> runs, so the strictest one wins.
            if key in limits:
                limit = min(limit, limits[key], key=_strictness)
            limits[key] = limit
        else:
            raise ValueError(
                f"APIM policies cannot enforce {kind.value} of subject type {subject_type.value}"
            )

    lines: list[str] = []
    if disable:
        lines += [
            "<return-response>",
            '    <set-status code="403" reason="Forbidden" />',
            "</return-response>",
        ]
    if ips or networks:
        lines.append('<ip-filter action="forbid">')
        lines += [f"    <address>{_text(str(ip))}</address>" for ip in sorted(ips, key=_ip_key)]
        for net in sorted(networks, key=_network_key):
            first, last = str(net.network_address), str(net.broadcast_address)
            lines.append(f"    <address-range from={_attr(first)} to={_attr(last)} />")
        lines.append("</ip-filter>")
    lines += _throttles(limits, SubjectType.IP)
    lines += _throttles(limits, SubjectType.SUBSCRIPTION)
    return "\n" + "\n".join(lines) + "\n"


def _throttles(
    limits: dict[tuple[SubjectType, str], tuple[int, int]], kind: SubjectType
) -> list[str]:
    groups: dict[tuple[int, int], list[str]] = {}
    for (subject_type, subject), limit in limits.items():
        if subject_type is kind:
            groups.setdefault(limit, []).append(subject)
    if not groups:
        return []
    if kind is SubjectType.IP:
        value, counter_key = "context.Request.IpAddress", "@(context.Request.IpAddress)"
    else:
        value, counter_key = (
            "context.Subscription?.Id",
            '@(context.Subscription?.Id ?? "anonymous")',
        )
    lines = ["<choose>"]
    for (calls, renewal), subjects in sorted(groups.items()):
        if kind is SubjectType.IP:
            subjects.sort(key=lambda s: _ip_key(ipaddress.ip_address(s)))
        else:
            subjects.sort()
        listed = ", ".join(f'"{subject}"' for subject in subjects)
        condition = f"@(new[] {{{listed}}}.Contains({value}))"
        lines += [
            f"    <when condition={_attr(condition)}>",
            f'        <rate-limit-by-key calls="{calls}" renewal-period="{renewal}"'
            f" counter-key={_attr(counter_key)} />",
            "    </when>",
        ]
    lines.append("</choose>")
    return lines


def _limit(spec: ContainmentSpec) -> tuple[int, int]:
    """(calls, renewal-period) with the period capped as APIM requires, the rate kept."""
    rate, period = spec.rate, spec.period_seconds
    if rate is None or period is None or rate < 1 or period < 1:
        raise ValueError(
            f"throttle of {spec.subject_type.value} needs rate >= 1 and period_seconds >= 1, "
            f"got rate={rate} period_seconds={period}"
        )
    if period > MAX_RENEWAL_SECONDS:
        return max(1, rate * MAX_RENEWAL_SECONDS // period), MAX_RENEWAL_SECONDS
    return rate, period


def _strictness(limit: tuple[int, int]) -> tuple[Fraction, int]:
    return Fraction(limit[0], limit[1]), limit[1]


def _address(value: str) -> IPAddress:
    """A validated IP address; scope ids (`fe80::1%x`) are refused as they may hold anything."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"not an IP address: {value[:100]!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ValueError(f"IP address with a scope id is not allowed: {value[:100]!r}")
    return address


def _network(value: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not a CIDR network: {value[:100]!r}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.scope_id is not None:
        raise ValueError(f"network with a scope id is not allowed: {value[:100]!r}")
    return network


def _subscription(value: str) -> str:
    if not _SUBSCRIPTION_ID.fullmatch(value):
        raise ValueError(f"not a valid APIM subscription id: {value[:100]!r}")
    return value


def _ip_key(address: IPAddress) -> tuple[int, int]:
    return address.version, int(address)


def _network_key(network: IPNetwork) -> tuple[int, int, int]:
    return network.version, int(network.network_address), network.prefixlen


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    return '"' + _text(value).replace('"', "&quot;") + '"'


# --- scanning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # comment, cdata, pi, decl, start, end, empty
    name: str
    start: int
    end: int


_NAME = re.compile(r"[A-Za-z_:][-A-Za-z0-9._:]*")
_MARKUP = re.compile(r"[<@]")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _tokens(text: str) -> Iterator[_Tok]:
    """Markup of a raw policy in order; text and policy expressions are skipped."""
    return _Scanner(text).tokens()


class _Scanner:
    """A lenient tokenizer for raw policies, where C# expressions may hold `<`, `&` and quotes."""

    def __init__(self, text: str) -> None:
        self.text = text
        # Unbalanced expressions are rescanned from every `@(`; cap the total so that a
        # pathological policy fails fast instead of taking quadratic time.
        self.steps_left = 16 * len(text) + 100_000

    def tokens(self) -> Iterator[_Tok]:
        text = self.text
        i = 0
        while (match := _MARKUP.search(text, i)) is not None:
            j = match.start()
            if text[j] == "@":
                end = None
                # APIM only reads @(...) / @{...} as code when it is the whole element text.
                before = _back_space(text, j)
                if text.startswith(("@(", "@{"), j) and before > 0 and text[before - 1] == ">":
                    end = self.skip_code(j + 1)
                i = end if end is not None else j + 1
                continue
            for opener, closer, kind in (
                ("<!--", "-->", "comment"),
                ("<![CDATA[", "]]>", "cdata"),
                ("<?", "?>", "pi"),
                ("<!", ">", "decl"),
            ):
                if text.startswith(opener, j):
                    k = text.find(closer, j + len(opener))
                    if k < 0:
                        raise ValueError(f"policy has an unterminated {kind} at offset {j}")
                    yield _Tok(kind, "", j, k + len(closer))
                    i = k + len(closer)
                    break
            else:
                tok = self.end_tag(j) if text.startswith("</", j) else self.start_tag(j)
                if tok is None:
                    i = j + 1  # a bare `<` in text, as raw policies allow
                else:
                    yield tok
                    i = tok.end

    def end_tag(self, j: int) -> _Tok | None:
        text = self.text
        name = _NAME.match(text, j + 2)
        if name is None:
            return None
        k = _skip_space(text, name.end())
        if not text.startswith(">", k):
            return None
        return _Tok("end", name.group(), j, k + 1)

    def start_tag(self, j: int) -> _Tok | None:
        text = self.text
        name = _NAME.match(text, j + 1)
        if name is None:
            return None
        k = name.end()
        while True:
            space_end = _skip_space(text, k)
            if text.startswith("/>", space_end):
                return _Tok("empty", name.group(), j, space_end + 2)
            if text.startswith(">", space_end):
                return _Tok("start", name.group(), j, space_end + 1)
            attribute = _NAME.match(text, space_end)
            if space_end == k or attribute is None:
                return None
            k = _skip_space(text, attribute.end())
            if not text.startswith("=", k):
                return None
            k = _skip_space(text, k + 1)
            value_end = self.attribute_end(k)
            if value_end is None:
                return None
            k = value_end

    def attribute_end(self, k: int) -> int | None:
        """Index just past a quoted attribute value; an expression in it may hold the quote."""
        text = self.text
        if k >= len(text) or text[k] not in "\"'":
            return None
        quote = text[k]
        if text.startswith(("@(", "@{"), k + 1):
            end = self.skip_code(k + 2)
            if end is not None and text.startswith(quote, end):
                return end + 1
        close = text.find(quote, k + 1)
        return close + 1 if close >= 0 else None

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise ValueError("policy has too many unbalanced policy expressions to scan")

    def skip_code(self, i: int) -> int | None:
        """Index just past the C# bracket group opening at `i`; None when it is not balanced."""
        text = self.text
        stack: list[str] = []
        n = len(text)
        k = i
        while k < n:
            self.step()
            c = text[k]
            if c in _CLOSERS:
                stack.append(_CLOSERS[c])
                k += 1
            elif c in ")]}":
                if not stack or stack.pop() != c:
                    return None
                k += 1
                if not stack:
                    return k
            elif text.startswith(('$@"', '@$"'), k):
                end = self.skip_string(k + 3, verbatim=True, interpolated=True)
                if end is None:
                    return None
                k = end
            elif text.startswith(('$"', '@"', '"'), k):
                prefix = 1 if c == '"' else 2
                end = self.skip_string(k + prefix, verbatim=c == "@", interpolated=c == "$")
                if end is None:
                    return None
                k = end
            elif c == "'":
                k = _skip_char(text, k)
            elif text.startswith("//", k):
                newline = text.find("\n", k)
                k = n if newline < 0 else newline
            elif text.startswith("/*", k):
                close = text.find("*/", k + 2)
                if close < 0:
                    return None
                k = close + 2
            else:
                k += 1
        return None

    def skip_string(self, k: int, *, verbatim: bool, interpolated: bool) -> int | None:
        text = self.text
        n = len(text)
        while k < n:
            self.step()
            c = text[k]
            if c == "\\" and not verbatim:
                k += 2
            elif c == '"':
                if verbatim and text.startswith('""', k):
                    k += 2
                else:
                    return k + 1
            elif interpolated and text.startswith(("{{", "}}"), k):
                k += 2
            elif interpolated and c == "{":
                end = self.skip_code(k)
                if end is None:
                    return None
                k = end
            elif c == "\n" and not verbatim:
                return None
            else:
                k += 1
        return None


def _skip_space(text: str, k: int) -> int:
    while k < len(text) and text[k].isspace():
        k += 1
    return k


def _skip_char(text: str, k: int) -> int:
    """Past a C# char literal at `k`, or just past the quote when it is not one."""
    j = k + 1
    if text.startswith("\\", j):
        j += 2
    else:
        j += 1
    close = text.find("'", j, j + 8)
    return close + 1 if close >= 0 else k + 1


# --- locating ----------------------------------------------------------------------------------


@dataclass
class _Doc:
    root: _Tok | None = None
    inbound: _Tok | None = None
    inbounds: int = 0  # <inbound> tags directly under the root
    stray_inbound: bool = False  # <inbound> tags anywhere else
    begin: _Tok | None = None
    end: _Tok | None = None


def _analyse(text: str) -> _Doc:
    doc = _Doc()
    begins: list[_Tok] = []
    ends: list[_Tok] = []
    depth = 0
    for tok in _tokens(text):
        if tok.kind == "comment":
            if text.startswith(_BEGIN_STEM, tok.start):
                begins.append(tok)
            elif text.startswith(_END_STEM, tok.start):
                ends.append(tok)
            continue
        if tok.kind not in ("start", "end", "empty"):
            continue
        if doc.root is None:
            doc.root = tok
            depth = 1 if tok.kind == "start" else 0
            continue
        if depth == 0:
            continue
        if tok.name == "inbound" and tok.kind != "end":
            if depth == 1:
                doc.inbounds += 1
                doc.inbound = doc.inbound or tok
            else:
                doc.stray_inbound = True
        depth += {"start": 1, "end": -1}.get(tok.kind, 0)

    if len(begins) > 1:
        raise ValueError(f"policy has {len(begins)} clampdown begin markers")
    if len(ends) > 1:
        raise ValueError(f"policy has {len(ends)} clampdown end markers")
    if begins and not ends:
        raise ValueError("policy has a clampdown begin marker without an end marker")
    if ends and not begins:
        raise ValueError("policy has a clampdown end marker without a begin marker")
    if begins:
        doc.begin, doc.end = begins[0], ends[0]
        if doc.end.start < doc.begin.end:
            raise ValueError("policy has the clampdown end marker before the begin marker")
        if text[doc.end.start : doc.end.end] != END:
            raise ValueError("policy has an unrecognised clampdown end marker")
        _mode(text[doc.begin.start : doc.begin.end])
    return doc


def _mode(marker: str) -> tuple[str, str]:
    """How the region was inserted: plain, added or expanded (with the original tag)."""
    if marker == BEGIN:
        return "plain", ""
    if marker == BEGIN_ADDED:
        return "added", ""
    if marker.startswith(EXPANDED_PREFIX) and marker.endswith(" -->"):
        tag = marker[len(EXPANDED_PREFIX) : -len(" -->")]
        if _SELF_CLOSING_INBOUND.fullmatch(tag):
            return "expanded", tag
    raise ValueError(f"policy has an unrecognised clampdown begin marker: {marker[:200]!r}")


# --- splicing ----------------------------------------------------------------------------------

_NEXT_INDENT = re.compile(r"[ \t]*\r?\n([ \t]*)(?!\s|</)")
_EXPANDED_TAIL = re.compile(r"\r?\n[ \t]*</inbound>")
_ADDED_TAIL = re.compile(r"\r?\n[ \t]*<base />\r?\n[ \t]*</inbound>")
_BETWEEN_TAGS = re.compile(r">\s+<")


def apply_owned(policy: str | None, owned: str) -> str | None:
    """The policy with Clampdown's region set to `owned` ("" removes it); None means delete it."""
    _check_owned(owned)
    if policy is None:
        return apply_owned(CREATED_SKELETON, owned) if owned else None
    doc = _analyse(policy)
    if doc.root is None or doc.root.name != "policies" or doc.root.kind != "start":
        raise ValueError("policy has no <policies> root element")
    if doc.begin is not None and doc.end is not None:
        if owned:
            indent = _line_indent(policy, doc.begin.start)
            inner = _indented(owned, _newline(policy), indent)
            return policy[: doc.begin.end] + inner + policy[doc.end.start :]
        result = _remove(policy, doc.begin, doc.end)
    elif owned:
        return _insert(policy, doc, owned)
    else:
        result = policy
    if _squash(result) == _squash(CREATED_SKELETON):
        return None
    return result


def read_owned(policy: str | None) -> str:
    """The inner text of Clampdown's region, as `render_owned` gave it ("" when there is none)."""
    if policy is None:
        return ""
    doc = _analyse(policy)
    if doc.begin is None or doc.end is None:
        return ""
    indent = _line_indent(policy, doc.begin.start)
    inner = policy[doc.begin.end : doc.end.start]
    return re.sub(r"\r?\n(?:" + re.escape(indent) + ")?", "\n", inner)


def _insert(text: str, doc: _Doc, owned: str) -> str:
    newline = _newline(text)
    inbound = doc.inbound
    if doc.inbounds > 1:
        raise ValueError("policy has more than one <inbound> section")
    if inbound is None and doc.stray_inbound:
        raise ValueError("cannot tell where the policy's <inbound> section is")
    if inbound is not None and inbound.kind == "start":
        indent = _next_indent(text, inbound.end)
        if indent is None:
            outer = _line_indent(text, inbound.start)
            indent = outer + _unit(outer)
        region = newline + indent + BEGIN + _indented(owned, newline, indent) + END
        return text[: inbound.end] + region + text[inbound.end :]
    if inbound is not None:
        tag = text[inbound.start : inbound.end]
        if not _SELF_CLOSING_INBOUND.fullmatch(tag):
            raise ValueError(f"cannot expand an inbound tag with attributes: {tag[:200]!r}")
        outer = _line_indent(text, inbound.start)
        indent = outer + _unit(outer)
        section = (
            "<inbound>"
            + newline
            + indent
            + EXPANDED_PREFIX
            + tag
            + " -->"
            + _indented(owned, newline, indent)
            + END
            + newline
            + outer
            + "</inbound>"
        )
        return text[: inbound.start] + section + text[inbound.end :]
    root = doc.root
    assert root is not None
    outer_or_none = _next_indent(text, root.end)
    if outer_or_none is None:
        root_indent = _line_indent(text, root.start)
        outer_or_none = root_indent + _unit(root_indent)
    outer = outer_or_none
    indent = outer + _unit(outer)
    # <base /> keeps the parent scopes' inbound policies running, as they did before.
    section = (
        newline
        + outer
        + "<inbound>"
        + newline
        + indent
        + BEGIN_ADDED
        + _indented(owned, newline, indent)
        + END
        + newline
        + indent
        + "<base />"
        + newline
        + outer
        + "</inbound>"
    )
    return text[: root.end] + section + text[root.end :]


def _remove(text: str, begin: _Tok, end: _Tok) -> str:
    """The text without the region and exactly what `_insert` put around it."""
    mode, tag = _mode(text[begin.start : begin.end])
    before = _back_break(text, _back_space_tabs(text, begin.start))
    if before is not None and mode == "expanded":
        opening = _back_literal(text, before, "<inbound>")
        tail = _EXPANDED_TAIL.match(text, end.end)
        if opening is not None and tail is not None:
            return text[:opening] + tag + text[tail.end() :]
    if before is not None and mode == "added":
        opening = _back_literal(text, before, "<inbound>")
        start = None
        if opening is not None:
            start = _back_break(text, _back_space_tabs(text, opening))
        tail = _ADDED_TAIL.match(text, end.end)
        if start is not None and tail is not None:
            return text[:start] + text[tail.end() :]
    # Plain, or the owner changed the section around the region: take out only the region.
    start = before if before is not None else begin.start
    return text[:start] + text[end.end :]


def _check_owned(owned: str) -> None:
    if not owned:
        return
    if "\r" in owned or "<!" in owned or "<?" in owned:
        raise ValueError("owned region must be plain elements with \\n line breaks")
    _fragment(owned)


def _fragment(inner: str) -> ET.Element:
    """The region parsed; it is Clampdown's own well-formed XML, without DTDs or entities."""
    lowered = inner.lower()
    if "<!doctype" in lowered or "<!entity" in lowered:
        raise ValueError("clampdown region must not declare a DTD or entities")
    try:
        return ET.fromstring(f"<clampdown>{inner}</clampdown>")  # noqa: S314 - no DTD (above)
    except ET.ParseError as error:
        raise ValueError(f"clampdown region is not well-formed XML: {error}") from None


def _indented(owned: str, newline: str, indent: str) -> str:
    return owned.replace("\n", newline + indent)


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _unit(indent: str) -> str:
    return "\t" if "\t" in indent else "    "


def _next_indent(text: str, pos: int) -> str | None:
    """Indentation of the line after `pos` when that line holds content, not a closing tag."""
    match = _NEXT_INDENT.match(text, pos)
    return match.group(1) if match else None


def _line_indent(text: str, pos: int) -> str:
    start = _back_space_tabs(text, pos)
    if start == 0 or text[start - 1] in "\r\n":
        return text[start:pos]
    return ""


def _back_space_tabs(text: str, pos: int) -> int:
    while pos > 0 and text[pos - 1] in " \t":
        pos -= 1
    return pos


def _back_space(text: str, pos: int) -> int:
    while pos > 0 and text[pos - 1].isspace():
        pos -= 1
    return pos


def _back_break(text: str, pos: int) -> int | None:
    if pos >= 2 and text.startswith("\r\n", pos - 2):
        return pos - 2
    if pos >= 1 and text[pos - 1] == "\n":
        return pos - 1
    return None


def _back_literal(text: str, pos: int, literal: str) -> int | None:
    start = pos - len(literal)
    return start if start >= 0 and text.startswith(literal, start) else None


def _squash(text: str) -> str:
    return _BETWEEN_TAGS.sub("><", text.strip())


# --- reading back ------------------------------------------------------------------------------


def enforced(policy: str | None) -> set[Enforced]:
    """(kind, subject_type, subject) for every containment the region enforces."""
    inner = read_owned(policy)
    if not inner.strip():
        return set()
    result: set[Enforced] = set()
    for element in _fragment(inner):
        if element.tag == "return-response":
            result.add(("disable", "endpoint", "*"))
        elif element.tag == "ip-filter" and element.get("action") == "forbid":
            result |= _blocked(element)
        elif element.tag == "choose":
            for when in element.iter("when"):
                if when.find("rate-limit-by-key") is not None:
                    result |= _throttled(when.get("condition", ""))
    return result


def _blocked(ip_filter: ET.Element) -> set[Enforced]:
    result: set[Enforced] = set()
    for child in ip_filter:
        if child.tag == "address":
            result.add(("block", "ip", _canonical((child.text or "").strip())))
        elif child.tag == "address-range":
            first, last = child.get("from", "").strip(), child.get("to", "").strip()
            result.add(("block", *_as_cidr(first, last)))
    return result


def _as_cidr(first: str, last: str) -> tuple[str, str]:
    try:
        networks = list(
            ipaddress.summarize_address_range(
                ipaddress.ip_address(first), ipaddress.ip_address(last)
            )
        )
    except (ValueError, TypeError):
        networks = []
    if len(networks) == 1:
        return "cidr", str(networks[0])
    return "range", f"{_canonical(first)}-{_canonical(last)}"


def _throttled(condition: str) -> set[Enforced]:
    listed, _, tested = condition.partition(".Contains(")
    if "context.Subscription" in tested:
        subject_type = "subscription"
    elif "context.Request.IpAddress" in tested:
        subject_type = "ip"
    else:
        return set()
    subjects = re.findall(r'"([^"]*)"', listed)
    if subject_type == "ip":
        subjects = [_canonical(subject) for subject in subjects]
    return {("throttle", subject_type, subject) for subject in subjects}


def _canonical(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value
