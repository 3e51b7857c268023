"""Output folders: which ones a command may write into, and one writer per folder at a time.

The rule: a folder is ours when it holds our ``meta.json`` of the kind the command writes (an
analysis, an attack, a campaign, an export, a demo). A missing or empty folder is free. Anything
else that is not empty belongs to someone else: it is refused unless the user says so explicitly,
and even then we only add our files and never delete theirs.

The lock is an ``flock`` on a hidden file in the folder. The kernel releases it when its process
dies, however it dies, so the lock of a killed run (SIGKILL, a lost SLURM job) is simply taken
over by the next run; the file says who holds it, for the message a second run prints.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from neuronattack.errors import NeuronAttackError

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are not locked there
    fcntl = None

MARKER = "meta.json"
# artifacts' atomic writes: ".NAME.RANDOM.tmp" beside the file they replace
_TEMPORARY = re.compile(r"\..+\.tmp")
LOCK = ".neuronattack.lock"
# The one CLI flag, on every command that adds files to a folder, for "write into a foreign one".
ALLOW_FOREIGN = "--allow-foreign-out"
# schema of the marker -> what the folder holds, for messages
KINDS = {
    "neuronattack.directions/1": "analysis",
    "neuronattack.attack/1": "attack",
    "neuronattack.campaign/1": "campaign",
    "neuronattack.export/1": "export",
    "neuronattack.demo/1": "demo",
}


def schema_of(folder: Path) -> str | None:
    """The ``schema`` of the folder's ``meta.json``; None when there is none or it is unreadable."""
    try:
        meta = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta.get("schema") if isinstance(meta, dict) else None


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that make it someone's (empty: the folder is free).

    Left out: our lock, the temporary files of an atomic write a kill interrupted, and empty
    folders (a run killed before its first meta.json must still resume).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir()
                  if entry.name != LOCK and not _TEMPORARY.fullmatch(entry.name)
                  and not (entry.is_dir() and not any(entry.iterdir())))


def is_ours(folder: Path, schema: str) -> bool:
    return schema_of(folder) == schema


def claim(folder: Path, schema: str, *, allow_nonempty: bool = False, flag: str = "",
          option: str = "--out") -> None:
    """Refuse, before any work, a folder that holds something other than our ``schema`` output.

    ``flag`` names the option that lets the user write into a foreign non-empty folder anyway
    (``allow_nonempty``); without one, such folders are always refused.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NeuronAttackError(f"{option} {folder} is a file; give a folder.")
    entries = foreign_entries(folder)
    if not entries:
        return
    # A damaged meta.json is named as such, not taken for a stranger's file.
    if (folder / MARKER).is_file() and not allow_nonempty:
        # here, not at the top: the CLI imports this module for its flag name, without torch
        from neuronattack.artifacts import read_json

        remedy = (f"pass {flag} to start again" if flag else "delete the folder") + \
            ", or choose another folder"
        read_json(folder / MARKER, remedy)
    found = schema_of(folder)
    if found == schema:
        return
    wanted = KINDS.get(schema, schema)
    if found in KINDS:
        raise NeuronAttackError(
            f"{option} {folder} holds a neuronattack {KINDS[found]}, not the {wanted} this "
            "command writes; choose another folder."
        )
    if allow_nonempty:
        return
    example = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    how = f", or pass {flag} to add our files beside them" if flag else ""
    raise NeuronAttackError(
        f"{option} {folder} is not empty ({example}) and holds no neuronattack {wanted}; "
        f"choose a new or empty folder{how}."
    )


def check_unlocked(folder: Path) -> None:
    """Refuse now, before models load, a folder that another run is writing to."""
    path = Path(folder) / LOCK
    if fcntl is None or not path.exists():
        return
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(folder, path) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; raise at once if another live process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = folder / LOCK
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the block)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise _busy(folder, path) from None
        # The holder before us may have removed the file between our open and our flock: then
        # we lock a file nobody else will ever see, so start again on the current one.
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before the unlock, so no one locks a file being removed
        handle.close()


def _busy(folder: Path, path: Path) -> NeuronAttackError:
    try:
        holder = path.read_text(encoding="utf-8").strip()
    except OSError:
        holder = ""
    who = f" ({holder})" if holder else ""
    return NeuronAttackError(
        f"{folder} is being written by another neuronattack run{who}; wait for it to finish or "
        "choose another folder."
    )
