"""supervisord: the process supervisor that runs every service of the stack."""
from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

from cdc_platform.polling import wait_until

from cdc_local.stack.config import StackConfig
from cdc_local.stack.secrets import write_private
from cdc_local.stack.service import Service, StackError


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def make_connection(self, host):  # noqa: ANN001 - signature of the base class
        return _UnixHTTPConnection(self._path)


def _escape(value: str) -> str:
    # supervisord expands %(name)s in its config; a literal % must be doubled.
    return value.replace("%", "%%")


def render_config(cfg: StackConfig, services: list[Service]) -> str:
    launcher = cfg.repo_root / "include" / "cdc_local" / "stack" / "launch.py"
    python = cfg.venv / "bin" / "python"
    lines = [
        "; Written by the cdc_local stack manager on every `up`.",
        "[unix_http_server]",
        f"file={cfg.supervisor_socket}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={cfg.logs / 'supervisord.log'}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={cfg.run / 'supervisord.pid'}",
        f"childlogdir={cfg.logs}",
        f"directory={cfg.state_dir}",
        "minfds=4096",
        "nodaemon=false",
    ]
    if os.geteuid() == 0:
        lines.append("user=root")
    lines += [
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{cfg.supervisor_socket}",
        "",
    ]
    for svc in services:
        command = svc.command
        if svc.environment:
            env_path = cfg.conf / f"{svc.name}.env.json"
            env_path.parent.mkdir(parents=True, exist_ok=True)
            write_private(env_path, json.dumps(svc.environment, indent=1, sort_keys=True))
            command = [str(python), str(launcher), str(env_path), "--", *command]
        lines += [
            f"[program:{svc.name}]",
            f"command={_escape(shlex.join(command))}",
            f"directory={_escape(str(svc.directory or cfg.state_dir))}",
            "autostart=false",
            "autorestart=true",
            "startsecs=3",
            "startretries=5",
            f"stopsignal={svc.stopsignal}",
            f"stopwaitsecs={svc.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_escape(str(cfg.log_file(svc.name)))}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=3",
        ]
        if svc.user:
            lines.append(f"user={svc.user}")
        lines.append("")
    return "\n".join(lines)


class Supervisor:
    def __init__(self, cfg: StackConfig):
        self.cfg = cfg
        self.conf_path = cfg.conf / "supervisord.conf"

    @property
    def rpc(self):
        proxy = xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(str(self.cfg.supervisor_socket)))
        return proxy.supervisor

    def running(self) -> bool:
        if not self.cfg.supervisor_socket.exists():
            return False
        try:
            return self.rpc.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault, http.client.HTTPException):
            return False

    def pid(self) -> int | None:
        try:
            return int((self.cfg.run / "supervisord.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, services: list[Service]) -> None:
        """Start supervisord with the current config, or reload it if already running."""
        for path in (self.cfg.logs, self.cfg.run, self.cfg.conf):
            path.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render_config(self.cfg, services))
        if self.running():
            added, changed, removed = self.rpc.reloadConfig()[0]
            for name in removed:
                self.rpc.stopProcessGroup(name)
                self.rpc.removeProcessGroup(name)
            for name in added:
                self.rpc.addProcessGroup(name)
            running = [name for name in changed if self.alive(name)]
            for name in changed:
                if name not in running:
                    # Stopped (as `restart` leaves it): re-adding applies the new program config.
                    self.rpc.removeProcessGroup(name)
                    self.rpc.addProcessGroup(name)
            if running:
                print(f"    note: config changed for {', '.join(running)}; `stack restart` applies it")
            return
        self.cfg.supervisor_socket.unlink(missing_ok=True)
        supervisord = self.cfg.venv / "bin" / "supervisord"
        # Services must not inherit the caller's Airflow settings (a shell or test run with its
        # own AIRFLOW_HOME or database): each gets its environment from the stack's files.
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        result = subprocess.run([str(supervisord), "-c", str(self.conf_path)], capture_output=True, text=True,
                                check=False, env=clean_env)
        if result.returncode != 0:
            raise StackError(f"supervisord failed to start:\n{result.stdout}{result.stderr}")
        wait_until(self.running, 20, 0.2, f"supervisord to come up (see {self.cfg.logs / 'supervisord.log'})",
                   error=StackError)

    def info(self, name: str) -> dict | None:
        try:
            return self.rpc.getProcessInfo(name)
        except xmlrpc.client.Fault:
            return None

    def all_info(self) -> dict[str, dict]:
        if not self.running():
            return {}
        return {p["name"]: p for p in self.rpc.getAllProcessInfo()}

    def start_process(self, name: str) -> None:
        try:
            self.rpc.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise StackError(f"supervisor could not start {name}: {fault.faultString}") from None

    def alive(self, name: str) -> bool:
        info = self.info(name)
        return bool(info) and info["statename"] in ("STARTING", "RUNNING", "BACKOFF")

    def stop_process(self, name: str) -> None:
        try:
            self.rpc.stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString and "BAD_NAME" not in fault.faultString:
                print(f"    warning: stopping {name}: {fault.faultString}", file=sys.stderr)

    def shutdown(self, timeout: float = 60) -> None:
        pid = self.pid()
        try:
            self.rpc.shutdown()
        except (OSError, xmlrpc.client.Fault, http.client.HTTPException):
            pass
        if pid:
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout, 0.2, f"supervisord (pid {pid}) to exit",
                       error=StackError)
