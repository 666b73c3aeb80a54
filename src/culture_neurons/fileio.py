"""Atomic file writes, input checks and content hashes.

Every output of the package goes through :func:`atomic_path` so that a killed process or a full disk
never leaves a half-written file under the final name, and every output gets the mode the umask
gives (shared group folders on a cluster rely on it). Inputs are checked with
:func:`check_input_file` and :func:`refuse_overwriting_inputs` before any work starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CultureNeuronsError, InputError


class WriteError(CultureNeuronsError, OSError):
    """An output could not be written (full disk, quota, vanished folder); nothing partial was left.

    Also an ``OSError``, so callers that handled the raw error keep working.
    """

    exit_code = 1


# A temporary file left by a writer that died without cleaning up (SIGKILL, power loss) is removed
# by the next writer of the same file. Temporary names carry host and pid, so only dead writers'
# files are touched; names from older versions (no host/pid) are removed once this old.
_LEGACY_STALE_S = 3600.0


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # other systems: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


def apply_umask_mode(path: str | os.PathLike, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would: 0o666 (0o777 for folders) minus the umask.

    ``mkstemp`` and ``mkdtemp`` create private (0600/0700) entries, and that mode survives the
    final rename, which would make every output unreadable to the owner's group.
    """
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def make_temp_dir(prefix: str, dir: str | os.PathLike) -> Path:
    """``tempfile.mkdtemp`` with the mode the umask gives, for folders renamed into place later."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    apply_umask_mode(path, folder=True)
    return path


def temp_prefix(path: str | os.PathLike) -> str:
    """The name prefix of :func:`atomic_path`'s temporary files for ``path``: ``.NAME.HOST-PID.``."""
    path = Path(path)
    tagged = f".{path.name}.{_host()}-{os.getpid()}."
    # Names near the 255-byte limit fall back to the untagged form (cleaned up by age only).
    return tagged if len(tagged.encode()) < 200 else f".{path.name}."


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``path`` left by dead writers; returns what was removed.

    A sibling ``.NAME.HOST-PID.*.tmp`` is stale when HOST is this host and PID is not running. A
    sibling in the old ``.NAME.XXXXXXXX*.tmp`` form (no host or pid) is stale after an hour.
    Files of live writers and of other hosts are left alone.
    """
    path = Path(path)
    removed: list[Path] = []
    try:
        siblings = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    host = _host()
    tagged = re.compile(rf"^\.{re.escape(path.name)}\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.")
    legacy = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}")
    for tmp in siblings:
        m = tagged.match(tmp.name)
        if m:
            stale = m["host"] == host and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))
        else:
            try:
                stale = bool(legacy.match(tmp.name)) and time.time() - tmp.lstat().st_mtime > _LEGACY_STALE_S
            except OSError:
                stale = False
        if stale:
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped, for ``Path.glob``."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def write_failure(exc: BaseException, path: str | os.PathLike) -> WriteError | None:
    """A one-line :class:`WriteError` for an I/O failure while writing ``path``, or None if ``exc`` is not one.

    safetensors reports a full disk as ``SafetensorError`` (not ``OSError``) and torch as a
    ``RuntimeError`` from its stream writer, so both are recognised here by type name and message.
    """
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
    elif type(exc).__name__ == "SafetensorError" or (isinstance(exc, RuntimeError) and "write" in str(exc).lower()):
        found = re.search(r'message: "([^"]+)"', str(exc)) or re.search(
            r"I/O error: (.+?)(?: \(os error \d+\))?$", str(exc)
        )
        reason = found.group(1) if found else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        return None
    return WriteError(
        f"cannot write {path}: {reason}; no partial file was left (an earlier {Path(path).name}, if any, is kept)"
    )


def ensure_writable_parent(path: str | os.PathLike) -> Path:
    """Check that ``path`` can be written, creating nothing.

    Called before long work starts, so that a bad ``--out`` fails in a second, not after an hour,
    and a run that fails leaves no empty output folders behind. Missing folders are created by
    :func:`atomic_path` when the file is written.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output path {path} is a folder; give a file name")
    ancestor = path.parent if str(path.parent) else Path(".")
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot create output folder {path.parent}: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"output folder {ancestor} is not writable")
    return path


def _make_parent(path: Path) -> list[Path]:
    """Create ``path``'s missing folders; returns those created, deepest last (removed again on failure)."""
    missing = []
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise InputError(f"cannot create output folder {path.parent}: {exc.strerror or exc}") from exc
    return missing[::-1]


def _remove_empty(folders: list[Path]) -> None:
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds while empty: another writer's files are never touched


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic. On any
    exception (including ``KeyboardInterrupt`` and ``ENOSPC``) the temporary file is removed and the
    previous content of ``path``, if any, is left untouched.
    """
    path = ensure_writable_parent(path)
    created = _make_parent(path)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix + ".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        _remove_empty(created)
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # After the block: some writers (safetensors) replace the file with their own private one.
        apply_umask_mode(tmp_path, folder=tmp_path.is_dir())
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        _remove_empty(created)
        converted = write_failure(exc, path) if isinstance(exc, Exception) else None
        if converted is not None:
            raise converted from exc
        raise


def check_input_file(path: str | os.PathLike, what: str, fifo_ok: bool = True) -> Path:
    """Check that ``path`` can be read as ``what`` (e.g. "examples file"); raise a one-line InputError if not.

    Regular files and, unless ``fifo_ok`` is false (for formats that are memory-mapped, such as
    safetensors), FIFOs (``-e <(cat f)``) are accepted. A missing path, a folder, a device,
    a socket or an unreadable file each get their own message, so the message is true.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError(f"{what} {path} is a broken symbolic link") from None
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"{what} {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a folder; give a file")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise InputError(f"{what} {path} is a device file, not a {what}")
    if stat.S_ISSOCK(mode):
        raise InputError(f"{what} {path} is a socket, not a {what}")
    if stat.S_ISFIFO(mode) and not fifo_ok:
        raise InputError(f"{what} {path} is a pipe (FIFO); this format is memory-mapped, so give a regular file")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise InputError(f"{what} {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} is not readable (permission denied)")
    return path


def _paths(value: Any) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value if v is not None]


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


def refuse_overwriting_inputs(outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Raise :class:`InputError` when an output path is one of the command's inputs.

    ``outputs`` and ``inputs`` map an option name (``"--out"``, ``"--examples"``) to a path, a list
    of paths or None. Paths are compared as files (symbolic and hard links count), so
    ``score -e same.jsonl -o same.jsonl`` stops before anything is read or written.
    """
    for out_name, out_value in outputs.items():
        for out in _paths(out_value):
            for in_name, in_value in inputs.items():
                for src in _paths(in_value):
                    if _same_file(out, src):
                        raise InputError(
                            f"{out_name} {out} is also the input {in_name}; writing it would destroy the input. "
                            "Choose another output path"
                        )


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of ``obj``'s canonical JSON form (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
