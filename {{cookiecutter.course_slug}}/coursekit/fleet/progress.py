"""Live per-seat progress: a table that updates in a terminal, one line per change elsewhere."""
from __future__ import annotations

import threading
import time

from rich.live import Live
from rich.table import Table

from coursekit.ui import err


class SeatProgress:
    """Thread-safe; use as a context manager around the parallel work."""

    def __init__(self, seats: list[str], title: str):
        self.title = title
        self.rows = {seat: ("waiting", "") for seat in seats}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live = Live(self._table(), console=err, refresh_per_second=4, transient=False) if err.is_terminal else None

    def _table(self) -> Table:
        table = Table(title=self.title)
        for column in ("seat", "state", "detail"):
            table.add_column(column)
        for seat, (state, detail) in self.rows.items():
            table.add_row(seat, state, detail)
        return table

    def update(self, seat: str, state: str, detail: str = "") -> None:
        """Record a seat's new state and show it."""
        with self._lock:
            self.rows[seat] = (state, detail)
            if self._live:
                self._live.update(self._table())
            else:
                elapsed = time.monotonic() - self.started
                err.print(f"[{elapsed:6.1f}s] {seat}: {state}" + (f" ({detail})" if detail else ""))

    def __enter__(self) -> "SeatProgress":
        if self._live:
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live:
            self._live.stop()
