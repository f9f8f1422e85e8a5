"""A private MariaDB server for one benchmark run, and its status counters.

The benchmarks read statement and lock counters from ``SHOW GLOBAL STATUS``;
on a shared server other clients' traffic would land in the same counters, so
each run starts its own ``mariadbd`` at compiled-in default settings
(``--no-defaults``) on a loopback port and removes it afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pymysql

#: Counters whose difference tells what the server did during a measurement.
COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_commit",
    "Com_rollback",
    "Com_begin",
    "Com_set_option",
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "Innodb_row_lock_time_max",
    "Innodb_rows_deleted",
)


@dataclass
class MariaDB:
    """A ``mariadbd`` started for this run, or an existing server to reuse."""

    host: str = "127.0.0.1"
    port: int = 3407
    database: str = "kpsession_bench"
    datadir: str | None = None
    process: subprocess.Popen[bytes] | None = None
    private: bool = True

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@{self.host}:{self.port}/{self.database}"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user="root",
            database=database,
            autocommit=True,
            connect_timeout=5,
        )

    def start(self, *, fresh: bool = True, args: Iterable[str] = ()) -> None:
        """Start the server and wait until it answers.

        :param fresh: initialise a new data directory (and an empty database);
            ``False`` restarts on the data directory already there.
        :param args: extra server options for this start only (the fill runs
            with a large buffer pool, the measurements at the defaults).
        """
        if not self.private:
            if fresh:
                self._create_database()
            return
        if fresh:
            self.datadir = tempfile.mkdtemp(prefix="kpbench-mariadb-")
            self._install()
        self._launch(list(args))
        if fresh:
            self._create_database()

    def _install(self) -> None:
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _launch(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.datadir}/mysqld.sock",
                f"--pid-file={self.datadir}/mysqld.pid",
                f"--log-error={self.datadir}/error.log",
                "--user=root",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.connect().close()
                break
            except pymysql.MySQLError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"private mariadbd did not start; see {self.datadir}/error.log"
                    ) from None
                time.sleep(0.2)

    def _create_database(self) -> None:
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
            cursor.execute(
                f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4 "
                "COLLATE utf8mb4_general_ci"
            )

    def shutdown(self) -> None:
        """Stop a private server cleanly, keeping its data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=300)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def snapshot(self) -> str:
        """Copy the (stopped) data directory; return where the copy is."""
        assert self.datadir is not None and self.process is None
        copy = self.datadir + ".snapshot"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.datadir, copy, symlinks=True)
        return copy

    def restore(self, copy: str) -> None:
        """Replace the (stopped) data directory by a snapshot of it."""
        assert self.datadir is not None and self.process is None
        shutil.rmtree(self.datadir, ignore_errors=True)
        shutil.copytree(copy, self.datadir, symlinks=True)

    def stop(self) -> None:
        """Stop a private server and delete its data directory and snapshot."""
        if not self.private:
            with self.connect() as conn, conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
            return
        self.shutdown()
        if self.datadir:
            for path in (self.datadir, self.datadir + ".snapshot"):
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)

    def status(self, names: Iterable[str] = COUNTERS) -> dict[str, int]:
        """Read the global status counters named in ``names``."""
        wanted = set(names)
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS")
            return {
                name: int(value)
                for name, value in cursor.fetchall()
                if name in wanted and str(value).lstrip("-").isdigit()
            }

    def variable(self, name: str) -> str:
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL VARIABLES LIKE %s", (name,))
            row = cursor.fetchone()
            return str(row[1]) if row else ""


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counter differences (``*_max`` counters are taken as read after)."""
    return {
        name: after[name]
        if name.endswith("_max")
        else after[name] - before.get(name, 0)
        for name in after
    }
