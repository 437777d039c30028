"""One run per output file: an exclusive lock on a file a run writes (``--stream``, ``--json``).

Two runs writing the same stream would interleave their lines (and the second would truncate the
first's file), leaving a file that fails to read with a misleading "not valid JSON". A run holds
:class:`RunLock` on each file it writes for as long as it runs: ``fcntl.flock`` (non-blocking)
on a sibling ``FILE.lock`` holding the pid and command of the holder, removed when the run ends.
The kernel drops the lock when the holder dies, so a killed run never leaves a stale lock.
Where ``fcntl`` is missing (Windows) there is no lock.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]


class FileLocked(ValueError):
    """Another run holds the lock (a usage error: the CLI exits 2)."""


def lock_path(target: Path) -> Path:
    target = Path(target)
    return target.with_name(target.name + ".lock")


class RunLock:
    """The lock of ``target`` (``option`` names the option that chose the file, for the
    message); ``with RunLock(path, "--stream"):``."""

    def __init__(self, target: Path, option: str, command: str = "") -> None:
        self.target = Path(target)
        self.option = option
        self.command = command
        self.path = lock_path(self.target)
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: held by another process
                holder = _read(fd)
                os.close(fd)
                raise FileLocked(self._message(holder)) from None
            # The holder before us may have removed the file between our open and our lock:
            # then we hold a lock on a file nobody else will open. Start again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.command}".rstrip().encode() + b"\n")
        self._fd = fd

    def _message(self, holder: str) -> str:
        pid, _, command = holder.strip().partition(" ")
        who = f"pid {pid}" if pid.isdigit() else "pid unknown"
        if command.strip():
            who += f": {command.strip()}"
        return (
            f"{self.target} is being written by another run ({who}; lock {self.path}); "
            f"wait for it to finish, or give this run another {self.option}"
        )

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while we hold it: see acquire
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""
