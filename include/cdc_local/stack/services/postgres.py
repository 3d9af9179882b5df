"""PostgreSQL: a private cluster under the state dir, logical decoding on, password auth.

initdb and postgres refuse to run as root, so as root they run as the ``postgres``
system user that Debian's package creates; as anyone else they run as that user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from cdc_platform import names

from cdc_local.stack.config import StackConfig
from cdc_local.stack.secrets import write_private
from cdc_local.stack.service import Service, StackError

ENGAGEMENT_DB = "engagement_db"
ENGAGEMENT_USER = "engagement"
AIRFLOW_DB = "airflow"
AIRFLOW_USER = "airflow"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        found = shutil.which("postgres")
        if not found:
            raise StackError("PostgreSQL server binaries not found; run `make install` (installs Debian's postgresql).")
        return Path(found).resolve().parent
    return Path(candidates[-1]).parent


def run_as_user() -> str | None:
    """The OS user postgres runs as: ``postgres`` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def _ensure_traversable(path: Path, user: str) -> None:
    """Give ``user`` search (not read) permission on every ancestor of ``path``.

    A clone under /root (mode 0700) is otherwise unreachable for the postgres user.
    """
    uid = pwd.getpwnam(user).pw_uid
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid == uid or st.st_mode & 0o001:
            continue
        os.chmod(parent, st.st_mode | 0o001)
        print(f"    note: added o+x to {parent} so the {user} user can reach its data dir")


def _chown(path: Path, user: str | None) -> None:
    if user is None:
        return
    pw = pwd.getpwnam(user)
    if not path.is_dir():
        os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def service(cfg: StackConfig, secrets: dict[str, str]) -> Service:
    user = run_as_user()
    data_dir = cfg.data / "postgres"
    socket_dir = cfg.run / "postgres"
    port = cfg.ports["postgres"]

    def prepare() -> None:
        bins = bin_dir()
        socket_dir.mkdir(parents=True, exist_ok=True)
        if user:
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise StackError("running as root needs the `postgres` system user (Debian's postgresql package creates it)") from None
            _ensure_traversable(cfg.state_dir, user)
            _chown(socket_dir, user)
        if not (data_dir / "PG_VERSION").exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(data_dir, 0o700)
            _chown(data_dir, user)
            pwfile = socket_dir / "initdb.pw"
            write_private(pwfile, secrets["postgres_superuser_password"] + "\n")
            _chown(pwfile, user)
            try:
                print("    initdb (first start)")
                subprocess.run(
                    _as_user([str(bins / "initdb"), "-D", str(data_dir), "-U", SUPERUSER,
                              "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                              "--locale=C.UTF-8"], user),
                    check=True, capture_output=True, text=True,
                )
            except subprocess.CalledProcessError as exc:
                raise StackError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from None
            finally:
                pwfile.unlink(missing_ok=True)
        settings = {
            "listen_addresses": f"'{cfg.host}'",
            "port": str(port),
            "unix_socket_directories": f"'{socket_dir}'",
            "wal_level": "logical",
            "max_replication_slots": "16",
            "max_wal_senders": "16",
            # A stuck or forgotten slot must not fill the disk.
            "max_slot_wal_keep_size": "'4GB'",
            "max_connections": "200",
            "shared_buffers": "'128MB'",
            "password_encryption": "'scram-sha-256'",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        managed = data_dir / "postgresql.cdc.conf"
        managed.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        main_conf = data_dir / "postgresql.conf"
        include = "include_if_exists = 'postgresql.cdc.conf'"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write(f"\n# Managed by the cdc_local stack manager.\n{include}\n")
        _chown(data_dir, user)

    def ready() -> bool:
        result = subprocess.run(
            [str(bin_dir() / "pg_isready"), "-h", cfg.host, "-p", str(port), "-q"], check=False
        )
        return result.returncode == 0

    def after_ready() -> None:
        import psycopg2

        conn = psycopg2.connect(host=cfg.host, port=port, user=SUPERUSER, dbname="postgres",
                                password=secrets["postgres_superuser_password"], connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for role, secret, extra in (
                    (ENGAGEMENT_USER, "engagement_password", "REPLICATION"),
                    (AIRFLOW_USER, "airflow_db_password", ""),
                    # Its table privileges are granted by provisioning, as the tables' owner.
                    (names.PG_CDC_ROLE, "debezium_password", "REPLICATION"),
                ):
                    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                    verb = "ALTER" if cur.fetchone() else "CREATE"
                    cur.execute(f'{verb} ROLE "{role}" LOGIN {extra} PASSWORD %s', (secrets[secret],))
                for db, owner in ((ENGAGEMENT_DB, ENGAGEMENT_USER), (AIRFLOW_DB, AIRFLOW_USER)):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if not cur.fetchone():
                        cur.execute(f'CREATE DATABASE "{db}" OWNER "{owner}"')
        finally:
            conn.close()

    return Service(
        name="postgres",
        command=[str(bin_dir() / "postgres"), "-D", str(data_dir)],
        port=port,
        ready=ready,
        ready_timeout=60,
        user=user,
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open sessions, checkpoint, exit.
        stopsignal="INT",
        stopwaitsecs=60,
        prepare=prepare,
        after_ready=after_ready,
    )
