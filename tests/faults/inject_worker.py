"""``streamfuse`` with one model slowed down, for the backpressure test.

Run as ``python inject_worker.py run --config FILE``. ``STREAMFUSE_TEST_SLOW_MODEL`` names the
model; ``STREAMFUSE_TEST_SLOW_FILE`` holds its extra seconds per event, re-read on every call so
the test can speed it up again without restarting the worker. (``STREAMFUSE_TEST*`` variables
are not config overrides.)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from worker.cli import main
from worker.inference.models import ModelSet


def _slowed(fn: Any, delay_file: Path) -> Any:
    def predict(X: np.ndarray) -> np.ndarray:
        per_event = float(delay_file.read_text() or 0)
        time.sleep(per_event * len(X))
        return fn(X)

    return predict


def _install() -> None:
    name = os.environ["STREAMFUSE_TEST_SLOW_MODEL"]
    delay_file = Path(os.environ["STREAMFUSE_TEST_SLOW_FILE"])
    plain = ModelSet.predict_fns

    def predict_fns(self: ModelSet) -> list[Any]:
        fns = plain.fget(self)  # type: ignore[attr-defined]
        return [
            _slowed(fn, delay_file) if n == name else fn
            for n, fn in zip(self.names, fns, strict=True)
        ]

    ModelSet.predict_fns = property(predict_fns)  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    _install()
    sys.exit(main())
