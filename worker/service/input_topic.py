"""The input topic watched for deletion and re-creation.

A topic deleted and created again under the same name is a new topic: new partitions whose
offsets start at 0 again, and (the group coordinator drops a deleted topic's committed offsets)
nothing committed on them. A consumer that did not notice keeps its in-memory positions on the
old topic: when the new partition already holds more records than that position, the records
before it are skipped without an error from either client; when it holds fewer, the client's
``auto.offset.reset`` applies, which is right by accident.

So the lag thread asks the brokers for the input topic's id (KIP-516) after each refresh and
gives it to :meth:`InputTopicWatch.observe`, and the loop's thread acts between batches on
:meth:`InputTopicWatch.take_reset`:

- **deleted** (no id): an ERROR, ``streamfuse_input_topic_exists`` 0 and ``/readyz`` not ready
  while it lasts; the consumer leaves the group and joins again at once, dropping its positions,
  so when the topic is created again its partitions are read from their start (nothing is
  committed on them: the earliest offset);
- **created again between two looks** (a new id, the deletion never seen): the consumer may
  already have read the new topic from the old positions, skipping the records before them. A
  WARNING; the group's offsets on the partitions this member holds are set back to 0 and the
  consumer joins again: the new topic is read from its start, nothing skipped (records read
  since its creation are read again: duplicates, under either guarantee).

The bound is the lag interval (``metrics.lag_interval_s``).

Pure logic; nothing here imports a Kafka client.
"""

from __future__ import annotations

import enum
import logging
import threading

__all__ = ["InputTopicWatch", "TopicChange"]

log = logging.getLogger("streamfuse.kafka")

_UNSEEN = object()  # no answer from the brokers yet


class TopicChange(enum.Enum):
    """What :meth:`InputTopicWatch.observe` saw; ``topic_<value>`` is the ``reason`` label of
    ``streamfuse_consumer_resets_total`` for the reset it asks for."""

    DELETED = "deleted"
    RECREATED = "recreated"


class InputTopicWatch:
    """:meth:`observe` on the lag thread, :meth:`take_reset` on the loop's, :meth:`missing` on
    the metrics server's."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._id: object = _UNSEEN
        self._reset_due: TopicChange | None = None

    def observe(self, topic_id: str | None) -> TopicChange | None:
        """The topic's id now (None: it does not exist); returns the change it shows, if any."""
        with self._lock:
            before, self._id = self._id, topic_id
            deleted = topic_id is None and before is not None
            recreated = topic_id is not None and before is not _UNSEEN and before != topic_id
            if deleted:
                self._reset_due = TopicChange.DELETED
            # the deletion never seen, or its reset not taken yet: the positions are the old ones
            start_over = recreated and (
                before is not None or self._reset_due is TopicChange.DELETED
            )
            if start_over:
                self._reset_due = TopicChange.RECREATED
            elif recreated:  # seen deleted and reset: the positions were dropped then
                self._reset_due = None
        if deleted:
            log.error(
                "the input topic %r does not exist (deleted?): nothing to read until it is "
                "created again; leaving the group and joining again, so that it is read from "
                "its start when it is back",
                self.topic,
            )
            return TopicChange.DELETED
        if recreated:
            log.warning(
                "the input topic %r was created again (its id is now %s)%s",
                self.topic,
                topic_id,
                ": its partitions are read from their start"
                if not start_over
                else " since the last look: the positions this member had on the old topic may "
                "have skipped records of the new one; setting the group's offsets on its "
                "partitions back to the start and joining again (records read since the "
                "re-creation are read twice)",
            )
            return TopicChange.RECREATED
        return None

    def missing(self) -> str | None:
        """Why nothing can be read (``/readyz``), or None."""
        if self._id is None:
            return f"the input topic {self.topic!r} does not exist"
        return None

    def take_reset(self) -> TopicChange | None:
        """The reset due now, once: after a deletion (drop the positions) or a re-creation
        seen only by its new id (set the offsets back to the start, then drop the positions)."""
        with self._lock:
            due, self._reset_due = self._reset_due, None
        return due
