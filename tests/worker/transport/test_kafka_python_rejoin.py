"""The kafka-python rejoin repair applies only to the library it was written against."""

from __future__ import annotations

import kafka

from worker.transport.kafka_python import rejoin


def test_the_repair_is_installed_on_the_version_and_source_it_was_written_for() -> None:
    # When this fails, kafka-python changed: re-read need_rejoin and join_group_async, run
    # tests/integration/test_kafka_python_rejoin.py (does the library still wedge?), then
    # update PATCHED or drop the repair.
    assert kafka.__version__ == rejoin.PATCHED["version"]
    hashes = rejoin.source_hashes()
    for name, digest in hashes.items():
        assert digest == rejoin.PATCHED[name], f"kafka-python's {name} changed"
    assert rejoin.installed()


def test_a_changed_library_is_left_alone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rejoin.uninstall()
    try:
        monkeypatch.setattr(kafka, "__version__", "3.0.13")
        assert not rejoin.install()
        assert not rejoin.installed()
        monkeypatch.undo()
        assert rejoin.install()
    finally:
        rejoin.install()
    assert rejoin.installed()
