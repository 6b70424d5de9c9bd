"""docs/service-config.json: a timeout for every RPC of the proto, retries only where a second
attempt is harmless (never Shake), and gRPC accepts it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "service-config.json"
DURATION = re.compile(r"^(\d+)(\.\d{1,9})?s$")
# The server's own cap on any call (src/grpc/deadline.rs MAX_CALL_TIME) and the default shake
# window (contract §3): a Shake must be given at least the window.
MAX_CALL_S = 30.0
SHAKE_WINDOW_S = 3.0
# Not safe to repeat: a second Shake is a new shake (it may pair with someone else).
NOT_IDEMPOTENT = {"vicinity.v1.Shake/Shake"}


def seconds(text: str) -> float:
    assert DURATION.match(text), text
    return float(text[:-1])


@pytest.fixture(scope="module")
def config():
    return json.loads(CONFIG.read_text())


@pytest.fixture(scope="module")
def methods(pb):
    """Every RPC of the proto, as "package.Service/Method"."""
    return {f"{s.full_name}/{m.name}"
            for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}


@pytest.fixture(scope="module")
def by_method(config):
    """The methodConfig entry of each method it names (each named once)."""
    entries = {}
    for entry in config["methodConfig"]:
        for name in entry["name"]:
            assert set(name) == {"service", "method"}, f"name every method: {name}"
            key = f"{name['service']}/{name['method']}"
            assert key not in entries, f"{key} named twice"
            entries[key] = entry
    return entries


def test_every_rpc_has_a_timeout_and_every_entry_names_a_real_rpc(methods, by_method):
    assert len(methods) >= 12  # the four services of contract §3
    assert set(by_method) == methods
    for method, entry in by_method.items():
        assert 0 < seconds(entry["timeout"]) <= MAX_CALL_S, method
    assert seconds(by_method["vicinity.v1.Shake/Shake"]["timeout"]) > SHAKE_WINDOW_S + 0.5


def test_only_idempotent_rpcs_retry_and_only_on_unavailable(by_method):
    for method, entry in by_method.items():
        policy = entry.get("retryPolicy")
        if method in NOT_IDEMPOTENT:
            assert policy is None, f"{method} must not be retried"
            assert "hedgingPolicy" not in entry
            continue
        assert policy is not None, f"{method} is idempotent: retry it on UNAVAILABLE"
        assert policy["retryableStatusCodes"] == ["UNAVAILABLE"], method
        assert 2 <= policy["maxAttempts"] <= 5, method  # gRPC caps attempts at 5
        assert 0 < seconds(policy["initialBackoff"]) <= seconds(policy["maxBackoff"])
        assert policy["backoffMultiplier"] >= 1


def test_retries_are_throttled(config):
    throttling = config["retryThrottling"]
    assert 0 < throttling["maxTokens"] <= 1000 and 0 < throttling["tokenRatio"]


def test_grpc_accepts_the_config(server, pb):
    """gRPC parses the config when the channel resolves; a bad one fails every call."""
    from vicinity.v1 import vicinity_pb2_grpc as rpc

    options = [("grpc.service_config", CONFIG.read_text()), ("grpc.enable_retries", 1)]
    with grpc.insecure_channel(server.target, options=options) as channel:
        got = rpc.ConsentServiceStub(channel).GetConsent(pb.GetConsentRequest(user_id="nobody"))
    assert [r.state for r in got.current] == [pb.CONSENT_STATE_UNSPECIFIED] * 2
