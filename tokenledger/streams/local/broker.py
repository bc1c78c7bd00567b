"""A real Apache Kafka broker on 127.0.0.1 in KRaft mode, from Maven Central jars.

`tokenledger kafka start|stop|status` and the test suite use this. The jars are resolved by
Maven into the cache folder once; storage is formatted once; start is idempotent and waits
until a metadata request succeeds; stop terminates the broker it started (SIGTERM, then
SIGKILL after a bound).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess  # noqa: S404 - runs java and mvn, fixed argument lists
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenledger.streams.admin.topics import metadata_ok
from tokenledger.streams.errors import ServiceUnavailableError, UserError

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.2"
"""The Apache Kafka release the local broker runs: the one place it is pinned."""
SLF4J_VERSION = "1.7.36"
MIN_JAVA = 17

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tokenledger.local</groupId>
  <artifactId>local-kafka</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LISTENERS = """# Written by tokenledger on every start; edit tokenledger/streams/local/broker.py instead.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""

_STORAGE = """log.dirs={log_dirs}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
"""

_LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.controller=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    bootstrap: str


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, never starting with '-' (the
    storage tool would read it as an option; Kafka's own Uuid.randomUuid() skips those)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports on 127.0.0.1 that were free a moment ago (all held open while
    choosing, so none is handed out twice), for brokers of tests and benchmarks."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """Is ``pid`` a live process? Our own child is asked with waitpid, which reaps it once
    it has exited (a JVM's first thread shows as a zombie while the others still run);
    another process is alive unless /proc says it is gone or a zombie."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != pid
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def java_major(java: str) -> int:
    out = subprocess.run(  # noqa: S603
        [java, "-version"], capture_output=True, text=True, check=False, timeout=30
    )
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        raise UserError(f"cannot tell the version of {java}; install Java {MIN_JAVA}")
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


class LocalKafka:
    """One broker+controller, data and logs under ``data_dir``, jars under ``cache_dir``."""

    def __init__(
        self,
        data_dir: Path,
        cache_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        version: str = KAFKA_VERSION,
        heap: str = "768m",
    ) -> None:
        self.data_dir = data_dir
        self.cache_dir = cache_dir
        self.port = port
        self.controller_port = controller_port
        self.version = version
        self.heap = heap
        self.bootstrap = f"127.0.0.1:{port}"
        self.kafka_home = cache_dir / f"kafka-{version}"
        self.libs = self.kafka_home / "libs"
        self.log_file = data_dir / "logs" / "server.log"
        self.pid_file = data_dir / "kafka.pid"
        self.properties = data_dir / "server.properties"
        self._child: subprocess.Popen[bytes] | None = None
        """The broker this object started: a handle dropped while it runs warns."""

    # -- installation -------------------------------------------------------------------

    def java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise UserError(
                f"java not found on PATH: the local Kafka broker needs Java {MIN_JAVA} "
                "(Debian: apt-get install openjdk-17-jre-headless)"
            )
        major = java_major(java)
        if major < MIN_JAVA:
            raise UserError(f"{java} is Java {major}; the local Kafka broker needs {MIN_JAVA}+")
        return java

    def installed(self) -> bool:
        return (self.libs / ".complete").exists()

    def fetch(self, progress: Callable[[str], None] = log.info) -> Path:
        """Resolve the Kafka jars with Maven into the cache folder (once)."""
        if self.installed():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise UserError(
                "mvn not found on PATH: Maven resolves the Kafka jars on first use "
                "(Debian: apt-get install maven)"
            )
        progress(f"resolving Apache Kafka {self.version} with Maven (first run only)")
        self.kafka_home.mkdir(parents=True, exist_ok=True)
        pom = self.kafka_home / "pom.xml"
        pom.write_text(_POM.format(kafka=self.version, slf4j=SLF4J_VERSION))
        staging = self.kafka_home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        copy = ("dependency:copy-dependencies", "-DincludeScope=runtime")
        done = subprocess.run(  # noqa: S603
            [mvn, "-q", "-B", "-f", str(pom), *copy, f"-DoutputDirectory={staging}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise UserError(f"Maven could not resolve Kafka {self.version}: {tail}")
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        (self.libs / ".complete").write_text(self.version + "\n")
        progress(f"Kafka {self.version} jars in {self.libs}")
        return self.libs

    # -- lifecycle ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.properties).encode() in cmdline else None

    def status(self) -> Status:
        pid = self._pid()
        return Status(running=pid is not None, pid=pid, bootstrap=self.bootstrap)

    def server_properties(self) -> str:
        """The broker's configuration: its listeners, then storage, topic and group settings
        (a subclass may replace the listeners, e.g. with SASL ones and an authorizer)."""
        listeners = _LISTENERS.format(port=self.port, controller_port=self.controller_port)
        return listeners + self.storage_properties()

    def storage_properties(self) -> str:
        return _STORAGE.format(log_dirs=self.data_dir / "data")

    def format_args(self) -> list[str]:
        """More arguments for `kafka-storage format` (e.g. SCRAM credentials to bootstrap)."""
        return []

    def answers(self, timeout: float) -> bool:
        """Does the broker answer a metadata request (with the clients' settings)?"""
        return metadata_ok(self.bootstrap, timeout=timeout)

    def _write_config(self) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.properties.write_text(self.server_properties())
        (self.data_dir / "log4j.properties").write_text(_LOG4J.format(log_file=self.log_file))

    def _java_cmd(self, java: str, main: str, *args: str) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _format_storage(self, java: str) -> None:
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        cluster_file = self.data_dir / "cluster_id"
        if not cluster_file.exists():
            cluster_file.write_text(new_cluster_id() + "\n")
        cmd = self._java_cmd(
            java,
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            cluster_file.read_text().strip(),
            "-c",
            str(self.properties),
            *self.format_args(),
        )
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603
        if done.returncode != 0:
            raise ServiceUnavailableError(
                f"formatting Kafka storage failed: {(done.stderr or done.stdout).strip()[-300:]}"
            )

    def start(self, timeout: float = 120.0, progress: Callable[[str], None] = log.info) -> bool:
        """Start the broker unless it runs; True when this call started it."""
        with self._locked():
            if self.status().running:
                return False
            java = self.java()
            self.fetch(progress)
            for port in (self.port, self.controller_port):
                if _port_open(port):
                    raise UserError(
                        f"port {port} on 127.0.0.1 is taken by another process; stop it or "
                        "set TOKENLEDGER_KAFKA_PORT / TOKENLEDGER_KAFKA_CONTROLLER_PORT"
                    )
            self._write_config()
            self._format_storage(java)
            out = open(self.data_dir / "logs" / "kafka.out", "ab")  # noqa: SIM115
            proc = self._child = subprocess.Popen(  # noqa: S603
                self._java_cmd(java, "kafka.Kafka", str(self.properties)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out.close()
            self.pid_file.write_text(f"{proc.pid}\n")
            progress(f"Kafka {self.version} starting on {self.bootstrap} (pid {proc.pid})")
            deadline = time.monotonic() + timeout
            while not self.answers(timeout=1.0):
                if proc.poll() is not None:
                    self.pid_file.unlink(missing_ok=True)
                    raise ServiceUnavailableError(
                        f"Kafka exited with code {proc.returncode} during start-up; "
                        f"see {self.log_file}: {self._log_tail()}"
                    )
                if time.monotonic() > deadline:
                    self._terminate(proc.pid, grace=10.0)
                    raise ServiceUnavailableError(
                        f"Kafka did not answer a metadata request within {timeout:.0f}s; "
                        f"see {self.log_file}"
                    )
                time.sleep(0.2)
            return True

    def stop(self, grace: float = 30.0) -> bool:
        """Stop the broker; False when it was not running."""
        with self._locked():
            pid = self._pid()
            if pid is not None:
                self._terminate(pid, grace)
            elif self._child is not None:
                self._child.poll()  # it had exited, reaped by _pid(): the handle learns so
            self.pid_file.unlink(missing_ok=True)
            return pid is not None

    def _terminate(self, pid: int, grace: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + grace
            time.sleep(0.1)
        if self._child is not None:
            self._child.poll()  # reaped by _alive: the handle learns so, and drops quietly

    def _log_tail(self) -> str:
        for path in (self.log_file, self.data_dir / "logs" / "kafka.out"):
            with contextlib.suppress(OSError):
                lines = [
                    x for x in path.read_text().splitlines() if "ERROR" in x or "Exception" in x
                ]
                if lines:
                    return lines[-1][-300:]
        return "no error logged"
