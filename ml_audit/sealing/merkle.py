"""RFC 6962 Merkle tree hashes, computed over a stream of leaves in O(log n) memory.

``MTH({}) = SHA-256()``; a leaf is ``SHA-256(0x00 || data)``, a node
``SHA-256(0x01 || left || right)``, and a tree of n > 1 leaves splits at the largest power of two
smaller than n (RFC 6962, section 2.1). The 0x00/0x01 prefixes keep a leaf from ever being
read as a node (second-preimage resistance).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

__all__ = [
    "MerkleBuilder",
    "inclusion_proof",
    "leaf_data",
    "leaf_hash",
    "merkle_root",
    "root_from_path",
    "verify_inclusion",
]

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").hexdigest()


def leaf_data(kind: int, row_id: str, row_hash: str) -> bytes:
    """The data of one sealed row's leaf: its table, its id and the hash that was sealed.

    Binding table and id into the leaf means a sealed hash cannot be moved to another row.
    ``row_id`` is the UUID's canonical text (lower case, with hyphens).
    """
    return f"{LEAF_PREFIX}{kind}|{row_id}|{row_hash}".encode("ascii")


class MerkleBuilder:
    """Feed leaves in order with :meth:`add`; :meth:`root` gives the RFC 6962 tree hash.

    Keeps one hash per set bit of the leaf count: complete subtrees are merged as soon as two
    of the same size are on the stack, and the rest is folded right to left at the end, which
    is exactly the RFC's split at the largest power of two.

    Leaves are hashed in batches of :data:`BATCH` (a power of two): each batch is a complete
    subtree, hashed level by level in a few list comprehensions and pushed as one node, which
    is the same tree as pushing its leaves one at a time (the count before a batch is a multiple
    of its size) at a fraction of the interpreter's work. Memory stays O(log n + BATCH).
    """

    __slots__ = ("_pending", "_pushed", "_sizes", "_stack")

    #: Leaves hashed at once (a power of two).
    BATCH = 1024

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._sizes: list[int] = []
        self._pending: list[bytes] = []
        self._pushed = 0

    @property
    def count(self) -> int:
        """The number of leaves added."""
        return self._pushed + len(self._pending)

    def add(self, data: bytes) -> None:
        pending = self._pending
        pending.append(data)
        if len(pending) >= self.BATCH:
            self._flush()

    def extend(self, leaves: Sequence[bytes]) -> None:
        """:meth:`add` each of ``leaves`` (their data), in order, in whole batches."""
        pending = self._pending
        pending.extend(leaves)
        batch = self.BATCH
        if len(pending) < batch:
            return
        whole = len(pending) - len(pending) % batch
        rest = pending[whole:]
        for start in range(0, whole, batch):
            self._pending = pending[start : start + batch]
            self._flush()
        self._pending = rest

    def _flush(self) -> None:
        pending = self._pending
        size = len(pending)
        if size == self.BATCH and not self._pushed % size:
            sha = _sha256
            level = [sha(b"\x00" + data).digest() for data in pending]
            while len(level) > 1:
                level = [
                    sha(b"\x01" + left + right).digest()
                    for left, right in zip(level[0::2], level[1::2], strict=True)
                ]
            self._push(level[0], size)
        else:
            for data in pending:
                self._push(_sha256(b"\x00" + data).digest(), 1)
        pending.clear()

    def _push(self, node: bytes, size: int) -> None:
        """Push a complete subtree of ``size`` leaves (the count so far is a multiple of it)."""
        self._pushed += size
        stack, sizes = self._stack, self._sizes
        while sizes and sizes[-1] == size:
            node = _sha256(b"\x01" + stack.pop() + node).digest()
            size += sizes.pop()
        stack.append(node)
        sizes.append(size)

    def root(self) -> str:
        self._flush()
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = _sha256(b"\x01" + left + node).digest()
        return node.hex()


def merkle_root(leaves: Iterable[bytes]) -> str:
    """The RFC 6962 tree hash (hex) of ``leaves`` (their data, not yet hashed)."""
    builder = MerkleBuilder()
    for data in leaves:
        builder.add(data)
    return builder.root()


#: What every leaf's data starts with (:func:`leaf_data`).
LEAF_PREFIX = "ml_audit.leaf/1|"


def leaf_hash(data: bytes) -> bytes:
    """A leaf's node hash: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> tuple[str, list[str]]:
    """``(root, audit path)`` of leaf ``index`` among ``leaves`` (their data), both hex.

    The audit path is RFC 6962's ``PATH(index, D[n])`` (section 2.1.1; RFC 9162 section
    2.1.3.1), nearest the leaf first: the sibling hashes that, folded with the leaf's hash by
    :func:`root_from_path`, give the root. Computed level by level (pairs hashed left to right,
    an odd last node carried up unchanged), which is the same tree as the RFC's split at the
    largest power of two. O(n) hashes and memory, for one seal's members.
    """
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of a tree of {len(leaves)} leaves")
    level = [leaf_hash(data) for data in leaves]
    path: list[str] = []
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            path.append(level[sibling].hex())
        level = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest() if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        position //= 2
    return level[0].hex(), path


def root_from_path(data: bytes, index: int, size: int, path: Sequence[str]) -> str | None:
    """The root that leaf ``data`` at ``index`` of a tree of ``size`` leaves and its audit
    ``path`` (hex, nearest the leaf first) lead to, or ``None`` when the path cannot belong to
    such a tree (too short, too long, an index out of range). RFC 9162, section 2.1.3.2."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    node = leaf_hash(data)
    for sibling_hex in path:
        try:
            sibling = bytes.fromhex(sibling_hex)
        except ValueError:
            return None
        if sn == 0 or len(sibling) != 32:
            return None
        if fn & 1 or fn == sn:
            node = _sha256(b"\x01" + sibling + node).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            node = _sha256(b"\x01" + node + sibling).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return node.hex()


def verify_inclusion(data: bytes, index: int, size: int, path: Sequence[str], root: str) -> bool:
    """Whether ``path`` proves leaf ``data`` at ``index`` in the tree of ``size`` leaves whose
    root is ``root`` (hex)."""
    found = root_from_path(data, index, size, path)
    return found is not None and hmac.compare_digest(found, root)
