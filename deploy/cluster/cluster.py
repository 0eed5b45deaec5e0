"""Many Waystation processes on one machine: nginx in front of N gateway processes, M Celery
workers and one beat, all on the same PostgreSQL and Redis.

    python -m deploy.cluster.cluster start [--gateways 2] [--workers 1] [--port 8080]
    python -m deploy.cluster.cluster status | stop | restart-gateway N

Each gateway is one single-worker uvicorn process on its own loopback port, so a pid is a
gateway: nginx balances between them, `restart-gateway` restarts one while the others serve,
and `gateway_urls` reach each one directly. Every process runs in its own session (process
group); its pid, start time and port are recorded in <run_dir>/state.json, and `stop` ends
exactly those groups (SIGTERM, then SIGKILL after the drain time) and nothing else. A gateway
drains for CLUSTER_DRAIN_SECONDS (30) on SIGTERM. Logs are in <run_dir>/logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from waystation.serve import GRACE_SECONDS  # the drain is followed by this much grace

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).with_name("nginx.conf.tmpl")
DEFAULT_RUN_DIR = ROOT / "var" / "cluster"
DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/waystation",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


class ClusterError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    pid: int
    started: int  # the kernel's start time of the pid: a recycled pid is not ours
    port: int = 0


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise ClusterError("nginx is not installed (make cluster installs it)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the name


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Cluster:
    def __init__(
        self,
        *,
        gateways: int = 2,
        workers: int = 1,
        port: int = 0,
        env: dict[str, str] | None = None,
        run_dir: Path | str = DEFAULT_RUN_DIR,
        migrate: bool = True,
    ) -> None:
        self.gateways, self.workers, self.migrate = gateways, workers, migrate
        self.port = port or free_port()
        self.run_dir = Path(run_dir).resolve()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name, default in DEFAULTS.items():
            self.env.setdefault(name, default)
        self.env.update(env or {})
        self._kept_env = [*DEFAULTS, *(env or {})]  # recorded, for load() in another process
        self.drain_seconds = int(self.env.get("CLUSTER_DRAIN_SECONDS", "30"))
        self.env.setdefault("GATEWAY_DRAIN_SECONDS", str(self.drain_seconds))
        self.gateway_ports: list[int] = []
        self.procs: dict[str, Proc] = {}
        self.down: set[int] = set()  # gateways nginx must not send to (while restarting)
        self._popen: dict[int, subprocess.Popen] = {}  # ours to reap, when we started them

    # --- the API ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.gateway_ports]

    def start(self) -> Cluster:
        """Start everything and wait until nginx and every gateway answer /healthz."""
        if any(self._alive(p) for p in self._recorded().values()):
            raise ClusterError(f"a cluster is already running from {self.run_dir}; stop it first")
        for sub in ("logs", "tmp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.migrate:
            self._run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"])
        self.gateway_ports = [free_port() for _ in range(self.gateways)]
        try:
            for i in range(self.gateways):
                self._start_gateway(i)
            for i in range(self.workers):
                self._spawn(f"worker-{i}", self._celery("worker", "-c", "1", "-n", f"w{i}@%h"))
            schedule = str(self.run_dir / "celerybeat-schedule")
            self._spawn("beat", self._celery("beat", "--schedule", schedule))
            self._write_nginx_conf()
            self._run([nginx_binary(), "-t", "-q", *self._nginx_args()])
            self._spawn("nginx", [nginx_binary(), *self._nginx_args()])
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        names = [*self._gateway_names(), "nginx"]
        for name, url in zip(names, [*self.gateway_urls, self.url], strict=True):
            self._wait_healthy(name, url, deadline)

    def stop(self) -> None:
        """End every process start() started (nginx first), by its recorded group. Idempotent."""
        procs = self.procs or self._recorded()
        order = sorted(procs.values(), key=lambda p: p.name != "nginx")
        for proc in order:
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds + GRACE_SECONDS + 5
        for proc in order:
            self._reap(proc, deadline)
        self.procs = {}
        (self.run_dir / "state.json").unlink(missing_ok=True)

    def restart_gateway(self, i: int, drain_timeout: float | None = None) -> None:
        """Take gateway i out of nginx, SIGTERM it and wait for its drain, start it again on
        the same port, wait for its /healthz, and put it back."""
        drain = self.drain_seconds if drain_timeout is None else drain_timeout
        self._set_down(self.down | {i})
        proc = self.procs[f"gateway-{i}"]
        self._signal(proc, signal.SIGTERM)
        self._reap(proc, time.monotonic() + drain + GRACE_SECONDS + 5)
        self._start_gateway(i)
        self._wait_healthy(proc.name, self.gateway_urls[i], time.monotonic() + 60)
        self._set_down(self.down - {i})

    @classmethod
    def load(cls, run_dir: Path | str = DEFAULT_RUN_DIR) -> Cluster:
        """The cluster recorded in run_dir, as start() left it."""
        state = json.loads((Path(run_dir) / "state.json").read_text())
        cluster = cls(
            gateways=len(state["gateway_ports"]),
            workers=state["workers"],
            port=state["port"],
            env=state["env"],
            run_dir=run_dir,
        )
        cluster.gateway_ports = state["gateway_ports"]
        cluster.procs = {name: Proc(**p) for name, p in state["procs"].items()}
        return cluster

    def status(self) -> dict[str, bool]:
        return {name: self._alive(proc) for name, proc in self.procs.items()}

    # --- processes -------------------------------------------------------------------------

    def _celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "waystation", *args, "-l", "info"]

    def _gateway_names(self) -> list[str]:
        return [f"gateway-{i}" for i in range(self.gateways)]

    def _start_gateway(self, i: int) -> None:
        # waystation.serve: uvicorn plus the gateway's drain (gateway/drain.py) on SIGTERM
        command = [sys.executable, "-m", "waystation.serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.gateway_ports[i])]
        command += ["--no-access-log", "--log-level", "warning"]
        command += ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
        self._spawn(f"gateway-{i}", command, port=self.gateway_ports[i])

    def _spawn(self, name: str, command: list[str], port: int = 0) -> None:
        with open(self.run_dir / "logs" / f"{name}.log", "ab") as log:
            popen = subprocess.Popen(  # noqa: S603 - our own commands
                command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends it and its children
            )
        self._popen[popen.pid] = popen
        self.procs[name] = Proc(name, popen.pid, _start_time(popen.pid) or 0, port)
        self._save()

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True)  # noqa: S603
        if done.returncode:
            raise ClusterError(
                f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}"
            )

    def _alive(self, proc: Proc) -> bool:
        if proc.pid in self._popen:
            return self._popen[proc.pid].poll() is None
        return _start_time(proc.pid) == proc.started

    def _signal(self, proc: Proc, signum: int) -> None:
        # The leader's pid is its group's id. While any member lives no new process can get
        # that pid, so a living group is ours; a living leader must also match its start time.
        leader_is_ours = self._alive(proc)
        if not leader_is_ours and _start_time(proc.pid) is not None:
            return  # the pid was recycled by someone else's process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    def _reap(self, proc: Proc, deadline: float) -> None:
        """Wait for the group to go, SIGKILL it at the deadline."""
        while time.monotonic() < deadline:
            popen = self._popen.get(proc.pid)
            if popen is not None:
                popen.poll()
            if (popen is None or popen.returncode is not None) and not _group_alive(proc.pid):
                break
            time.sleep(0.05)
        else:
            self._signal(proc, signal.SIGKILL)
        popen = self._popen.pop(proc.pid, None)
        if popen is not None:
            popen.wait(timeout=10)

    def _wait_healthy(self, name: str, url: str, deadline: float) -> None:
        proc = self.procs[name]
        while time.monotonic() < deadline:
            if not self._alive(proc):
                log = (self.run_dir / "logs" / f"{name}.log").read_text(errors="replace")
                raise ClusterError(f"{name} exited; its log ends:\n{log[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise ClusterError(f"{name} did not answer {url}/healthz in time")

    # --- nginx -----------------------------------------------------------------------------

    def _nginx_args(self) -> list[str]:
        conf, errors = self.run_dir / "nginx.conf", self.run_dir / "error.log"
        return ["-p", f"{self.run_dir}/", "-c", str(conf), "-e", str(errors)]

    def _write_nginx_conf(self) -> None:
        servers = [
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s"
            + (" down;" if i in self.down else ";")
            for i, port in enumerate(self.gateway_ports)
        ]
        user = ""
        if os.geteuid() == 0:  # else nginx's workers would switch to nobody
            user = (
                f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
            )
        text = TEMPLATE.read_text()
        for name, value in {
            "@USER@": user,
            "@RUN_DIR@": str(self.run_dir),
            "@SERVERS@": "\n".join(servers),
            "@LISTEN@": f"127.0.0.1:{self.port}",
            "@TRIES@": str(max(self.gateways, 2)),
        }.items():
            text = text.replace(name, value)
        (self.run_dir / "nginx.conf").write_text(text)

    def _set_down(self, down: set[int]) -> None:
        """Rewrite the upstream list and reload nginx; wait until its new workers run."""
        self.down = down
        self._write_nginx_conf()
        self._run([nginx_binary(), "-t", "-q", *self._nginx_args()])
        master = self.procs["nginx"].pid
        before = _children(master)
        os.kill(master, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (_children(master) - before):
            time.sleep(0.02)

    # --- state -----------------------------------------------------------------------------

    def _recorded(self) -> dict[str, Proc]:
        path = self.run_dir / "state.json"
        if not path.exists():
            return {}
        return {name: Proc(**p) for name, p in json.loads(path.read_text())["procs"].items()}

    def _save(self) -> None:
        state = {
            "port": self.port,
            "workers": self.workers,
            "gateway_ports": self.gateway_ports,
            "env": {k: self.env[k] for k in self._kept_env},
            "procs": {name: asdict(proc) for name, proc in self.procs.items()},
        }
        path = self.run_dir / "state.json"
        path.touch(mode=0o600)  # the environment may hold passwords
        path.write_text(json.dumps(state, indent=2))


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.cluster.cluster")
    parser.add_argument("command", choices=["start", "stop", "status", "restart-gateway"])
    parser.add_argument("index", nargs="?", type=int, help="restart-gateway: which one (0-based)")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    args = parser.parse_args(argv)
    state = args.run_dir / "state.json"
    try:
        if args.command == "start":
            cluster = Cluster(
                gateways=args.gateways, workers=args.workers, port=args.port, run_dir=args.run_dir
            ).start()
            print(f"nginx on {cluster.url}; gateways {' '.join(cluster.gateway_urls)}")
            print(f"logs in {cluster.run_dir / 'logs'}; stop with: make cluster-stop")
        elif not state.exists():
            print(f"no cluster recorded in {args.run_dir}")
            return 0 if args.command == "stop" else 1
        elif args.command == "stop":
            Cluster.load(args.run_dir).stop()
            print("stopped")
        elif args.command == "status":
            cluster = Cluster.load(args.run_dir)
            for name, alive in cluster.status().items():
                print(f"{name:10} pid {cluster.procs[name].pid:<8} {'up' if alive else 'DOWN'}")
            print(f"nginx on {cluster.url}; gateways {' '.join(cluster.gateway_urls)}")
        else:
            if args.index is None:
                parser.error("restart-gateway needs the gateway's index")
            Cluster.load(args.run_dir).restart_gateway(args.index)
            print(f"gateway {args.index} restarted")
    except ClusterError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
