"""Start and stop a throwaway or persistent PostgreSQL on 127.0.0.1.

initdb and pg_ctl refuse to run as root, so as root they run as the
`postgres` user (the data folder is handed to it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "verification"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: install PostgreSQL 15 server binaries")


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class Postgres:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+pg8000://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def start(self) -> Postgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            done = subprocess.run(
                _as_owner([_bin("initdb"), "-D", str(self.data_dir), "-U", "postgres",
                           "--auth=trust", "-E", "UTF8", "--no-sync"]),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            if done.returncode:
                raise RuntimeError(f"initdb failed in {self.data_dir}: {done.stderr.strip()}")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
            "-c max_connections=200 -c fsync=off"  # fsync only matters if the OS crashes
        )
        log_file = self.data_dir / "server.log"
        subprocess.run(
            _as_owner([_bin("pg_ctl"), "-D", str(self.data_dir), "-o", options,
                       "-l", str(log_file), "-w", "-t", "60", "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )
        self._create_database()
        return self

    def _create_database(self) -> None:
        import pg8000.native

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = pg8000.native.Connection("postgres", host="127.0.0.1", port=self.port, database="postgres")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            if not conn.run("SELECT 1 FROM pg_database WHERE datname = :n", n=DB_NAME):
                conn.run(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            conn.close()

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_owner([_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]),
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def is_running(self) -> bool:
        result = subprocess.run(
            _as_owner([_bin("pg_ctl"), "-D", str(self.data_dir), "status"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0
