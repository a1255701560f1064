"""RFC 6962 Merkle tree hashes, computed over a stream of leaves in O(log n) memory.

``MTH({}) = SHA-256()``; a leaf is ``SHA-256(0x00 || data)``, a node
``SHA-256(0x01 || left || right)``, and a tree of n > 1 leaves splits at the largest power of two
smaller than n (RFC 6962, section 2.1). The 0x00/0x01 prefixes keep a leaf from ever being
read as a node (second-preimage resistance).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["MerkleBuilder", "leaf_data", "merkle_root"]

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").hexdigest()


def leaf_data(kind: int, row_id: str, row_hash: str) -> bytes:
    """The data of one sealed row's leaf: its table, its id and the hash that was sealed.

    Binding table and id into the leaf means a sealed hash cannot be moved to another row.
    ``row_id`` is the UUID's canonical text (lower case, with hyphens).
    """
    return f"ml_audit.leaf/1|{kind}|{row_id}|{row_hash}".encode("ascii")


class MerkleBuilder:
    """Feed leaves in order with :meth:`add`; :meth:`root` gives the RFC 6962 tree hash.

    Keeps one hash per set bit of the leaf count: complete subtrees are merged as soon as two
    of the same size are on the stack, and the rest is folded right to left at the end, which
    is exactly the RFC's split at the largest power of two.
    """

    __slots__ = ("_sizes", "_stack", "count")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._sizes: list[int] = []
        self.count = 0

    def add(self, data: bytes) -> None:
        node = _sha256(b"\x00" + data).digest()
        size = 1
        stack, sizes = self._stack, self._sizes
        while sizes and sizes[-1] == size:
            node = _sha256(b"\x01" + stack.pop() + node).digest()
            size += sizes.pop()
        stack.append(node)
        sizes.append(size)
        self.count += 1

    def root(self) -> str:
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
