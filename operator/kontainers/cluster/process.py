"""One control-plane component: a child process in its own process group, logging to a file;
host locks, and who listens on a local port (Linux /proc)."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import signal
import socket
import subprocess
import urllib.request
from collections import deque
from pathlib import Path


class Component:
    """Starts `argv` in a new session (so the whole group can be signalled) with output in `log`."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log, self.env = name, argv, log, env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"### {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exit_code(self) -> int | None:
        """None while running (or never started), else the exit status."""
        return self.process.poll() if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Ask the process group to exit (SIGTERM) without waiting."""
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout`; safe to call repeatedly."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # The leader is gone; anything it left in its group goes too.
        _signal_group(self.process.pid, signal.SIGKILL)

    def listens_on(self, host: str, port: int) -> bool:
        """Whether this process (or one of its group) holds the listening socket of host:port:
        a server answering there may be another program that had the port first."""
        return self.pid is not None and any(process_group(pid) == self.pid for pid in listener_pids(host, port))

    def tail(self, lines: int = 40) -> str:
        try:
            with open(self.log, "rb") as log:
                return b"".join(deque(log, maxlen=lines)).decode(errors="replace")
        except FileNotFoundError:
            return ""


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process, from /proc (Linux)."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) * 1024
    except FileNotFoundError:
        pass
    return values["VmRSS"], values["VmHWM"]


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether `url` answers 200 now (a health or readiness probe of a local process)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def bind_error(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now (None: it could), probed the way aiohttp
    binds (SO_REUSEADDR, so a port in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            return error.strerror or str(error)
    return None


def _proc_net_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)  # 32-bit words in host (little-endian) order
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def _listening_socket_inodes(host: str, port: int) -> set[str]:
    wanted = ipaddress.ip_address(host)
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            ip = _proc_net_address(address)
            mapped = getattr(ip, "ipv4_mapped", None)
            if ip.is_unspecified or wanted in (ip, mapped):
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


def listener_pids(host: str, port: int) -> set[int]:
    """Pids holding a socket listening on host:port (or on every address at that port); processes
    of other users are not visible unless this one is root."""
    inodes = _listening_socket_inodes(host, port)
    pids: set[int] = set()
    if not inodes:
        return pids
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{entry}/fd")):
                pids.add(int(entry))
        except OSError:
            continue
    return pids


def process_group(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def describe_pids(pids: set[int]) -> str:
    """`pid 12 (nginx), pid 40 (python3)`, or `a process this user cannot see` for none."""
    named = []
    for pid in sorted(pids):
        try:
            named.append(f"pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})")
        except OSError:
            named.append(f"pid {pid}")
    return ", ".join(named) or "a process this user cannot see"


class LockBusy(RuntimeError):
    """The lock is held; `holder` is what its holder wrote into it."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder}")
        self.path, self.holder = path, holder


def hold_lock(path: Path, holder: str):
    """Take the exclusive flock of `path` without waiting and write `holder` (who, which state
    dir) into it for whoever finds it taken; the lock lasts until the returned file is closed or
    this process ends. LockBusy when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        held_by = lock.read().strip() or "another process"
        lock.close()
        raise LockBusy(path, held_by) from None
    lock.truncate(0)
    lock.write(f"{holder}\n")
    lock.flush()
    return lock
