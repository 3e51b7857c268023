"""Where the package talks to a person: the consoles and the progress display, defined once.

- Text is printed as given: no rich markup (a path such as ``runs/[old]`` stays whole) and no
  emoji codes (``:x:`` in a file name stays ``:x:``). Styling is asked for explicitly with
  ``rich.text.Text``.
- Under a log file (nohup, SLURM, ``2> log``) rich would wrap tables at 80 columns and draw its
  progress bars only when a step ends; there, tables get a wide page and progress becomes a plain
  line every :data:`LOG_INTERVAL` seconds (``NEURONATTACK_LOG_INTERVAL`` overrides it).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from rich.console import Console
from rich.progress import Progress, TextColumn

LOG_INTERVAL = 30.0
# A table in a log file is read in an editor, not a terminal: give it room.
LOG_WIDTH = 240


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    return console


@cache
def stderr_console() -> Console:
    """Messages, warnings and progress."""
    return _console(stderr=True)


def stdout_console() -> Console:
    """Tables and results (stdout is what a script captures); made on each call because tests
    swap ``sys.stdout``."""
    return _console(stderr=False)


def warn(message: str) -> None:
    """One line on stderr, ``warning: ...``."""
    stderr_console().print(f"warning: {message}", soft_wrap=True)


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


@contextmanager
def warnings_to_console() -> Iterator[None]:
    """While a command runs, the package's logged warnings print as ``warning: ...`` lines
    instead of ``WARNING:neuronattack.models.generators:...`` (the format of whichever library
    configured the root logger first)."""
    package = logging.getLogger("neuronattack")
    handler = _ConsoleHandler(logging.WARNING)
    package.addHandler(handler)
    propagate, package.propagate = package.propagate, False
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.propagate = propagate


def progress_bar(*columns, disable: bool = False):
    """A rich ``Progress`` on a terminal; under a log file, plain periodic lines with the same
    ``add_task`` / ``update`` / ``advance`` calls."""
    console = stderr_console()
    for column in columns:
        if isinstance(column, TextColumn):  # descriptions hold class names and paths, as written
            column.markup = False
    if disable or console.is_terminal:
        return Progress(*columns, console=console, disable=disable)
    return LogProgress(console, _log_interval())


def _log_interval() -> float:
    try:
        return float(os.environ.get("NEURONATTACK_LOG_INTERVAL", LOG_INTERVAL))
    except ValueError:
        return LOG_INTERVAL


class LogProgress:
    """Progress for log files: a line every ``interval`` seconds and one at the end of each task,
    e.g. ``pass 1/2 (mean): 1,234/5,000 (25%), ~3 min left``. No line when a task starts: most
    tasks end within seconds, and a start line would double every one of them in the log."""

    def __init__(self, console: Console, interval: float) -> None:
        self.console = console
        self.interval = interval
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        for task in self.tasks.values():
            if not task["ended"] and exc[0] is None:
                self._line(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **_) -> int:
        task_id = len(self.tasks)
        now = time.monotonic()
        self.tasks[task_id] = {"description": description, "total": total,
                               "completed": completed, "start": now, "start_completed": completed,
                               "printed": now, "ended": False}
        return task_id

    def update(self, task_id: int, completed: float | None = None, advance: float | None = None,
               total: float | None = None, description: str | None = None, **_) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task["total"] = total
        if description is not None:
            task["description"] = description
        if completed is not None:
            task["completed"] = completed
        if advance:
            task["completed"] += advance
        finished = task["total"] is not None and task["completed"] >= task["total"]
        if finished and not task["ended"]:
            task["ended"] = True
            self._line(task)
        elif time.monotonic() - task["printed"] >= self.interval:
            self._line(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _line(self, task: dict) -> None:
        task["printed"] = time.monotonic()
        done, total = task["completed"], task["total"]
        text = f"{task['description']}: {done:,.0f}"
        if total:
            text += f"/{total:,.0f} ({done / total:.0%})"
            rate = (done - task["start_completed"]) / max(time.monotonic() - task["start"], 1e-9)
            if 0 < done < total and rate > 0:
                text += f", ~{duration((total - done) / rate)} left"
        self.console.print(text, soft_wrap=True)
        sys.stderr.flush()


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``: how long, at the precision a person plans with."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
