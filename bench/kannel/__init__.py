"""Kannel 1.4.5 (Debian's ``kannel``: bearerbox + smsbox) as ``bench/e2e.py``'s peer engine.

``bench/kannel/install`` installs it; ``kannel.conf`` beside this file is the configuration, a
template filled in here with ports, paths and the receiver's URL. Kannel's HTTP SMSC listens on
every interface (it has no interface setting, unlike bearerbox's admin and smsbox ports), so
bearerbox and smsbox run in a private network namespace made for the run (``Netns``), with what
they talk to: the wrk load and a receiver of their own, all on the namespace's loopback as
smsroute's are on the host's.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from string import Template

from bench.ingress import Server, cpu_seconds, free_port

HERE = Path(__file__).resolve().parent
NETNS_PREFIX = "smsroute-kannel-"
LINKS = ipaddress.ip_network("198.18.0.0/15")
"""RFC 2544's range for benchmark networks: a /30 of it per run, picked by process id."""
READY_TIMEOUT = 20.0


def kannel_missing() -> bool:
    """True, after saying how to install it, when bearerbox or smsbox cannot be found."""
    if _binary("bearerbox") and _binary("smsbox"):
        return False
    print("bench: Kannel's bearerbox/smsbox not found; install them with bench/kannel/install", file=sys.stderr)
    return True


def _binary(name: str) -> str | None:
    """Debian puts Kannel's boxes in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def _ip(*args: str) -> None:
    """``ip`` with ``args``; a failure raises with what ``ip`` said."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"ip {' '.join(args)} failed: {done.stderr.strip()}"
            + (" (the Kannel peer needs root for its network namespace)" if os.geteuid() else "")
        )


class Netns:
    """A private network namespace joined to this one by a veth pair (a /30 of 198.18.0.0/15).

    The link only carries the benchmark's own traffic to the namespace's receiver (start-up checks,
    the delivery counts). Named after this process, and removed by ``remove``; one left behind by a
    benchmark that was SIGKILLed is removed by the next one.
    """

    def __init__(self) -> None:
        pid = os.getpid()
        self.name = f"{NETNS_PREFIX}{pid}"
        self.veth = f"smsk{pid}"
        first = pid % (LINKS.num_addresses // 4) * 4
        self.host_ip, self.ip = str(LINKS[first + 1]), str(LINKS[first + 2])
        remove_stale()
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", f"{self.veth}h", "type", "veth", "peer", "name", f"{self.veth}n", "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", f"{self.veth}h")
            _ip("link", "set", f"{self.veth}h", "up")
            _ip("-n", self.name, "addr", "add", f"{self.ip}/30", "dev", f"{self.veth}n")
            _ip("-n", self.name, "link", "set", f"{self.veth}n", "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise

    @property
    def exec(self) -> list[str]:
        """The prefix that runs a command inside the namespace (``ip`` execs it: same process id)."""
        return ["ip", "netns", "exec", self.name]

    def remove(self) -> None:
        """Delete the namespace; its end of the veth pair goes with it, and so does ours."""
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)


def remove_stale() -> None:
    """Delete the namespaces of benchmarks whose process is gone."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for name in (line.split()[0] for line in listed.splitlines() if line.startswith(NETNS_PREFIX)):
        pid = name.removeprefix(NETNS_PREFIX)
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


class Kannel:
    """bearerbox and smsbox on ``kannel.conf`` inside ``netns``, and the receiver their two sms-services post to.

    wrk reaches the HTTP SMSC from inside the namespace (``wrk_prefix``), with the form in the URL's
    query (Kannel 1.4.5 does not read form bodies) and any 2xx counted as accepted (``wrk_args``).
    """

    wrk_args = ["query", "2xx"]

    def __init__(self, name: str, netns: Netns, workdir: Path) -> None:
        self.name = name
        self.netns = netns
        self.workdir = workdir
        self.wrk_prefix = netns.exec
        self.ports = {key: free_port() for key in ("receiver", "admin", "smsbox", "smsc")}
        self.url = f"http://127.0.0.1:{self.ports['smsc']}"
        """The HTTP SMSC as wrk sees it, from inside the namespace."""
        self.config = workdir / name / "kannel.conf"
        self.receiver: Server | None = None
        self.bearerbox: Server | None = None
        self.smsbox: Server | None = None

    def start(self) -> None:
        """The receiver, then bearerbox, then smsbox, each once the one before listens; until smsbox is
        connected to bearerbox."""
        self.config.parent.mkdir()
        self.config.write_text(
            Template((HERE / "kannel.conf").read_text()).substitute(
                admin_port=self.ports["admin"],
                admin_password=secrets.token_hex(8),
                smsbox_port=self.ports["smsbox"],
                smsc_port=self.ports["smsc"],
                workdir=self.config.parent,
                receiver=f"http://127.0.0.1:{self.ports['receiver']}",
            )
        )
        inside = self.netns.exec
        self.receiver = Server(
            f"{self.name}-receiver",
            [
                *inside,
                sys.executable,
                "-m",
                "bench.receiver",
                "--host",
                "127.0.0.1",
                "--host",
                self.netns.ip,
                "--port",
                str(self.ports["receiver"]),
            ],
            self.ports["receiver"],
            self.workdir,
            host=self.netns.ip,
        )
        self.receiver.wait_listening()
        # -v 2: warnings and worse on the console; the default, debug, writes a dozen lines a message
        self.bearerbox = Server(
            f"{self.name}-bearerbox",
            [*inside, _binary("bearerbox") or "bearerbox", "-v", "2", str(self.config)],
            self.ports["smsc"],
            self.workdir,
            host=self.netns.ip,
        )
        self.bearerbox.wait_listening()
        self.smsbox = Server(
            f"{self.name}-smsbox",
            [*inside, _binary("smsbox") or "smsbox", "-v", "2", str(self.config)],
            self.ports["smsbox"],
            self.workdir,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while not _established(self.bearerbox.process.pid, self.ports["smsbox"]):
            for server in self.processes:
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.stderr()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"smsbox not connected to bearerbox after {READY_TIMEOUT:.0f} s")
            time.sleep(0.05)

    @property
    def processes(self) -> list[Server]:
        """What has been started, smsbox first: the order to stop them in."""
        return [server for server in (self.smsbox, self.bearerbox, self.receiver) if server is not None]

    def pids(self) -> dict[str, int]:
        """bearerbox and smsbox, for CPU time per process (the receiver is the benchmark's, not Kannel's)."""
        return {
            server.name.rsplit("-", 1)[1]: server.process.pid
            for server in (self.bearerbox, self.smsbox)
            if server is not None
        }

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids().values())

    def stop(self) -> None:
        for server in self.processes:
            server.stop()


def _established(pid: int, port: int) -> bool:
    """Whether a TCP connection to local ``port`` is established in ``pid``'s network namespace
    (its /proc/<pid>/net/tcp lists that namespace's sockets): smsbox has no port of its own to poll."""
    try:
        rows = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except FileNotFoundError:
        return False
    return any(row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "01" for row in rows)
