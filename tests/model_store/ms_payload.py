"""A class whose unpickling / skops reconstruction touches a marker file.

Used to prove that the store refuses such files without running them: the marker must
not exist after a refused load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))
