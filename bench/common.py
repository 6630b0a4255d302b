"""What every benchmark and fault run shares: a fresh database, seed data, a server, a light client.

The machine running these is small and shared, so the client is a bare asyncio HTTP/1.1
keep-alive client: it spends far less CPU per request than httpx or requests, leaving the
cores to the server and PostgreSQL that are being measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")


def pg_url(database: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:5432/{database}"


def database_recreate(database: str) -> None:
    subprocess.run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", "--force", database], check=True)
    subprocess.run(["createdb", "-h", PG_HOST, "-U", PG_USER, database], check=True)


def database_drop(database: str) -> None:
    subprocess.run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", "--force", database], check=True)


def server_env(database: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=pg_url(database),
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="gifting_site.settings",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        # Benchmarks send far more than a person taps; the throttle is tested elsewhere.
        GIFT_SEND_RATE="100000/s",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def seed(
    env: dict[str, str], *, rooms: int, senders: int, coins: int, out: Path, goal: bool = False, pk_seconds: int = 0
) -> dict:
    """Migrate and seed through bench/seed.py; returns {rooms: [...], senders: [{user_id, token}], ...}."""
    manage(env, "migrate", "--no-input")
    subprocess.run(
        [PYTHON, str(ROOT / "bench" / "seed.py"), str(rooms), str(senders), str(coins), str(out)]
        + (["--goal"] if goal else [])
        + (["--pk", str(pk_seconds)] if pk_seconds else []),
        cwd=ROOT,
        env=env,
        check=True,
    )
    return json.loads(out.read_text())


# --- the server ---------------------------------------------------------------------------------

SERVERS = {
    # name: command line (port filled in)
    "uvicorn-2": "{python} -m uvicorn gifting_site.asgi:application --host 127.0.0.1 --port {port} "
    "--workers 2 --no-access-log --log-level warning",
    "uvicorn-3": "{python} -m uvicorn gifting_site.asgi:application --host 127.0.0.1 --port {port} "
    "--workers 3 --no-access-log --log-level warning",
    "uvicorn-1": "{python} -m uvicorn gifting_site.asgi:application --host 127.0.0.1 --port {port} "
    "--workers 1 --no-access-log --log-level warning",
    "daphne": "{python} -m daphne -b 127.0.0.1 -p {port} gifting_site.asgi:application",
    # WSGI for the REST and server APIs: threads, so a process's concurrent sends feed its group commit.
    "gunicorn-2": "{python} -m gunicorn gifting_site.wsgi:application --bind 127.0.0.1:{port} "
    "--workers 2 --worker-class gthread --threads 16 --log-level warning",
    # One process for every send of the machine: the biggest batches group commit can form (GIL-bound).
    "gunicorn-1": "{python} -m gunicorn gifting_site.wsgi:application --bind 127.0.0.1:{port} "
    "--workers 1 --worker-class gthread --threads 32 --log-level warning",
}


def pool_size(server: str) -> int:
    """DATABASE_POOL_SIZE per process as the README runs SERVER: one connection per gunicorn thread."""
    return 16 if server.startswith("gunicorn") else 8


@dataclass
class Server:
    name: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen | None = None
    log: Path = field(default_factory=lambda: Path("/tmp/giftstream-bench-server.log"))

    def start(self, timeout: float = 30.0) -> None:
        command = SERVERS[self.name].format(python=PYTHON, port=self.port).split()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if http_get_status(self.port, "/api/gifts/") == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the whole server (master and workers): what a crash or an OOM kill does."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def rss_mb(self) -> float:
        """Resident memory of the server and its workers."""
        if not self.process:
            return 0.0
        out = subprocess.run(["ps", "-o", "rss=", "-g", str(self.process.pid)], capture_output=True, text=True)
        return sum(int(line) for line in out.stdout.split()) / 1024


def group_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process group (the server and its workers), from /proc."""
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pid)], capture_output=True, text=True)
    return cpu_seconds(out.stdout.split())


def postgres_cpu_seconds() -> float:
    """User + system CPU of PostgreSQL on this machine: its live processes', and its exited backends'.

    A backend exits with its connection (pgbench's all do at the end of a run); the postmaster
    reaps it and the kernel adds its time to the postmaster's children's (cutime, cstime), so
    this is a counter whose difference over any interval is what PostgreSQL spent in it.
    """
    pids = subprocess.run(["ps", "-o", "pid=", "-C", "postgres"], capture_output=True, text=True).stdout.split()
    reaped = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields and fields[1] not in pids:  # the postmaster: its parent is not PostgreSQL
            reaped += int(fields[13]) + int(fields[14])  # cutime, cstime
    return cpu_seconds(pids) + reaped / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, ... (utime is [11], stime [12])."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def cpu_seconds(pids: list[str]) -> float:
    """User + system CPU of these processes, from /proc (one that has exited counts 0)."""
    ticks = 0
    for pid in pids:
        if fields := _stat_fields(pid):
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def http_get_status(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(64).decode("latin-1")
    return int(head.split(" ", 2)[1])


# --- the client ---------------------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that sends JSON and reads JSON answers."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None

    async def request(self, method: str, path: str, body: object, headers: dict[str, str]) -> tuple[int, dict]:
        if self.writer is None:
            await self.open()
        data = json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(data)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        try:
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("server closed the connection")
            status = int(status_line.split(b" ", 2)[1])
            length, chunked, close = 0, False, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
                elif name == "connection" and value.lower() == "close":
                    close = True
            if chunked:
                payload = b""
                while (size := int((await self.reader.readline()).strip(), 16)) > 0:
                    payload += await self.reader.readexactly(size + 2)
                    payload = payload[:-2]
                await self.reader.readline()
            else:
                payload = await self.reader.readexactly(length) if length else b""
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            await self.close()
            raise ConnectionError("connection lost") from None
        if close:
            await self.close()
        try:
            answer = json.loads(payload) if payload else {}
        except ValueError:
            answer = {"raw": payload[:200].decode("latin-1")}
        return status, answer


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = subprocess.run(
        ["psql", "-h", PG_HOST, "-U", PG_USER, "-tAc", "show server_version", "postgres"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores, {cpu}; {system}; Python {platform.python_version()}; PostgreSQL {pg}"
