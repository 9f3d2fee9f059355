"""Fill a database with a large, realistic store, for benchmarks of what reads it.

`seed(database_url)` writes 100,000 findings over the last 30 days (by default) with what
the engine would have recorded for them: the default pack's remediations in every state
(succeeded, expired, rolled back, failed, rejected, about fifty awaiting approval, a few
running with their guided task open, dry runs of one extra playbook), their steps and
history, a few thousand containments still active on the built-in list (blocks of 1 h,
24 h and 7 days) with their undo jobs, the rest lifted, and guided tasks. Repeats of the
same threat share a fingerprint (recurrence) and bursts are grouped as the playbooks say.
Rows go in with bulk inserts, one transaction per batch; the schema is migrated first.

    python bench/seed.py sqlite:///seeded.db [--findings 100000] [--days 30] [--seed 1]

Prints the rows inserted per table and the seconds taken. Seeding the same database twice
adds a second set of rows.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clampdown.demo.synthetic import Profile, Synthesizer, fill
from clampdown.playbooks import Playbook, load_default_pack
from clampdown.playbooks.loader import load_text
from clampdown.store.db import Database

# A playbook tried out in dry-run mode beside the default pack: its remediations are dry runs.
TRIAL = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: trial-block-credential-stuffing, owner: secops}
spec:
  match:
    types: [credential-stuffing]
    kinds: [alert]
    when: size(finding.ips) > 0
  mode: dry_run
  steps:
    - id: block
      uses: gateway.block
      with:
        target: builtin
        ip: "${{ finding.ip }}"
        scope: "*"
        reason: "Credential stuffing: ${{ finding.title }}"
      expires: 24h
"""

PROFILE = Profile(
    source="bench",
    people=("token:oncall", "console:alice", "cli:bob"),
    networks=(
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
        "2001:db8::/48",
    ),
    expiries=((3600.0, 0.55), (86_400.0, 0.3), (604_800.0, 0.15)),
    weights=(("Recommendation_UnusedEndpoint", 1.0),),
    open_approvals=50,
    open_tasks=8,
    open_window=timedelta(days=10),
)


@dataclass(frozen=True)
class Seeded:
    """What `seed` wrote."""

    rows: dict[str, int]
    seconds: float
    outcomes: dict[str, int]


def playbooks() -> list[Playbook]:
    """The default pack plus the dry-run trial playbook."""
    trial, issues = load_text(TRIAL, "bench/seed.py")
    assert not issues, issues
    return [*load_default_pack(), *trial]


def seed(
    database_url: str,
    *,
    findings: int = 100_000,
    days: int = 30,
    seed: int = 1,
    now: datetime | None = None,
) -> Seeded:
    """Migrate the database and fill it; returns the rows per table and the time taken."""
    began = time.perf_counter()
    now = now or datetime.now(UTC)
    db = Database(database_url)
    try:
        db.migrate()
        synthesizer = Synthesizer(
            playbooks(), PROFILE, seed=seed, now=now, pool=max(40, findings // 15)
        )
        rows = fill(
            db,
            synthesizer,
            count=findings,
            since=now - timedelta(days=days),
            until=now - timedelta(minutes=1),
        )
    finally:
        db.dispose()
    return Seeded(rows, time.perf_counter() - began, dict(synthesizer.outcomes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url", help="e.g. sqlite:///seeded.db")
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    done = seed(args.database_url, findings=args.findings, days=args.days, seed=args.seed)
    width = max(len(name) for name in done.rows)
    for name, count in done.rows.items():
        print(f"{name:<{width}}  {count:>9,}")
    print(f"{'total':<{width}}  {sum(done.rows.values()):>9,}")
    states = ", ".join(f"{state} {n:,}" for state, n in sorted(done.outcomes.items()))
    print(f"remediations by state: {states}")
    print(f"seconds: {done.seconds:.1f}")


if __name__ == "__main__":
    main()
