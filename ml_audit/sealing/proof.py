"""Does this one row verify? The seal that covers one audit row, the checks that row and its
seal pass, and the inclusion proof (audit path) a third party can check offline.

``ml_audit_verify`` checks the whole trail; the admin's prediction page and the API's
``predictions/{id}/seal/`` ask about one row, on a request thread, so this reads only what that
row needs, in a bounded number of queries whatever the size of the trail:

1. the row, with the columns its hash is recomputed from (:mod:`ml_audit.sealing.tables`, the
   verifier's own hashers);
2. its ``SealMember`` and that seal (one join); for a row no seal lists, the newest seal's
   horizon instead (a row created before it should be sealed: the verifier's ``inserted_row``);
3. the seal's member list (at most ``SEAL_MAX_ROWS`` rows): its RFC 6962 root, recomputed, and
   the row's audit path in it;
4. the seals just before and after it: the chain links on both sides of this seal.

The checks (:class:`Check`), in order, each named as ``ml_audit_verify`` names what it finds:

``row``          the row's content still hashes to its ``content_hash`` (``changed_row``)
``sealed_hash``  that hash is the one the seal lists for it (``rehashed_row``); for an unsealed
                 row: it was created after the newest horizon (``inserted_row`` otherwise)
``root``         the seal's member list hashes to its root, in full (``seal_mismatch``)
``inclusion``    the audit path given out leads from this row's leaf to that root
``head``         the seal head's HMAC verifies under its key (``forged_seal_head``); unknown
                 (``None``) when the key id is not configured (``unknown_key``)
``chain``        the previous seal's head hash is this seal's ``previous_hash``, and the next
                 seal names this one's (``broken_chain``, ``removed_seal``)

What this does not check: the rest of the chain beyond the two neighbours, the other rows of the
seal, rows deleted from it, and whether the newest seals were removed (only an exported head
shows that). ``ml_audit_verify`` checks all of it.

The proof format (``ml_audit.inclusion/1``) is documented in ``docs/tamper-evidence.md``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, models

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.seal_models import Seal, SealMember
from ml_audit.sealing.heads import ALGORITHM, GENESIS, head_hash, head_of, key_for, mac_of
from ml_audit.sealing.merkle import inclusion_proof, leaf_data, merkle_root, root_from_path
from ml_audit.sealing.tables import BY_KIND, SealedTable, created_at_of, uuid_text, when

__all__ = [
    "PROOF_FORMAT",
    "Check",
    "RowProof",
    "check_seal",
    "head_check",
    "overall",
    "prove_row",
    "seal_json",
]

PROOF_FORMAT = "ml_audit.inclusion/1"

#: What each check is called in the admin, in order.
CHECK_TITLES = {
    "row": "Row content matches its hash",
    "sealed_hash": "Hash is the one sealed",
    "root": "Seal's members hash to its root",
    "inclusion": "Inclusion proof leads to the root",
    "head": "Seal head's HMAC verifies",
    "chain": "Seal chains to its neighbours",
}


@dataclass(frozen=True)
class Check:
    """One check: ``ok`` is ``True`` (passed), ``False`` (failed) or ``None`` (could not be
    made, e.g. a key that is not configured)."""

    name: str
    ok: bool | None
    message: str

    @property
    def title(self) -> str:
        return CHECK_TITLES.get(self.name, self.name)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "message": self.message}


@dataclass
class RowProof:
    """What :func:`prove_row` found for one row."""

    kind: int
    table: str
    row_id: str
    #: ``"sealed"``, ``"not_sealed"`` or ``"missing"`` (no such row).
    status: str
    checks: list[Check] = field(default_factory=list)
    seal: Seal | None = None
    #: The hash recomputed from the row's columns, and the one it stores (``None`` for a table
    #: that stores none: the access log).
    recomputed_hash: str | None = None
    stored_hash: str | None = None
    #: The hash the seal lists for the row, its leaf's data, position and audit path.
    sealed_hash: str | None = None
    leaf: str | None = None
    leaf_index: int | None = None
    tree_size: int | None = None
    audit_path: list[str] = field(default_factory=list)
    #: The root recomputed from the seal's member list.
    computed_root: str | None = None

    @property
    def verified(self) -> bool | None:
        """``True`` when sealed and every check passed, ``False`` when any failed, ``None``
        otherwise (not sealed yet, or a check that could not be made)."""
        verdict = overall(self.checks)
        return None if verdict is True and self.status != "sealed" else verdict

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]

    @property
    def summary(self) -> str:
        """One sentence for a person: verified, not sealed yet, or what failed."""
        if self.status == "missing":
            return f"No {self.table} row {self.row_id}."
        failures = self.failures
        if failures:
            return "Does NOT verify: " + "; ".join(check.message for check in failures) + "."
        if self.status == "not_sealed":
            return "Not sealed yet: no seal lists this row."
        assert self.seal is not None
        unknown = [check for check in self.checks if check.ok is None]
        if unknown:
            return (
                f"Sealed in seal {self.seal.id}; cannot be fully checked: "
                + "; ".join(check.message for check in unknown)
                + "."
            )
        return (
            f"Verifies: sealed in seal {self.seal.id} (leaf {self.leaf_index} of "
            f"{self.tree_size}), unchanged since."
        )

    def proof_json(self) -> dict[str, Any] | None:
        """The inclusion proof (``ml_audit.inclusion/1``), or ``None`` for an unsealed row."""
        if self.seal is None or self.leaf is None:
            return None
        return {
            "format": PROOF_FORMAT,
            "kind": self.kind,
            "row_id": self.row_id,
            "row_hash": self.sealed_hash,
            "leaf": self.leaf,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": list(self.audit_path),
            "root": self.seal.root,
        }

    def as_json(self) -> dict[str, Any]:
        """Everything above as JSON: the API's body of ``predictions/{id}/seal/``."""
        return {
            "table": self.table,
            "id": self.row_id,
            "status": self.status,
            "verified": self.verified,
            "summary": self.summary,
            "checks": [check.as_json() for check in self.checks],
            "content_hash": self.stored_hash,
            "recomputed_hash": self.recomputed_hash,
            "seal": seal_json(self.seal) if self.seal is not None else None,
            "proof": self.proof_json(),
        }


def overall(checks: list[Check]) -> bool | None:
    """``False`` when any check failed, else ``None`` when any could not be made, else
    ``True``."""
    if any(check.ok is False for check in checks):
        return False
    if any(check.ok is None for check in checks):
        return None
    return True


def seal_json(seal: Seal) -> dict[str, Any]:
    """A seal as JSON: its columns, its head (the authenticated document) and head hash."""
    head = head_of(seal)
    return {
        "id": seal.id,
        "created_at": head["created_at"],
        "previous_hash": seal.previous_hash,
        "root": seal.root,
        "leaves": seal.leaves,
        "members_from": seal.members_from,
        "members_to": seal.members_to,
        "counts": dict(head["counts"]),
        "horizon": head["horizon"],
        "covered_from": head["covered"][0],
        "covered_to": head["covered"][1],
        "algorithm": seal.algorithm,
        "key_id": seal.key_id,
        "mac": seal.mac,
        "head": head,
        "head_hash": head_hash(head),
    }


def prove_row(kind: int, row_id: uuid.UUID | str, using: str | None = None) -> RowProof:
    """The seal of row ``row_id`` of the table of ``kind`` (1 prediction, 2 explanation, 3
    access log, ...; see :data:`ml_audit.sealing.tables.BY_KIND`) and the checks it passes,
    in at most four queries. Raises ``ValueError`` for an unknown kind or a malformed id."""
    table = BY_KIND.get(kind)
    if table is None:
        raise ValueError(f"no sealed table of kind {kind!r}")
    alias = resolve_alias(using)
    text = uuid_text(uuid.UUID(str(row_id)))
    proof = RowProof(kind=kind, table=table.name, row_id=text, status="not_sealed")
    row = _read_row(alias, table, text)
    member = (
        SealMember.objects.using(alias)
        .select_related("seal")
        .filter(kind=kind, row_id=uuid.UUID(text))
        .first()
    )
    if row is None:
        proof.status = "missing"
        if member is not None:
            proof.seal = member.seal
            proof.checks.append(Check("row", False, "the row is gone, though sealed"))
        return proof
    recomputed, problem = table.rehash(row)
    proof.recomputed_hash = recomputed
    proof.stored_hash = row[-1] if table.stores_hash else None
    current = proof.stored_hash if table.stores_hash else recomputed
    if problem is not None:
        proof.checks.append(Check("row", False, problem))
    elif recomputed != current:
        proof.checks.append(Check("row", False, "its content does not match its content_hash"))
    else:
        what = "its content_hash" if table.stores_hash else "the hash computed when sealed"
        proof.checks.append(Check("row", True, f"its content hashes to {what}"))
    if member is None:
        proof.checks.extend(_unsealed(alias, table, text, row))
        return proof
    seal = member.seal
    proof.status, proof.seal, proof.sealed_hash = "sealed", seal, member.row_hash
    if member.row_hash == current:
        proof.checks.append(Check("sealed_hash", True, f"seal {seal.id} lists this very hash"))
    else:
        proof.checks.append(
            Check(
                "sealed_hash",
                False,
                f"its hash is not the one seal {seal.id} lists for it"
                + (" (content and content_hash were rewritten)" if table.stores_hash else ""),
            )
        )
    members = _members(alias, seal)
    proof.checks.extend(_root_checks(seal, members, proof, member.id))
    proof.checks.append(head_check(seal))
    proof.checks.append(_chain_check(seal, _neighbours(alias, seal)))
    return proof


def check_seal(seal: Seal, using: str | None = None) -> list[Check]:
    """The checks of one seal as a whole (``root``, ``head``, ``chain``): its member list
    (bounded by ``SEAL_MAX_ROWS``) and its two neighbours, in two queries."""
    alias = resolve_alias(using)
    members = _members(alias, seal)
    checks = _root_checks(seal, members, None, None)
    checks.append(head_check(seal))
    checks.append(_chain_check(seal, _neighbours(alias, seal)))
    return checks


# ------------------------------------------------------------------------------ internals


def _read_row(alias: str, table: SealedTable, row_id: str) -> list[Any] | None:
    """The row's :attr:`~SealedTable.columns` as the verifier reads them, or ``None``."""
    connection = connections[alias]
    value = models.UUIDField().get_db_prep_value(uuid.UUID(row_id), connection)
    sql = table.select(connection.vendor) + f" WHERE {table.alias}.id = %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [value])
        found = cursor.fetchone()
    return list(found) if found is not None else None


def _members(alias: str, seal: Seal) -> list[tuple[int, int, Any, str]]:
    """``(member id, kind, row id, row hash)`` of the seal's members, in leaf order."""
    return list(
        SealMember.objects.using(alias)
        .filter(seal_id=seal.id)
        .order_by("id")
        .values_list("id", "kind", "row_id", "row_hash")
    )


def _neighbours(alias: str, seal: Seal) -> dict[int, Seal]:
    """The seals numbered just before and after ``seal`` that exist, by number."""
    return {s.id: s for s in Seal.objects.using(alias).filter(id__in=[seal.id - 1, seal.id + 1])}


def _unsealed(alias: str, table: SealedTable, row_id: str, row: list[Any]) -> list[Check]:
    """The check of a row no seal lists: was it created after the newest seal's horizon?"""
    newest = Seal.objects.using(alias).order_by("-id").values_list("id", "horizon").first()
    if newest is None:
        hint = "" if audit_settings.SEALING else " (ML_AUDIT['SEALING'] is off)"
        return [Check("sealed_hash", None, f"no seal has been cut yet{hint}")]
    seal_id, horizon = newest
    created = created_at_of(row_id, when(row[table.recorded_index]))
    if created < horizon:
        return [
            Check(
                "sealed_hash",
                False,
                f"in no seal, though created {_iso(created)} before the horizon of seal "
                f"{seal_id} ({_iso(horizon)}): inserted behind the seals' back, or committed "
                "later than SEAL_LAG_SECONDS allows (inserted_row)",
            )
        ]
    return [
        Check(
            "sealed_hash",
            None,
            f"created after the horizon of the newest seal ({seal_id}): the next seal covers it",
        )
    ]


def _root_checks(
    seal: Seal,
    members: list[tuple[int, int, Any, str]],
    proof: RowProof | None,
    member_id: int | None,
) -> list[Check]:
    """``root`` (and with a ``proof``, ``inclusion``): the member list against the seal."""
    leaves = [leaf_data(kind, uuid_text(row_id), row_hash) for _, kind, row_id, row_hash in members]
    ids = [member[0] for member in members]
    index = ids.index(member_id) if member_id is not None and member_id in ids else None
    if index is not None:
        computed, path = inclusion_proof(leaves, index)
    else:
        computed, path = merkle_root(leaves), []
    complete = ids == list(range(seal.members_from, seal.members_to + 1))
    checks: list[Check] = []
    if computed == seal.root and len(leaves) == seal.leaves and complete:
        checks.append(Check("root", True, f"its {seal.leaves} listed rows hash to its root"))
    else:
        checks.append(
            Check(
                "root",
                False,
                f"seal {seal.id}'s {len(leaves)} listed rows hash to another root than the "
                f"{seal.leaves} rows it sealed (seal_mismatch)",
            )
        )
    if proof is not None and index is not None:
        proof.leaf = leaves[index].decode("ascii")
        proof.leaf_index, proof.tree_size = index, seal.leaves
        proof.audit_path, proof.computed_root = path, computed
        reached = root_from_path(leaves[index], index, seal.leaves, path)
        if reached is not None and hmac.compare_digest(reached, seal.root):
            checks.append(
                Check(
                    "inclusion",
                    True,
                    f"{len(path)} sibling hash{'' if len(path) == 1 else 'es'} lead to the "
                    "seal's root",
                )
            )
        else:
            checks.append(
                Check("inclusion", False, "the audit path does not lead to the seal's root")
            )
    return checks


def head_check(seal: Seal) -> Check:
    key = key_for(seal.key_id)
    if key is None:
        return Check("head", None, f"key id {seal.key_id!r} is not configured (unknown_key)")
    if seal.algorithm != ALGORITHM or not hmac.compare_digest(mac_of(head_of(seal), key), seal.mac):
        return Check(
            "head", False, f"seal {seal.id}'s head HMAC does not verify (forged_seal_head)"
        )
    return Check("head", True, f"HMAC-SHA-256 under key {seal.key_id!r}")


def _chain_check(seal: Seal, neighbours: dict[int, Seal]) -> Check:
    before, after = neighbours.get(seal.id - 1), neighbours.get(seal.id + 1)
    if seal.id == 1:
        if seal.previous_hash != GENESIS:
            return Check("chain", False, "seal 1 does not start the chain (broken_chain)")
    elif before is None:
        return Check("chain", False, f"seal {seal.id - 1} is gone (removed_seal)")
    elif head_hash(head_of(before)) != seal.previous_hash:
        return Check(
            "chain",
            False,
            f"seal {seal.id}'s previous hash is not seal {before.id}'s head hash (broken_chain)",
        )
    if after is not None and after.previous_hash != head_hash(head_of(seal)):
        return Check(
            "chain",
            False,
            f"seal {after.id}'s previous hash is not seal {seal.id}'s head hash (broken_chain)",
        )
    later = f" and seal {after.id} names it" if after is not None else " (the newest seal)"
    first = "starts the chain" if seal.id == 1 else f"names seal {seal.id - 1}'s head hash"
    return Check("chain", True, f"it {first}{later}")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")
