"""The tests' fork server (tests/support/forkserver.py) reports each worker's own exit status.

PIDs wrap within a run (at 32768 on the CI machine): a worker the server forked late in a run
was given the PID of one killed earlier, read that one's status file, and was taken for dead
(``worker exited with -9`` before it had logged a line). Status files are now named by the
request's number; here the kernel's reuse of a PID is played by calling the bookkeeping with the
same PID twice."""

from __future__ import annotations

from pathlib import Path

from tests.support.forkserver import Children, ForkedProcess


def test_a_child_given_an_earlier_childs_pid_reads_only_its_own_status(tmp_path: Path) -> None:
    children = Children(tmp_path)
    pid = 4242
    first = ForkedProcess(["worker.cli"], pid, tmp_path / str(children.forked(pid)))
    children.exited(pid, -9)
    assert first.poll() == -9

    second = ForkedProcess(["worker.cli"], pid, tmp_path / str(children.forked(pid)))
    assert second.poll() is None  # alive: the earlier child's status is not its own
    children.exited(pid, 0)
    assert second.poll() == 0
    assert first.poll() == -9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1"]  # no partial file left
