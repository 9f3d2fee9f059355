"""A message about a remediation, channel-neutral: every renderer starts from this.

Every string in a `Message` except the link URLs may carry attacker-controlled text from a
finding (a user agent, a path, a title). Renderers must treat them as plain text and escape
them for their format; link URLs are made by Clampdown itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from clampdown.actions.contract import Briefing

_FACTS = (
    ("Alert", "title"),
    ("Type", "type"),
    ("Severity", "severity"),
    ("Source", "source"),
    ("Client IP", "ip"),
    ("Endpoint", "endpoint"),
    ("User agent", "user_agent"),
)


@dataclass(frozen=True)
class Message:
    """Title, text, facts about the finding, what was done, and links for people."""

    title: str
    text: str
    severity: str
    facts: tuple[tuple[str, str], ...]
    done: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    remediation_id: str
    playbook: str
    state: str

    def plain(self) -> str:
        """The message as plain text (for text channels and the text part of mail)."""
        lines = [self.title, "", self.text, ""]
        lines += [f"{label}: {value}" for label, value in self.facts]
        if self.done:
            lines += ["", "Done:"] + [f"- {item}" for item in self.done]
        if self.links:
            lines += [""] + [f"{label}: {url}" for label, url in self.links]
        lines += ["", f"Remediation {self.remediation_id} ({self.playbook}), {self.state}"]
        return "\n".join(lines).strip() + "\n"


def compose(title: str, text: str, briefing: Briefing) -> Message:
    """The message a step sends: its own title and text plus the remediation's briefing."""
    finding = briefing.finding
    api = finding.get("api")
    facts = [(label, str(finding.get(key) or "")) for label, key in _FACTS]
    if isinstance(api, dict) and api.get("api"):
        facts.insert(5, ("API", str(api["api"])))
    return Message(
        title=title or str(finding.get("title") or "Clampdown"),
        text=text,
        severity=str(finding.get("severity") or "unknown"),
        facts=tuple((label, value) for label, value in facts if value),
        done=briefing.done,
        links=tuple((verb.capitalize(), url) for verb, url in sorted(briefing.links.items())),
        remediation_id=briefing.remediation_id,
        playbook=briefing.playbook,
        state=briefing.state,
    )
