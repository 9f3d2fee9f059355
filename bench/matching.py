"""Benchmark: per-finding cost of matching against 10,000 playbooks.

Generates --playbooks playbooks (seeded: every run sees the same set) shaped like a large
deployment where teams own playbooks for their APIs and for their other detectors:

- 30% for Defender for APIs types (1-3 exact types each), most of them scoped to one team's
  APIs with a `when` such as `finding.api.api == "api-042"`, the others generic with a severity
  threshold, a source or a kind;
- 60% for other detectors (OCSF products, Sentinel analytics rules, WAF signatures): 1-3 exact
  types out of 3,000, some with a `when` on the IPs, properties or endpoint;
- 9.8% glob patterns over families of types (`Custom_Detection_01*`, `API_Spike*`, ...);
- 0.2% catch-alls (`*` with a severity threshold: "page on anything critical").

They are loaded with the real loader (YAML, schema, CEL compilation) into the real `Matcher`;
then every sample finding of the shared fixtures is matched --rounds times after a warm-up,
each `Matcher.match` call timed on its own.

Prints the load time, then per sample finding: how many playbooks share its type (candidates),
how many of those carry a `when`, how many match, and p50/p99 of one call; then p50, p99 and
mean over all calls against the target (< 100 microseconds per finding); and where the time
goes: the fixed cost of preparing a finding for CEL, and the cost of one `when`.

    python bench/matching.py [--playbooks 10000] [--rounds 2000] [--seed 7]
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import random
import statistics
import time
from collections.abc import Callable

from clampdown.model import Finding
from clampdown.playbooks import Matcher, Playbook
from clampdown.playbooks.expressions import Needs
from clampdown.playbooks.loader import load_text
from clampdown.sources import normalize
from common import HERE, percentile

TARGET_US = 100.0
FIXTURES = HERE.parent.parent / "shared" / "fixtures" / "findings"

DEFENDER = [
    "API_AccessFromSuspiciousIP",
    "API_AccessFromTorExitNode",
    "API_AccessFromSuspiciousUserAgent",
    "API_SpikeInAPITraffic",
    "API_SpikeInPayload",
    "API_SpikeInLatency",
    "API_SprayInRequests",
    "API_ParameterEnumeration",
    "API_PopulationSpikeInAPITraffic",
    "API_DistributedParameterEnumeration",
    "API_UnseenParamType",
    "API_UnseenParam",
    "Recommendation_UnauthenticatedEndpoint",
    "Recommendation_UnusedEndpoint",
    "Recommendation_SubscriptionScopedToAllApis",
]
OTHER = [
    "credential-stuffing",
    "account-takeover",
    "bot-traffic",
    *(f"Custom_Detection_{n:04d}" for n in range(2000)),
    *(f"WAF_Rule_{n:05d}" for n in range(0, 99_700, 100)),
]
GLOBS = [
    *(f"Custom_Detection_{n:02d}*" for n in range(20)),
    *(f"WAF_Rule_{n}*" for n in range(10)),
    "*-takeover",
    "bot-*",
]
DEFENDER_GLOBS = [
    "API_Spike*",
    "API_Access*",
    "API_*Enumeration",
    "API_Unseen*",
    "Recommendation_*",
]
SEVERITIES = [">= low", ">= medium", ">= high", "== critical", "< high", "medium"]
# The APIs of the samples are among them: some team playbooks match each sample finding.
SAMPLE_APIS = ["orders-api", "payments-api", "users-api", "accounts-api", "search-api"]
APIS = [*SAMPLE_APIS, "customers-api", "legacy-api", *(f"api-{n:03d}" for n in range(393))]
OTHER_WHENS = [
    "size(finding.ips) > 0",
    '!finding.ips.exists(ip, ip.startsWith("10."))',
    '"API endpoint" in finding.properties',
    'finding.endpoint.startsWith("GET ")',
    "finding.severity_rank >= 3 && size(finding.users) > 0",
]


def _match(rng: random.Random) -> dict[str, object]:
    roll = rng.random()
    match: dict[str, object]
    if roll < 0.30:
        match = {"types": rng.sample(DEFENDER, rng.randint(1, 3))}
        if rng.random() < 0.8:
            team = rng.sample(APIS, rng.randint(1, 2))
            match["when"] = (
                f'finding.api.api == "{team[0]}"'
                if len(team) == 1
                else f"finding.api.api in {json.dumps(team)}"
            )
        else:
            match["sources"] = ["defender"]
    elif roll < 0.90:
        match = {"types": rng.sample(OTHER, rng.randint(1, 3))}
        match["sources"] = [rng.choice(["ocsf:*", "sentinel", "generic"])]
        if rng.random() < 0.1:
            match["when"] = rng.choice(OTHER_WHENS)
    elif roll < 0.998:
        pattern = rng.choice(DEFENDER_GLOBS) if rng.random() < 0.1 else rng.choice(GLOBS)
        match = {"types": [pattern]}
        if rng.random() < 0.3:
            match["when"] = rng.choice(OTHER_WHENS)
    else:
        match = {"types": ["*"], "severity": ">= high"}
    if "severity" not in match and rng.random() < 0.4:
        match["severity"] = rng.choice(SEVERITIES)
    if rng.random() < 0.5:
        match["kinds"] = ["alert"]
    return match


def playbook_yaml(n: int, rng: random.Random) -> str:
    """One generated playbook document."""
    match = _match(rng)
    if rng.random() < 0.5:
        steps = (
            "    - id: block\n      uses: gateway.block\n"
            '      with: {target: builtin, ip: "${{ finding.ip }}", scope: "*"}\n'
            "      expires: 1h\n"
        )
    else:
        steps = (
            "    - id: task\n      uses: task.create\n"
            '      with: {target: builtin, title: "Look at ${{ finding.title }}", due: 1d}\n'
        )
    return (
        "apiVersion: clampdown/v1\nkind: Playbook\n"
        f"metadata: {{name: generated-{n:05d}, owner: team-{n % 40}}}\n"
        f"spec:\n  priority: {rng.randint(-10, 10)}\n"
        f"  match: {json.dumps(match)}\n  mode: automatic\n  steps:\n{steps}"
    )


def generate(count: int, seed: int) -> list[Playbook]:
    rng = random.Random(seed)
    text = "---\n".join(playbook_yaml(n, rng) for n in range(count))
    playbooks, issues = load_text(text, "generated.yaml")
    if issues:
        raise SystemExit(f"generated playbooks do not load: {issues[0]}")
    return playbooks


def samples() -> list[Finding]:
    found: list[Finding] = []
    for path in sorted(FIXTURES.glob("*.json")):
        found.extend(normalize(json.loads(path.read_text())))
    if not found:
        raise SystemExit(f"no sample findings in {FIXTURES}")
    return found


def candidates(playbooks: list[Playbook], finding: Finding) -> tuple[int, int]:
    """How many playbooks share the finding's type, and how many of those have a `when`."""
    same = [
        p for p in playbooks if any(fnmatch.fnmatchcase(finding.type, t) for t in p.match.types)
    ]
    return len(same), sum(1 for p in same if p.match.when is not None)


def _mean_us(fn: Callable[[], object], n: int = 2000) -> float:
    for _ in range(200):
        fn()
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def breakdown(playbooks: list[Playbook], findings: list[Finding]) -> None:
    """Where the time of one plain CEL evaluation of the candidates would go."""
    busiest = max(findings, key=lambda f: candidates(playbooks, f)[0])
    same = [
        p for p in playbooks if any(fnmatch.fnmatchcase(busiest.type, t) for t in p.match.types)
    ]
    whens = [p.match.when for p in same if p.match.when is not None]
    needs = Needs()
    for when in whens:
        needs |= when.needs
    view = busiest.expression_view()
    context = needs.bind({"finding": view})
    per_when = statistics.fmean(_mean_us(lambda w=w: w.evaluate(context), 500) for w in whens)
    print(
        f"\nwhere the time goes ({busiest.type}: {len(same)} candidates, "
        f"{len(whens)} with a `when`):\n"
        f"  finding.expression_view(): {_mean_us(busiest.expression_view):.1f} µs\n"
        f"  binding {sorted(needs.finding_fields or ['finding'])} for CEL: "
        f"{_mean_us(lambda: needs.bind({'finding': view})):.1f} µs\n"
        f"  one `when` in CEL, context bound: {per_when:.2f} µs (x {len(whens)} = "
        f"{per_when * len(whens):.0f} µs if each ran)"
    )


def main(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    playbooks = generate(args.playbooks, args.seed)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    matcher = Matcher(playbooks)
    indexed = time.perf_counter() - start
    print(
        f"{len(playbooks):,} playbooks: loaded (YAML, schema, CEL) in {loaded:.1f} s, "
        f"indexed in {indexed * 1000:.0f} ms; "
        f"{sum(1 for p in playbooks if p.match.when is not None):,} with a `when`"
    )
    findings = samples()
    for finding in findings:  # warm-up: candidate cache, CEL programs, CPU caches
        for _ in range(200):
            matcher.match(finding)
    all_us: list[float] = []
    print(
        f"\n{'finding type':<40} {'cand.':>6} {'when':>5} {'match':>6} {'p50 µs':>8} {'p99 µs':>8}"
    )
    gc.collect()
    per_finding: dict[int, list[float]] = {i: [] for i in range(len(findings))}
    clock = time.perf_counter_ns
    for _ in range(args.rounds):
        for index, finding in enumerate(findings):
            before = clock()
            matcher.match(finding)
            per_finding[index].append((clock() - before) / 1000)
    for index, finding in enumerate(findings):
        times = per_finding[index]
        all_us.extend(times)
        total, whens = candidates(playbooks, finding)
        matched = len(matcher.match(finding))
        print(
            f"{finding.type:<40} {total:>6} {whens:>5} {matched:>6} "
            f"{percentile(times, 50):>8.1f} {percentile(times, 99):>8.1f}"
        )
    p50, p99, mean = percentile(all_us, 50), percentile(all_us, 99), statistics.fmean(all_us)
    verdict = "met" if p99 < TARGET_US else "NOT met"
    print(
        f"\nper-finding matching over {len(all_us):,} calls: p50 {p50:.1f} µs, p99 {p99:.1f} µs, "
        f"mean {mean:.1f} µs (target < {TARGET_US:.0f} µs: {verdict})"
    )
    breakdown(playbooks, findings)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--playbooks", type=int, default=10_000, help="how many to generate")
    parser.add_argument("--rounds", type=int, default=2000, help="calls per sample finding")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generator")
    main(parser.parse_args())
