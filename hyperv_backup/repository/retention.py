"""Retention: which snapshots a keep-policy keeps, per VM, and why (restic's semantics).

Per VM (by its id, so a renamed VM keeps one history), snapshots are taken newest first.
``keep_last`` keeps the newest *n*. Each of ``keep_hourly`` … ``keep_yearly`` keeps, for
the *n* most recent hours/days/ISO weeks/months/years that have snapshots, the newest
snapshot of that period. A snapshot kept by several rules lists every reason.

Whatever the policy, the newest successful backup of every VM is kept: retention must never
leave a VM without a restorable backup (a policy of all zeros is refused outright).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from pydantic import BaseModel, ConfigDict, Field

from hyperv_backup.errors import ConfigError
from hyperv_backup.repository.snapshot import Snapshot

__all__ = ["ForgetReport", "RetentionDecision", "RetentionPolicy", "plan_retention"]


class RetentionPolicy(BaseModel):
    """How many snapshots to keep per VM, by rule; 0 disables a rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_last: int = Field(default=0, ge=0)
    keep_hourly: int = Field(default=0, ge=0)
    keep_daily: int = Field(default=0, ge=0)
    keep_weekly: int = Field(default=0, ge=0)
    keep_monthly: int = Field(default=0, ge=0)
    keep_yearly: int = Field(default=0, ge=0)

    @property
    def empty(self) -> bool:
        """No rule is set."""
        return not any(self.model_dump().values())


@dataclass(frozen=True)
class RetentionDecision:
    """One snapshot: kept or removed, and why (each rule that keeps it).

    ``retained_until``: no rule keeps it, but Object Lock retains it until then, so it is
    kept rather than deleted in name only.
    """

    snapshot: Snapshot
    keep: bool
    reasons: tuple[str, ...] = ()
    retained_until: datetime | None = None


@dataclass
class ForgetReport:
    """What ``forget`` kept and removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    decisions: list[RetentionDecision] = field(default_factory=list)

    @property
    def kept(self) -> list[RetentionDecision]:
        """Snapshots that stay."""
        return [d for d in self.decisions if d.keep]

    @property
    def removed(self) -> list[RetentionDecision]:
        """Snapshots removed (or to be removed)."""
        return [d for d in self.decisions if not d.keep]

    @property
    def retained(self) -> list[RetentionDecision]:
        """Kept only because their Object Lock retention has not ended (part of ``kept``)."""
        return [d for d in self.decisions if d.retained_until is not None]


_Bucket = Callable[[datetime], object]

_RULES: tuple[tuple[str, str, _Bucket], ...] = (
    ("keep_hourly", "hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep_daily", "daily", lambda t: (t.year, t.month, t.day)),
    ("keep_weekly", "weekly", lambda t: t.isocalendar()[:2]),
    ("keep_monthly", "monthly", lambda t: (t.year, t.month)),
    ("keep_yearly", "yearly", lambda t: t.year),
)


def _period(rule: str, moment: datetime) -> str:
    formats = {
        "hourly": "%Y-%m-%d %H:00",
        "daily": "%Y-%m-%d",
        "monthly": "%Y-%m",
        "yearly": "%Y",
    }
    if rule == "weekly":
        year, week, _day = moment.isocalendar()
        return f"{year}-W{week:02d}"
    return moment.strftime(formats[rule])


def _plan_one_vm(
    snapshots: list[Snapshot], policy: RetentionPolicy, zone: tzinfo | None
) -> list[RetentionDecision]:
    newest_first = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    remaining = {name: getattr(policy, name) for name, _rule, _bucket in _RULES}
    last_bucket: dict[str, object] = {}
    last_left = policy.keep_last
    newest_good = next((s for s in newest_first if s.successful), None)
    decisions = []
    for snapshot in newest_first:
        moment = snapshot.time.astimezone(zone)
        reasons: list[str] = []
        if last_left > 0:
            last_left -= 1
            reasons.append(f"one of the last {policy.keep_last}")
        for name, rule, bucket in _RULES:
            key = bucket(moment)
            if remaining[name] > 0 and last_bucket.get(name) != key:
                last_bucket[name] = key
                remaining[name] -= 1
                reasons.append(f"{rule} ({_period(rule, moment)})")
        if snapshot is newest_good and not reasons:
            reasons.append("newest successful backup of the VM (always kept)")
        if reasons:
            decisions.append(RetentionDecision(snapshot, True, tuple(reasons)))
        else:
            decisions.append(RetentionDecision(snapshot, False, ("no rule keeps it",)))
    return decisions


def plan_retention(
    snapshots: Iterable[Snapshot], policy: RetentionPolicy, zone: tzinfo | None = None
) -> list[RetentionDecision]:
    """Decide for every snapshot; periods are counted in ``zone`` (default: local time)."""
    if policy.empty:
        raise ConfigError(
            "the retention policy keeps nothing (every keep_* is 0); set at least one rule, "
            "e.g. keep_daily=7"
        )
    by_vm: dict[str, list[Snapshot]] = defaultdict(list)
    for snapshot in snapshots:
        by_vm[str(snapshot.vm.id)].append(snapshot)
    decisions: list[RetentionDecision] = []
    for group in by_vm.values():
        decisions.extend(_plan_one_vm(group, policy, zone))
    return decisions
