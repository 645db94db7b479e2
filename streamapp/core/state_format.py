"""The format of the app's state as a whole: which tables it keeps and how their values are
encoded. The app records it in its epoch topic (`state_format`, the last record wins:
kafka/baked_settings.py); a worker that cannot read the recorded one refuses to start.

    2  pair values in pair_state.VALUE_FORMAT 2, each user's ranking beside them
       (seller_ranking), and a seller index table, `user_sellers_v2`, listing each user's
       sellers.
    3  the same pair table, no seller index: a user's sellers are the pair table's keys
       "<user>\\x1f..." (counting.user_sellers). A release of format 2 takes its index for
       complete (top-k of a user whose ranking is incomplete ranks the sellers listed there),
       and format 3 no longer writes it, so a format-2 release must not run on this state.

A release that changes the format reads the previous one too (READABLE_STATE_FORMATS) and
records its own on its first start, before it writes anything in it.
"""

from __future__ import annotations

STATE_FORMAT = 3
READABLE_STATE_FORMATS = frozenset({2, 3})  # format 2's seller index is ignored, never read
