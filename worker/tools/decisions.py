"""``streamfuse store strategy [show|revert]``: the champion/challenger decision in force.

``show`` prints the decision a worker group serves (the strategy, who decided, the figures) and
the history; ``revert`` records a new decision going back to the strategy the current one
replaced, and holds the reverted-from strategy so the workers never promote it again on their
own (workers adopt a revert within ``strategy.promote.interval_s``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from model_store import ConflictError, ModelStore, ModelStoreError, StoredDecision

__all__ = ["strategy_command"]


def strategy_command(store: ModelStore, name: str, action: str) -> int:
    try:
        current = store.load_decision(name)
        if current is None:
            print(f"{name}: no decision recorded; the workers serve the configured strategy")
            return 0 if action == "show" else 1
        if action == "show":
            for decision in store.decision_history(name):
                mark = "*" if decision.version == current.version else " "
                print(f"{mark} v{decision.version}: {_line(decision)}")
            print(json.dumps(_doc(current), indent=2))
            return 0
        return _revert(store, name, current)
    except ModelStoreError as exc:
        print(f"streamfuse: {exc}", file=sys.stderr)
        return 1


def _revert(store: ModelStore, name: str, current: StoredDecision) -> int:
    previous = current.record.get("previous")
    if not isinstance(previous, str):
        print(
            f"streamfuse: decision v{current.version} names no previous strategy", file=sys.stderr
        )
        return 1
    held = current.record.get("held", [])
    held = sorted({*(h for h in held if isinstance(h, str)), current.strategy} - {previous})
    record = {
        "strategy": previous,
        "previous": current.strategy,
        "action": "revert",
        "by": "streamfuse store strategy revert",
        "reverted": current.version,
        "held": held,
    }
    try:
        version = store.publish_decision(name, record, expected=current.version)
    except ConflictError:
        print("streamfuse: the decision changed meanwhile; look again (show)", file=sys.stderr)
        return 1
    print(f"{name}: decision v{version} serves {previous} again ({current.strategy} held)")
    return 0


def _line(decision: StoredDecision) -> str:
    r = decision.record
    figures = r.get("figures") or {}
    why = ", ".join(f"{k} {v}" for k, v in figures.items()) if isinstance(figures, dict) else ""
    return (
        f"{r.get('action', 'promote')} {decision.strategy} (was {r.get('previous')}) "
        f"by {r.get('by', '?')} at {decision.manifest.get('created', '?')}"
        + (f": {why}" if why else "")
    )


def _doc(decision: StoredDecision) -> dict[str, Any]:
    return {
        "version": decision.version,
        "created": decision.manifest.get("created"),
        **decision.record,
    }
