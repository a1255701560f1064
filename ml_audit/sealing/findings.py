"""What ``ml_audit_verify`` found: one :class:`Finding` per class of tampering, and the report.

=================  =============================================================================
class              meaning
=================  =============================================================================
changed_row        a row's content no longer matches its stored ``content_hash`` (or, for the
                   access log, the hash sealed for it), or a column the hash does not cover
                   disagrees with what the writer stores (``tenant_id``, request context)
rehashed_row       a row matches its ``content_hash``, but that hash is not the one sealed for
                   it: the row was changed and its hash recomputed
deleted_row        a seal lists a row that no longer exists
inserted_row       a row no seal holds although its id dates it before the newest seal's
                   horizon (it was inserted behind the seals' back, or committed later than
                   ``SEAL_LAG_SECONDS`` allows)
backdated_row      like inserted_row, and the time the row records lies before the horizon too
seal_mismatch      the rows listed for a seal no longer hash to its root (listing changed)
purge_mismatch     a purge record's tombstones (``PurgedRow``) no longer hash to its root, or
                   their number or counts per table differ from the record's; or tombstones
                   name a purge record that does not exist (tombstones added, removed, changed)
removed_seal       a seal is missing from the chain (a gap in the numbers or in the members,
                   a previous hash that skips one, or a seal of an exported head that is gone)
reordered_seal     seals are out of order (creation times or member ranges go backwards)
broken_chain       a seal's previous hash is no seal's head hash
forged_seal_head   a seal head's HMAC does not verify under its key: the seal was changed
                   (root, counts, ...) by someone without the key
unknown_key        a seal names a key id that is not configured: its head cannot be checked
export_mismatch    the head exported earlier (``--against``) differs from the chain's seal
=================  =============================================================================

Notices are not findings (``ok`` stays true): ``late_row``, and ``purges``, the purge runs the
trail records (when, what, the rule, who: :mod:`ml_audit.sealing.purges`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FINDING_CLASSES", "Finding", "Report"]

FINDING_CLASSES = (
    "changed_row",
    "rehashed_row",
    "deleted_row",
    "inserted_row",
    "backdated_row",
    "seal_mismatch",
    "purge_mismatch",
    "removed_seal",
    "reordered_seal",
    "broken_chain",
    "forged_seal_head",
    "unknown_key",
    "export_mismatch",
)


@dataclass
class Finding:
    """One class of tampering: how many rows or seals, and the first (lowest id) of them."""

    name: str
    count: int
    first: dict[str, Any]
    message: str
    _order: Any = field(default=None, repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "count": self.count,
            "first": self.first,
            "message": self.message,
        }


@dataclass
class Report:
    """The outcome of one verification."""

    checked: dict[str, int] = field(default_factory=dict)
    findings: dict[str, Finding] = field(default_factory=dict)
    notices: dict[str, Finding] = field(default_factory=dict)
    latest_seal: dict[str, Any] | None = None
    seconds: float = 0.0
    #: The purge runs recorded in the trail, oldest first (notices, not findings): one dict
    #: per run, built by :func:`ml_audit.sealing.purges.check_purges`.
    purges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, name: str, first: dict[str, Any], message: str, *, notice: bool = False) -> None:
        """Count one occurrence of ``name``; keep the one with the lowest (table, id) or seal."""
        assert notice or name in FINDING_CLASSES, name
        target = self.notices if notice else self.findings
        order = (first.get("table", ""), str(first.get("id", "")), first.get("seal", 0))
        found = target.get(name)
        if found is None:
            target[name] = Finding(name, 1, first, message, order)
            return
        found.count += 1
        if order < found._order:
            found.first, found.message, found._order = first, message, order

    def merge(self, other: Report) -> None:
        """Add ``other``'s findings and notices (from another process's share of the rows):
        counts add up, and the first of each class is the lower of the two."""
        for mine, theirs in ((self.findings, other.findings), (self.notices, other.notices)):
            for name, finding in theirs.items():
                found = mine.get(name)
                if found is None:
                    mine[name] = finding
                    continue
                found.count += finding.count
                if finding._order < found._order:
                    found.first, found.message, found._order = (
                        finding.first,
                        finding.message,
                        finding._order,
                    )

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.findings.values(), key=lambda f: FINDING_CLASSES.index(f.name))
        return {
            "ok": self.ok,
            "checked": dict(self.checked),
            "findings": [finding.as_json() for finding in ordered],
            "notices": [notice.as_json() for notice in self.notices.values()],
            "purges": list(self.purges),
            "latest_seal": self.latest_seal,
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        """The report as text, one line per finding or notice, then a summary."""
        out = []
        for name in FINDING_CLASSES:
            finding = self.findings.get(name)
            if finding is not None:
                out.append(
                    f"FAIL {name}: {finding.count} found; first: {_ref(finding.first)}: "
                    f"{finding.message}"
                )
        for notice in self.notices.values():
            out.append(
                f"note {notice.name}: {notice.count}; first: {_ref(notice.first)}: {notice.message}"
            )
        for run in self.purges:
            out.extend(purge_lines(run))
        checked = ", ".join(f"{count} {name}" for name, count in self.checked.items())
        verdict = "OK" if self.ok else f"TAMPERING DETECTED ({len(self.findings)} classes)"
        out.append(f"{verdict}: checked {checked} in {self.seconds:.1f} s")
        return out


def purge_lines(run: dict[str, Any]) -> list[str]:
    """One purge run as text: who, when, how much; then a line per (target, model, tenant)."""
    counts = ", ".join(f"{n} {name}" for name, n in run["counts"].items() if n)
    when = run["purged_from"]
    if run["purged_to"] != when:
        when = f"{when} .. {run['purged_to']}"
    role = f" as role {run['database_role']}" if run["database_role"] else ""
    out = [
        f"note purge run {run['run_id']}: {when} by {run['ran_by']}{role}: "
        f"{run['rows']} rows ({counts or 'none'}) in {_plural(run['batches'], 'batch')}"
    ]
    for group in run["groups"]:
        scope = group["target"]
        if group["model_name"] or group["tenant_id"]:
            scope += f" model {group['model_name']!r} tenant {group['tenant_id']!r}"
        days = "forever" if group["days"] is None else f"{group['days']} days"
        removed = ", ".join(f"{n} {name}" for name, n in group["counts"].items() if n)
        holds = f", {_plural(len(group['holds']), 'hold')} in force" if group["holds"] else ""
        out.append(
            f"     {scope}: {removed or 'none'} recorded {group['time_from']} .. "
            f"{group['time_to']}; rule {group['rule']} ({days}, cutoff {group['cutoff']}){holds}"
        )
    return out


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}{'es' if noun.endswith('h') else 's'}"


def _ref(first: dict[str, Any]) -> str:
    if "table" in first:
        seal = f" (seal {first['seal']})" if first.get("seal") else ""
        return f"{first['table']} {first['id']}{seal}"
    return f"seal {first.get('seal')}"
