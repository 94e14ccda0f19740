"""Retention: deleting old history in bounded batches."""

from __future__ import annotations

from ..db import Tx


def prune_history(tx: Tx, cutoff: int, limit: int) -> tuple[int, int]:
    """Delete up to `limit` of the oldest messages and of the oldest inbox entries created before
    `cutoff` (microseconds). Sequence counters live in conversation and agent rows, so seqs
    never repeat; sessions that resume across the deleted range are told with history_gap; the
    send ids stay taken (pruned_send), so a late resend is still a duplicate."""
    # The same batch twice (the order is total): first keep the send ids, then delete.
    batch = "(SELECT conv, seq FROM message WHERE create_time < ? ORDER BY create_time, conv, seq LIMIT ?)"
    tx.exec(
        "INSERT INTO pruned_send (sender, client_msg_id, conv, seq, digest, create_time) "
        f"SELECT sender, client_msg_id, conv, seq, digest, create_time FROM message WHERE (conv, seq) IN {batch} "
        "ON CONFLICT DO NOTHING",
        (cutoff, limit),
    )
    messages = tx.exec(f"DELETE FROM message WHERE (conv, seq) IN {batch}", (cutoff, limit))
    feed = tx.exec(
        "DELETE FROM feed WHERE (agent, seq) IN "
        "(SELECT agent, seq FROM feed WHERE create_time < ? ORDER BY create_time LIMIT ?)",
        (cutoff, limit),
    )
    return messages, feed
