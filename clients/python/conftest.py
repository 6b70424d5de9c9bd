"""Fixtures of the Python client tests: stubs generated from proto/ at test time, and a real
`vicinity serve` (open mode, loopback, a free port, the embedded store) started for the session.

scripts/python-test generates the stubs and points VICINITY_PY_GEN at them; run directly, this
file generates them itself into a temporary directory. Nothing generated lands in the tree.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

import grpc
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"

# Every wait below is bounded: the server gets this long to answer its health check.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0

_generated_here: str | None = None


def _generate_stubs() -> str:
    """The directory holding `vicinity/v1/vicinity_pb2{,_grpc}.py`."""
    global _generated_here
    given = os.environ.get("VICINITY_PY_GEN")
    if given:
        return given
    import grpc_tools
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="vicinity-pystubs-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO / "vicinity/v1/vicinity.proto"),
        ]
    )
    if code != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with {code}")
    _generated_here = out
    return out


def pytest_configure(config):
    sys.path.insert(0, _generate_stubs())
    # The example a client team copies lives in examples/python; its test imports it.
    sys.path.insert(0, str(ROOT / "examples" / "python"))


def pytest_unconfigure(config):
    if _generated_here:
        shutil.rmtree(_generated_here, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_check(channel: grpc.Channel, timeout: float) -> bool:
    """grpc.health.v1.Health/Check for the whole server, without a health stub: the empty
    request is zero bytes and SERVING is `status = 1`, encoded as 08 01."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    try:
        return check(b"", timeout=timeout) == b"\x08\x01"
    except grpc.RpcError:
        return False


# The per-user limits are out of reach by default (the tests call far faster than a phone),
# through the environment so that a test's own flag wins; a test that wants a limit back starts
# its own server with the flag (e.g. `--list-rate 2/1m`).
NO_LIMITS = {
    "VICINITY_UPDATE_RATE": "1000000/1s",
    "VICINITY_LIST_RATE": "1000000/1s",
    "VICINITY_SHAKE_RATE": "1000000/1s",
    "VICINITY_KEY_RATE": "1000000/1s",
    "VICINITY_KEY_PENDING_SHAKES": "1000000",
}


class Server:
    """One `vicinity serve` process on a free loopback port; its log goes to a file."""

    def __init__(self, binary: str, flags: list[str], log_dir: Path,
                 credentials: grpc.ChannelCredentials | None = None):
        self.binary = binary
        self.flags = flags
        self.credentials = credentials
        self.log_path = log_dir / f"vicinity-{uuid.uuid4().hex[:8]}.log"
        self.proc: subprocess.Popen | None = None
        self.target = ""

    def log(self, since: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[since:].decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self) -> "Server":
        # The server reads every flag from VICINITY_* too: none from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("VICINITY_")}
        env.update(NO_LIMITS)
        env.setdefault("RUST_LOG", "warn")
        for attempt in range(3):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            port = _free_port()
            self.target = f"127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "serve", "--listen", self.target,
                     "--drain-timeout", "1s", *self.flags],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            if self._wait_ready():
                return self
            exited = self.proc.poll() is not None
            self.stop()
            if not exited or "in use" not in self.log(since=logged):
                break  # only a port taken meanwhile is worth another try
        raise RuntimeError(f"vicinity serve did not become ready; its log:\n{self.log()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        channel = (grpc.secure_channel(self.target, self.credentials) if self.credentials
                   else grpc.insecure_channel(self.target))
        with channel:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False  # exited (the port may have been taken meanwhile)
                if health_check(channel, timeout=1.0):
                    return True
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def vicinity_bin() -> str:
    binary = os.environ.get("VICINITY_BIN") or str(ROOT / "target/debug/vicinity")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no server binary at {binary}: cargo build --bin vicinity, or set VICINITY_BIN")
    return binary


@pytest.fixture(scope="session")
def start_server(vicinity_bin, tmp_path_factory):
    """Starts a server with extra flags; every one started is stopped when the session ends."""
    started: list[Server] = []
    log_dir = tmp_path_factory.mktemp("logs")

    def start(*flags: str, credentials: grpc.ChannelCredentials | None = None) -> Server:
        server = Server(vicinity_bin, list(flags), log_dir, credentials)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server) -> Server:
    return start_server()


@pytest.fixture(scope="session")
def channel(server):
    with grpc.insecure_channel(server.target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield channel


@pytest.fixture(scope="session")
def pb():
    from vicinity.v1 import vicinity_pb2

    return vicinity_pb2


@pytest.fixture(scope="session")
def api(channel):
    """One stub per service."""
    from vicinity.v1 import vicinity_pb2_grpc as rpc

    return types.SimpleNamespace(
        consent=rpc.ConsentServiceStub(channel),
        nearby=rpc.PeopleNearbyStub(channel),
        shake=rpc.ShakeStub(channel),
        privacy=rpc.PrivacyServiceStub(channel),
    )


@pytest.fixture
def user():
    """Makes user ids unique to this test (the server is shared by the session)."""
    tag = uuid.uuid4().hex[:6]
    return lambda name: f"{name}-{tag}"


_places = itertools.count()


@pytest.fixture
def place():
    """A (latitude, longitude) of this test alone: at least 100 km from every other test's, so
    no test lists another's users."""
    n = next(_places)
    return (10.0 + (n // 300), -150.0 + (n % 300))
