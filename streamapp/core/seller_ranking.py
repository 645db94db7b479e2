"""Each user's sellers in score order: what top-k walks from the best (issue 20).

The decayed part of a score factors: W * 2^(-(as_of - ref)/h) = 2^(-as_of/h) * K, with W the
weighted accumulators of the pair and K = W * 2^(ref/h). K does not depend on as_of, so a
user's sellers ordered by K are ordered by decayed score at every as_of. Stored, per user,
in the pair table itself (the user's partition; one write batch holds a pair's value and its
place here, so a serving process's catch-up never sees one without the other), one key per
seller:

    user \\x1d fingerprint(4) order(9) seller        value: empty

`order` sorts by descending K: a class byte for K's sign, then log2|K| as a sortable float,
inverted so that RocksDB's ascending iteration starts at the best. log2 keeps K in range
whatever the times (2^(ref/h) alone overflows a float after ~1,000 half-lives).

The value is empty on purpose: the walk reads each candidate's pair header and scores it
exactly as the full ranking does, so an entry a crash left behind (a delete that never
reached the changelog) can only make a walk read a pair early, never score it wrong.

`user \\x1d fingerprint` alone marks a user whose index is complete. The fingerprint covers
the weights and half-life K is computed with: after a change of either (and for a user
counted before this index existed) nobody has a mark, top-k ranks all of the user's pairs
(the pair table's keys `user \\x1f ...`) as before, and ingest rebuilds a user's entries the
first time it counts for them (reading each of the user's pair headers once), deleting
every other key of the user's ranking: a mark of earlier weights never comes back to life
when they do.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable, Sequence

from streamapp.core.pair_state import US, Summary, summary

SEP = b"\x1d"  # ids never contain control characters (models.EntityId)
ORDER_LEN = 9
FP_LEN = 4
_DOUBLE = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_MASK = (1 << 64) - 1
_SIGN = 1 << 63

# Slack on log2 K when bounding a score: log2 K carries a float error of a few steps of its
# size (its ref/h term is ~3,000 today with a half-life of a week, 1e-12 a step); 1e-7 plus
# eight steps is far above that and costs a walk only the sellers within ~1e-7 of the k-th
# score, which it would read as near-ties anyway.
TOLERANCE = 1e-7
# The smallest bound a positive K gets: decayed() floors its exponent at -1100, so a score
# is at least W * 2^-1100, which stays below 2^-700 for any W a pair can hold (at most
# 2^32 interactions per kind, each < 2^256 after rebasing, weights < 2^30).
FLOOR_EXPONENT = -700.0
# decayed() caps its exponent at 1000: beyond that the order by K says nothing.
CAP_EXPONENT = 1000.0

Weights = Sequence[float]
Writes = dict[bytes, bytes | None]
Load = Callable[[bytes], bytes | None]


def fingerprint(weights: Weights, half_life_s: float) -> bytes:
    return hashlib.blake2b(struct.pack("<5d", *weights, half_life_s), digest_size=FP_LEN).digest()


def user_prefix(user_key: bytes) -> bytes:
    """The prefix of every key of the user's ranking, whatever the fingerprint."""
    return user_key + SEP


def mark(user_key: bytes, fp: bytes) -> bytes:
    """The key that says the user's index is complete; also the prefix of its entries."""
    return user_key + SEP + fp


def entry(user_key: bytes, fp: bytes, order: bytes, seller: str) -> bytes:
    return user_key + SEP + fp + order + seller.encode()


def parse_entry(prefix_len: int, key: bytes) -> tuple[bytes, str]:
    """(order, seller id) of an entry key whose mark is `prefix_len` bytes long."""
    cut = prefix_len + ORDER_LEN
    return key[prefix_len:cut], key[cut:].decode()


def _sortable(value: float) -> int:
    """An unsigned integer that sorts as the float does."""
    bits = _U64.unpack(_DOUBLE.pack(value))[0]
    return (~bits & _MASK) if bits & _SIGN else bits | _SIGN


def _unsortable(bits: int) -> float:
    raw = (bits & ~_SIGN) if bits & _SIGN else (~bits & _MASK)
    return _DOUBLE.unpack(_U64.pack(raw))[0]


def order(
    total: int, ref_us: int, acc: Sequence[float], weights: Weights, half_life_s: float
) -> bytes:
    """The sort key of a pair: descending K in ascending bytes. Weighted exactly as
    score.decayed() weighs, so the two agree on which scores are 0."""
    w = weights
    weighted = w[0] * acc[0] + w[1] * acc[1] + w[2] * acc[2] + w[3] * acc[3]
    if total == 0 or weighted == 0.0:
        cls, value = 1, 0.0
    elif weighted > 0:
        cls, value = 2, math.log2(weighted) + ref_us / (half_life_s * US)
    else:  # K < 0: a larger |K| is a lower score
        cls, value = 0, -(math.log2(-weighted) + ref_us / (half_life_s * US))
    return bytes((2 - cls,)) + _U64.pack(~_sortable(value) & _MASK)


def order_of(raw: bytes, weights: Weights, half_life_s: float) -> bytes:
    """The sort key of a stored pair value (its header alone)."""
    s: Summary = summary(raw)
    return order(s.total, s.ref_us, s.acc, weights, half_life_s)


def bound(key_order: bytes, as_of_us: int, half_life_s: float) -> float:
    """An upper bound of the decayed part of the score of every pair whose order is at or
    after `key_order`, at `as_of_us`."""
    cls = 2 - key_order[0]
    if cls != 2:
        return 0.0  # K = 0 scores 0; K < 0 scores at most 0
    log_k = _unsortable(~_U64.unpack_from(key_order, 1)[0] & _MASK)
    at = as_of_us / (half_life_s * US)
    # Both terms are about ref/h, which a short half-life makes large (1.8e9 at 1 s, where a
    # float step is 2.4e-7): the slack grows with their size.
    slack = TOLERANCE + 8 * math.ulp(max(abs(log_k), abs(at)))
    exponent = log_k + slack - at
    if exponent > CAP_EXPONENT:
        return math.inf
    return 2.0 ** max(exponent, FLOOR_EXPONENT)


def moves(
    user_key: bytes,
    fp: bytes,
    changed: Iterable[tuple[str, bytes | None, bytes, bool]],
) -> Writes:
    """The writes that keep a marked user's index right after a batch: `changed` holds
    (seller, order before or None, order after, replayed). A replayed pair's entry is
    written again: the first try's write may not have reached the changelog."""
    writes: Writes = {}
    for seller, before, after, replayed in changed:
        if before == after and not replayed:
            continue
        if before is not None and before != after:
            writes[entry(user_key, fp, before, seller)] = None
        writes[entry(user_key, fp, after, seller)] = b""
    return writes


def rebuild(
    user_key: bytes,
    fp: bytes,
    orders: Iterable[tuple[str, bytes]],
    stale: Iterable[bytes] = (),
) -> Writes:
    """Every entry of a user (seller, order), and the mark that says they are all there;
    the `stale` keys of the user's ranking deleted (any not written again)."""
    writes: Writes = dict.fromkeys(stale)
    writes.update({entry(user_key, fp, o, seller): b"" for seller, o in orders})
    writes[mark(user_key, fp)] = b""
    return writes
