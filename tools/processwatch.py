"""Process plumbing shared by the test servers (tools/moto_server.py, tools/faultproxy.py, tools/credserver.py): exit
when the process that started us is gone, make termination signals work even when the starter had them blocked, and
tell the starter which port we listen on."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def _process_identity(pid: int):
    """Something that changes when `pid` ends (its start time in /proc), or None once it has ended."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] in ("Z", "X") else fields[19]  # state, starttime
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return True


def restore_default_signals() -> None:
    """Make SIGTERM, SIGINT and SIGHUP end this process even when its starter had them blocked or ignored:
    a blocked mask and ignored dispositions survive exec, and a Swift test process starts its children from
    dispatch threads, which block all of them."""
    signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) == signal.SIG_IGN:
            signal.signal(number, signal.SIG_DFL)


def watch_parent(pid: int, name: str) -> None:
    """Exit this process within a second of process `pid` ending."""
    identity = _process_identity(pid)
    if identity is None:
        print(f"{name}: parent process {pid} is not running; exiting", file=sys.stderr, flush=True)
        os._exit(0)

    def run() -> None:
        while True:
            time.sleep(1)
            if _process_identity(pid) != identity:
                print(f"{name}: parent process {pid} ended; exiting", file=sys.stderr, flush=True)
                os._exit(0)

    threading.Thread(target=run, name="parent-watchdog", daemon=True).start()


def announce_port(port: int, port_file: str | None) -> None:
    """Print `LISTENING <port>` (flushed) and, when asked, write the port to `port_file` atomically, so that a
    starter polling the file never reads half a number."""
    print(f"LISTENING {port}", flush=True)
    if port_file:
        temporary = f"{port_file}.tmp.{os.getpid()}"
        with open(temporary, "w") as f:
            f.write(f"{port}\n")
        os.replace(temporary, port_file)
