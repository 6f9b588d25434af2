"""Release on cancel: what a session does when SIGTERM, SIGINT or SIGHUP arrives.

CI runners cancel a job with one of these and send SIGKILL a few seconds later. Without
this, a cancelled session left its namespaces to the reapers: up to the Lease's duration
plus grace (2 minutes by default). With it:

1. The first signal turns into ``KeyboardInterrupt`` in the main thread, as SIGINT always
   does under pytest: pytest stops the run and tears the fixtures down, which stops the
   forwards and *requests* each namespace's deletion (without waiting for it to finish).
   Environments still coming up in the background are cancelled and deleted likewise.
2. ``RELEASE_AFTER`` seconds after the signal, every Lease whose namespace is still neither
   deleted nor kept is *released* (``kubefixtures.leases.renewal.release_unsettled``): the
   operator and ``kubefixtures gc`` delete such namespaces at once, without waiting for
   expiry.
3. A signal that comes once pytest has torn everything down (``finishing``) interrupts
   nothing: it is only remembered, for the release and the exit below. Interrupting then
   would cut the release short, and end Python by SIGINT whatever the signal was.
4. Further signals during that cleanup are ignored (a second SIGINT from an impatient
   runner, or the one xdist's controller forwards) so that it is not cut short; SIGKILL
   still ends the process, and expiry still covers it.
5. At the very end (``exit_by_signal``), a session ended by SIGTERM or SIGHUP ends by that
   same signal again, with the default handler: its parent sees "terminated by SIGTERM"
   (shell status 143) as from any other program. SIGINT keeps pytest's own exit status,
   2 (interrupted).
6. On Pythons with CPython's ``ast.parse`` race (``AST_PARSE_RACE``), the garbage collector
   is paused from the signal until ``uninstall``: see ``_pause_the_collector``.

Handlers are installed only in the main thread, and only over the default handlers: a
program that installed its own keeps it. Process-wide state, because signals are.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = [
    "AST_PARSE_RACE",
    "CANCEL_SIGNALS",
    "RELEASE_AFTER",
    "exit_by_signal",
    "finishing",
    "install",
    "release_now",
    "remaining",
    "requested",
    "uninstall",
]

CANCEL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# Seconds from the signal to releasing what is not deleted yet: CI runners commonly allow
# 5 to 10 s between SIGTERM and SIGKILL (GitHub Actions 7.5 s, GitLab 5 s... or less).
RELEASE_AFTER = 3.0
# CPython 3.11.0-3.11.7 and 3.12.0-3.12.1 keep ast.parse's recursion depth in one place for
# the whole process (python/cpython#106905, fixed in 3.11.8 and 3.12.2 by #113035): when a
# garbage collection inside ast.parse runs Python code (a finalizer, a gc callback) that
# parses too, or that lets another thread parse, the first parse fails with "SystemError:
# AST constructor recursion depth mismatch". pytest parses source files to format the
# KeyboardInterrupt while our threads clean up, and Python 3.11's traceback module parses
# every line it formats (a thread logging an error): CI saw the run end with that error,
# status 1 instead of 2.
AST_PARSE_RACE = (3, 11) <= sys.version_info[:3] < (3, 11, 8) or (
    (3, 12) <= sys.version_info[:3] < (3, 12, 2)
)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requested: int | None = None
        self.requested_at = 0.0
        self.interrupt = True  # False once pytest has torn down (see finishing())
        self.previous: dict[int, Any] = {}
        self.callbacks: list[Callable[[int], None]] = []
        self.collector_paused = False  # by _pause_the_collector: resumed by uninstall


_state = _State()


def requested() -> int | None:
    """The signal that cancelled this process, or None."""
    return _state.requested


def remaining() -> float:
    """Seconds left until the release (0 when not cancelled, or past it)."""
    if _state.requested is None:
        return 0.0
    return max(RELEASE_AFTER - (time.monotonic() - _state.requested_at), 0.0)


def install(on_cancel: Callable[[int], None]) -> bool:
    """Handle the cancel signals (see the module's doc); ``on_cancel(signum)`` is called
    once, from the handler, and must only start things. False when not in the main thread
    (signals can only be handled there) or when no handler could be installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    with _state.lock:
        _state.callbacks.append(on_cancel)
        for signum in CANCEL_SIGNALS:
            if signum in _state.previous:
                continue
            current = signal.getsignal(signum)
            if current not in (signal.SIG_DFL, signal.default_int_handler):
                continue  # someone else's: theirs to handle
            _state.previous[signum] = current
            signal.signal(signum, _handle)
    return bool(_state.previous)


def uninstall(on_cancel: Callable[[int], None]) -> None:
    """Forget ``on_cancel``; with no callback left, restore the handlers ``install``
    replaced (a pytest run in-process, as by pytester, inside another one keeps the
    outer run's)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _state.lock:
        if on_cancel in _state.callbacks:
            _state.callbacks.remove(on_cancel)
        if _state.callbacks:
            _state.interrupt = True  # an inner run finished; the outer one goes on
            return
        for signum, previous in _state.previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)
        _state.previous.clear()
        _state.requested = None
        _state.interrupt = True
        if _state.collector_paused:
            _state.collector_paused = False
            gc.enable()


def finishing() -> None:
    """pytest has torn the session down: a cancel signal from now on interrupts nothing."""
    _state.interrupt = False


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.requested is not None:
        return  # cleaning up already: a second signal must not cut the cleanup short
    _state.requested, _state.requested_at = signum, time.monotonic()
    _pause_the_collector()
    for callback in list(_state.callbacks):
        with contextlib.suppress(Exception):  # a broken callback must not stop the rest
            callback(signum)
    threading.Thread(target=_release_later, name="kubefixtures-release", daemon=True).start()
    if _state.interrupt:
        raise KeyboardInterrupt


def _pause_the_collector() -> None:
    """Where ``AST_PARSE_RACE``: no garbage collection until the session ends. Without one,
    nothing inside ``ast.parse`` lets another thread run, so pytest's formatting of the
    interrupt cannot meet another thread's parse. Reference counting still frees all but
    cycles, for the few seconds a cancelled session has left."""
    if AST_PARSE_RACE and gc.isenabled():
        gc.disable()
        _state.collector_paused = True


def _release_later() -> None:
    time.sleep(RELEASE_AFTER)
    release_now()


def release_now() -> None:
    """Release this process's unsettled Leases (its namespaces not deleted nor kept yet):
    at ``RELEASE_AFTER``, and again on the way out, whatever is still coming up in a
    background thread (the process may be gone before that thread is done)."""
    from kubefixtures.leases.renewal import release_unsettled

    for line in release_unsettled():
        with contextlib.suppress(OSError):
            os.write(2, (line + "\n").encode())


def exit_by_signal(signum: int | None) -> None:
    """End the process by ``signum``, the SIGTERM or SIGHUP that cancelled it (no return
    then); nothing for SIGINT or None."""
    if signum is None or signum == signal.SIGINT:
        return
    with contextlib.suppress(OSError):
        os.write(2, f"kubefixtures: cancelled by {signal.Signals(signum).name}\n".encode())
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
