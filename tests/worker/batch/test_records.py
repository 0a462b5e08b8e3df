"""The event time a batch's good events get: their own, else their record's Kafka timestamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.batch.records import event_times

NAN = np.nan


@dataclass
class Record:
    timestamp: int
    topic: str = "features"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes | None]] | None = None


def test_an_event_without_its_own_time_takes_its_records_timestamp_in_seconds() -> None:
    records = [Record(1_764_390_000_123), Record(5), Record(1_764_390_001_500), Record(-1)]
    index = np.array([0, 2, 3])  # record 1 was dead-lettered: its timestamp is never read
    ts = np.array([1_700_000_000.5, NAN, NAN])
    got = event_times(ts, records, index)
    np.testing.assert_array_equal(got, [1_700_000_000.5, 1_764_390_001.5, NAN])
    np.testing.assert_array_equal(ts, [1_700_000_000.5, NAN, NAN])  # not mutated


def test_events_that_all_give_their_time_keep_it() -> None:
    ts = np.array([1.0, 2.0])
    got = event_times(ts, [Record(9_000), Record(9_000)], np.array([0, 1]))
    np.testing.assert_array_equal(got, [1.0, 2.0])


def test_no_good_events() -> None:
    assert event_times(np.zeros(0), [Record(1)], np.zeros(0, dtype=np.int64)).shape == (0,)


class FileRecord:
    """A record read from a file (``streamfuse replay``): no Kafka timestamp at all."""

    topic, partition, offset, key, value, headers = "replay", 0, 0, None, b"{}", None


def test_a_record_with_no_timestamp_attribute_leaves_no_time() -> None:
    got = event_times(np.array([NAN, 3.0]), [FileRecord(), FileRecord()], np.array([0, 1]))
    np.testing.assert_array_equal(got, [NAN, 3.0])
