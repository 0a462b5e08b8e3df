"""The topic rules every adapter's ``Admin.ensure_topics`` applies (no Kafka here): which topics
the config names, what to do when some are missing, and the labels' co-partitioning."""

from __future__ import annotations

from worker.config import TopicsSettings
from worker.errors import ConfigError

__all__ = ["check_copartitioned", "missing_topics"]


def missing_topics(topics: TopicsSettings, existing: set[str]) -> list[str]:
    """The configured topics that do not exist yet, sorted, to be created; a
    :class:`ConfigError` naming the first one's key when ``topics.create`` is off."""
    wanted = {
        "topics.input": topics.input,
        "topics.output": topics.output,
        "topics.dead_letter": topics.dead_letter,
    }
    if topics.labels:
        wanted["topics.labels"] = topics.labels
    missing = {key: name for key, name in wanted.items() if name not in existing}
    if missing and not topics.create:
        key, name = next(iter(missing.items()))
        raise ConfigError(
            key, f"topic {name!r} does not exist (create it, or set topics.create: true)"
        )
    return sorted(set(missing.values()))


def check_copartitioned(topics: TopicsSettings, counts: dict[str, int]) -> None:
    """The labels topic must have as many partitions as the input topic."""
    if not topics.labels:
        return
    n_input, n_labels = counts.get(topics.input, 0), counts.get(topics.labels, 0)
    if n_input != n_labels:
        raise ConfigError(
            "topics.labels",
            f"{topics.labels!r} has {n_labels} partitions but {topics.input!r} has {n_input}; "
            "co-partition them (same count, same keys) so each worker sees the labels of its "
            "own events",
        )
