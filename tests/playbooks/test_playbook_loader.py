"""Loading playbook files: compiled results, and file:line for every problem."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clampdown.errors import PlaybookError
from clampdown.model import Finding, Kind, Mode, Severity
from clampdown.playbooks import Playbook, load_playbooks

Write = Callable[[str, str], Path]
Yaml = Callable[..., str]

VALID = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: contain-suspicious-ip, owner: secops@example.com, description: Block it.}
spec:
  priority: 5
  match:
    types: [API_AccessFromSuspiciousIP, "API_Spike*"]
    kinds: [alert]
    sources: ["defender"]
    severity: ">= medium"
    when: size(finding.ips) > 0
  group: {by: "${{ finding.type }}/${{ finding.ip }}", window: 1h}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", scope: "${{ finding.api.id }}"}
      if: finding.severity_rank >= 3
      expires: 1h30m
    - id: tell
      uses: task.create
      if: steps.block.status == "succeeded"
      with:
        target: builtin
        title: "Blocked ${{ finding.ip }}"
        steps: ["Check ${{ finding.ip }}", "Done"]
"""


def problems(paths: list[Path]) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        load_playbooks(paths)
    return caught.value.problems


def test_valid_document_compiles(write: Write, finding: Finding) -> None:
    [playbook] = load_playbooks([write("pb.yaml", VALID)])
    assert playbook.name == "contain-suspicious-ip"
    assert playbook.owner == "secops@example.com"
    assert playbook.priority == 5
    assert playbook.mode is Mode.AUTOMATIC
    assert playbook.match.types == ("API_AccessFromSuspiciousIP", "API_Spike*")
    assert playbook.match.kinds == frozenset({Kind.ALERT})
    assert playbook.match.severity is not None
    assert playbook.match.severity.admits(Severity.MEDIUM)
    assert playbook.group_window == timedelta(hours=1)
    assert playbook.group_key(finding) == "API_AccessFromSuspiciousIP/203.0.113.7"
    block, tell = playbook.steps
    assert (block.id, block.uses, block.expires, block.line) == (
        "block",
        "gateway.block",
        timedelta(hours=1, minutes=30),
        15,
    )
    assert block.with_["ip"] == "${{ finding.ip }}"
    context = playbook.context(finding, {"block": {"status": "succeeded", "output": {}}})
    assert block.should_run(context)
    assert block.render(context)["ip"] == "203.0.113.7"
    assert tell.should_run(context)
    assert tell.render(context) == {
        "target": "builtin",
        "title": "Blocked 203.0.113.7",
        "steps": ["Check 203.0.113.7", "Done"],
    }
    assert playbook in {playbook}
    assert playbook.path.endswith("pb.yaml")
    assert playbook.line == 1
    assert playbook.line_of("spec", "match", "severity") == 10


def test_defaults_group_by_fingerprint(write: Write, playbook_yaml: Yaml, finding: Finding) -> None:
    [playbook] = load_playbooks([write("pb.yaml", playbook_yaml())])
    assert playbook.group_key(finding) == finding.fingerprint
    assert playbook.group_window == timedelta(0)


def test_directories_multi_document_files_and_yml(write: Write, playbook_yaml: Yaml) -> None:
    write("dir/a.yaml", playbook_yaml("a") + "---\n" + playbook_yaml("b") + "---\n")
    write("dir/sub/c.yml", playbook_yaml("c"))
    write("dir/notes.txt", "not a playbook")
    write("dir/.hidden/d.yaml", "broken: [")
    playbooks = load_playbooks([write("dir/a.yaml", playbook_yaml("a")).parent])
    assert [p.name for p in playbooks] == ["a", "c"]
    write("dir/a.yaml", playbook_yaml("a") + "---\n" + playbook_yaml("b"))
    assert [p.name for p in load_playbooks([Path(playbooks[0].path).parent])] == ["a", "b", "c"]


def test_revision_follows_the_content(write: Write, playbook_yaml: Yaml) -> None:
    first = load_playbooks([write("a.yaml", playbook_yaml())])[0]
    same = load_playbooks([write("b.yaml", "# comment\n" + playbook_yaml())])[0]
    other = load_playbooks([write("c.yaml", playbook_yaml(priority=3))])[0]
    assert first.revision == same.revision != other.revision


def test_error_lines_for_fields(write: Write) -> None:
    path = write(
        "bad.yaml",
        """\
        apiVersion: clampdown/v1
        kind: Playbook
        metadata:
          name: broken
        spec:
          match:
            tpyes: [API_X]
            severity: "> severe"
          mode: sometimes
          steps:
            - id: block
              uses: gateway.block
              expires: soon
            - id: block
              uses: task.create
        """,
    )
    assert problems([path]) == [
        f"{path}:7: playbook broken: spec.match.tpyes: unknown field (did you mean 'types'?)",
        f"{path}:8: playbook broken: spec.match.severity: unknown severity 'severe'"
        " (one of informational, low, medium, high, critical)",
        f"{path}:9: playbook broken: spec.mode: "
        "Input should be 'automatic', 'approval', 'guided' or 'dry_run'",
        f"{path}:13: playbook broken, step block: expires: not a duration: 'soon'"
        " (use for example 30s, 15m, 1h, 1d, 1h30m, or a number of seconds)",
        f"{path}:14: playbook broken, step block: id: duplicate step id 'block', also steps[0]",
    ]


def test_missing_fields_point_at_their_parent(write: Write) -> None:
    path = write(
        "missing.yaml",
        """\
        # leading comment
        apiVersion: clampdown/v1
        kind: Playbook
        metadata: {owner: me}
        spec:
          match: {}
          steps:
            - uses: task.create
        """,
    )
    assert problems([path]) == [
        f"{path}:4: metadata.name: required field is missing",
        f"{path}:5: spec.mode: required field is missing",
        f"{path}:8: step #1: id: required field is missing",
    ]


def test_expression_errors_point_at_the_expression_line(write: Write) -> None:
    path = write(
        "cel.yaml",
        """\
        apiVersion: clampdown/v1
        kind: Playbook
        metadata: {name: cel}
        spec:
          match:
            when: |
              size(finding.ips) > 0 &&
                finding.severity_rank >=
              || true
          mode: automatic
          steps:
            - id: a
              uses: task.create
              if: unknown_thing == 1
              with:
                target: builtin
                why: "fine"
                steps:
                  - "ok"
                  - "Check ${{ finding.ip + }}"
        """,
    )
    found = problems([path])
    assert [line.split(": ", 2)[:2] for line in found] == [
        [f"{path}:9", "playbook cel"],
        [f"{path}:14", "playbook cel, step a"],
        [f"{path}:20", "playbook cel, step a"],
    ]
    assert "spec.match.when: Syntax error" in found[0]
    assert "(at 3:1 of" in found[0]
    assert "if: unknown variable 'unknown_thing'" in found[1]
    assert "with.steps[1]: Syntax error" in found[2]


def test_problems_are_collected_across_files(write: Write, playbook_yaml: Yaml) -> None:
    good = write("good.yaml", playbook_yaml("same"))
    clash = write("clash.yaml", "\n\n" + playbook_yaml("same"))
    broken = write("broken.yaml", "apiVersion: clampdown/v1\nkind: [unclosed\n")
    scalar = write("scalar.yaml", "just text\n")
    dupkey = write(
        "dupkey.yaml", playbook_yaml("dupkey").replace("  mode:", "  mode: guided\n  mode:")
    )
    missing = good.parent / "missing.yaml"
    found = problems([good, clash, broken, scalar, dupkey, missing])
    assert found[0] == f"{missing}:1: no such file or directory"
    assert f"{clash}:5: playbook same: duplicate playbook name, also at {good}:3" in found[-1]
    assert any(p.startswith(f"{broken}:3: not valid YAML") for p in found)
    assert f"{scalar}:1: a playbook must be a mapping" in found
    assert f"{dupkey}:9: playbook dupkey: duplicate key 'mode', first at line 8" in found
    assert len(found) == 5


def test_pack_names_count_when_loaded_together(write: Write, playbook_yaml: Yaml) -> None:
    path = write("mine.yaml", playbook_yaml("block-suspicious-ip"))
    assert len(load_playbooks([path])) == 1
    [problem] = problems_with_pack(path)
    assert problem.startswith(f"{path}:3: playbook block-suspicious-ip: duplicate playbook name")


def problems_with_pack(path: Path) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([path], default_pack=True)
    return caught.value.problems


def test_error_message_is_every_problem(write: Write) -> None:
    path = write("x.yaml", "kind: Playbook\n")
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([path])
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert all(p.startswith(f"{path}:1: ") for p in caught.value.problems)


_FRAGMENTS = st.sampled_from(
    [
        *("finding.ips", "size(finding.ips) > 0", "finding.type == 'x'", "&&", "||", "(", ")"),
        *("${{", "}}", "'", '"', "\\", "{", "steps", "playbook.name", "nope", "\n"),
    ]
)
_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_SOURCES = st.lists(_TEXT | _FRAGMENTS, max_size=6).map(" ".join)


def _outcome(path: Path) -> list[str] | list[Playbook]:
    """The problems of loading `path`, or the playbooks when it loads."""
    try:
        return load_playbooks([path])
    except PlaybookError as exc:
        return exc.problems


def _fuzz_file(
    tmp_path: Path, playbook_yaml: Yaml, where: tuple[str | int, ...], text: str
) -> Path:
    document = yaml.safe_load(playbook_yaml())
    node = document
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = text
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(when=_SOURCES)
def test_any_when_text_loads_or_is_refused(tmp_path: Path, playbook_yaml: Yaml, when: str) -> None:
    """Arbitrary text as `when` compiles, or becomes a PlaybookError; nothing else escapes."""
    path = _fuzz_file(tmp_path, playbook_yaml, ("spec", "match", "when"), when)
    outcome = _outcome(path)
    assert outcome
    for item in outcome:
        assert isinstance(item, Playbook) or item.startswith(f"{path}:")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_SOURCES)
def test_any_template_text_loads_or_is_refused(
    tmp_path: Path, playbook_yaml: Yaml, text: str
) -> None:
    """Arbitrary text in a `with` value compiles as a template, or becomes a PlaybookError."""
    path = _fuzz_file(tmp_path, playbook_yaml, ("spec", "steps", 0, "with", "reason"), text)
    outcome = _outcome(path)
    assert outcome
    for item in outcome:
        assert isinstance(item, Playbook) or item.startswith(f"{path}:")
