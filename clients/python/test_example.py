"""examples/python/client.py, run against the test server so that it cannot rot."""

from __future__ import annotations

import json
import time

import grpc
import pytest

import client  # examples/python (conftest puts it on the path)


def test_main_walks_through_consent_update_list_export_clear(server, user, place, capsys):
    carol, dave = user("carol"), user("dave")
    lat, lng = place
    # dave is there first, and stays.
    assert client.main(["--target", server.target, "--user", dave, "--lat", str(lat),
                        "--lng", str(lng), "--keep"]) == 0
    assert client.main(["--target", server.target, "--user", carol, "--lat", str(lat + 0.001),
                        "--lng", str(lng)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"{carol}: no consent for FEATURE_PEOPLE_NEARBY: granting it" in out
    assert f"{carol}: 1 nearby" in out
    assert any(line.startswith(f"  {dave}: within ") for line in out), out
    assert any(line.startswith(f"{carol}: stored FEATURE_PEOPLE_NEARBY at ") for line in out)
    assert f"{carol}: cleared 1 location entries" in out
    # Run again: consent is kept, so only the location comes back.
    assert client.main(["--target", server.target, "--user", carol, "--lat", str(lat + 0.001),
                        "--lng", str(lng)]) == 0
    out = capsys.readouterr().out
    assert "granting" not in out and f"{carol}: cleared 1 location entries" in out


def test_errors_are_read_from_their_details(server, user):
    with client.connect(server.target) as channel:
        api = client.Vicinity(channel)
        with pytest.raises(client.VicinityError) as raised:
            api(api.nearby.ListNearby, client.pb.ListNearbyRequest(user_id=user("nobody")))
        error = raised.value
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == client.CONSENT_REQUIRED == "CONSENT_REQUIRED"
        assert error.metadata == {"feature": "FEATURE_PEOPLE_NEARBY"}
        assert error.retry_after is None
        with pytest.raises(client.VicinityError) as raised:
            api(api.nearby.UpdateLocation, client.pb.UpdateLocationRequest(user_id=user("x")))
        assert raised.value.reason == "INVALID_ARGUMENT"
        assert raised.value.violations == {"location": "is required"}


def test_a_rate_limit_is_waited_out_as_retry_info_says(start_server, user, place):
    # One list, then one a second.
    server = start_server("--list-rate", "1/1s")
    pb = client.pb
    with client.connect(server.target) as channel:
        api = client.Vicinity(channel)
        alice = user("alice")
        api(api.consent.GrantConsent, pb.GrantConsentRequest(
            user_id=alice, feature=pb.FEATURE_PEOPLE_NEARBY, notice_version="2026-11"))
        api(api.nearby.UpdateLocation, pb.UpdateLocationRequest(
            user_id=alice, location=pb.Location(latitude=place[0], longitude=place[1])))
        request = pb.ListNearbyRequest(user_id=alice)
        api(api.nearby.ListNearby, request)
        # At once again: refused with a wait, which a single attempt reports...
        with pytest.raises(client.VicinityError) as raised:
            api(api.nearby.ListNearby, request, attempts=1)
        error = raised.value
        assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                              client.RATE_LIMITED)
        assert error.metadata == {"limit": "lists"}
        assert 0 < error.retry_after <= 1.5
        # ...and call() honours.
        start = time.monotonic()
        api(api.nearby.ListNearby, request)
        assert time.monotonic() - start >= 0.3


def test_the_channel_takes_its_timeouts_from_the_service_config(server, user, place, tmp_path):
    """A lone Shake waits for a partner up to the call's deadline, so with a config whose Shake
    timeout is 1 s it answers no_match well before the 3 s shake window: the deadline came
    from the service config."""
    config = json.loads(client.SERVICE_CONFIG.read_text())
    for entry in config["methodConfig"]:
        if {"service": "vicinity.v1.Shake", "method": "Shake"} in entry["name"]:
            entry["timeout"] = "1s"
    path = tmp_path / "service-config.json"
    path.write_text(json.dumps(config))
    pb = client.pb
    with client.connect(server.target, path) as channel:
        api = client.Vicinity(channel)
        alice = user("alice")
        api(api.consent.GrantConsent, pb.GrantConsentRequest(
            user_id=alice, feature=pb.FEATURE_SHAKE, notice_version="2026-11"))
        start = time.monotonic()
        answer = api(api.shake.Shake, pb.ShakeRequest(
            user_id=alice, location=pb.Location(latitude=place[0], longitude=place[1])))
        took = time.monotonic() - start
    assert answer.WhichOneof("result") == "no_match"
    assert took < 2.0, took


def test_the_channel_retries_idempotent_calls_on_unavailable_but_never_a_shake():
    """Against a stand-in server whose every call fails UNAVAILABLE twice before it answers:
    GetConsent gets through on its third attempt, Shake fails on its first."""
    from concurrent.futures import ThreadPoolExecutor

    pb = client.pb
    attempts = {"GetConsent": 0, "Shake": 0}

    def flaky(name, response):
        def handle(request, context):
            attempts[name] += 1
            if attempts[name] <= 2:
                context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
            return response
        return handle

    def handler(name, request_type, response):
        return grpc.unary_unary_rpc_method_handler(
            flaky(name, response), request_deserializer=request_type.FromString,
            response_serializer=type(response).SerializeToString)

    stand_in = grpc.server(ThreadPoolExecutor(2))
    stand_in.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("vicinity.v1.ConsentService", {
            "GetConsent": handler("GetConsent", pb.GetConsentRequest,
                                  pb.GetConsentResponse())}),
        grpc.method_handlers_generic_handler("vicinity.v1.Shake", {
            "Shake": handler("Shake", pb.ShakeRequest,
                             pb.ShakeResponse(no_match=pb.NoMatch()))}),
    ])
    port = stand_in.add_insecure_port("127.0.0.1:0")
    stand_in.start()
    try:
        with client.connect(f"127.0.0.1:{port}") as channel:
            api = client.Vicinity(channel)
            api(api.consent.GetConsent, pb.GetConsentRequest(user_id="alice"))
            assert attempts["GetConsent"] == 3
            with pytest.raises(client.VicinityError) as raised:
                api(api.shake.Shake, pb.ShakeRequest(user_id="alice"))
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
            assert raised.value.reason == ""  # the stand-in sends no ErrorInfo
            assert attempts["Shake"] == 1
    finally:
        stand_in.stop(grace=None)


def test_main_sends_the_api_key(start_server, user, place, tmp_path, capsys):
    keys = tmp_path / "keys"
    keys.write_text("backend app app-key-0123456789abcdef\n")
    server = start_server("--api-keys", str(keys))
    args = ["--target", server.target, "--user", user("erin"), "--lat", str(place[0]),
            "--lng", str(place[1])]
    assert client.main(args) == 1
    assert "UNAUTHENTICATED API_KEY_MISSING" in capsys.readouterr().err
    assert client.main(args + ["--api-key", "app-key-0123456789abcdef"]) == 0


def test_main_speaks_tls_with_a_ca_file(start_server, user, place, tmp_path, capsys):
    """The example reaches a TLS server with --ca-cert (a certificate made
    here by openssl for 127.0.0.1, serving as its own CA)."""
    import subprocess

    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=vicinity",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key),
                          credentials=credentials)
    args = ["--target", server.target, "--user", user("fay"), "--lat", str(place[0]),
            "--lng", str(place[1])]
    assert client.main(args + ["--ca-cert", str(cert)]) == 0
    assert "cleared 1 location entries" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        client.main(args + ["--ca-cert", str(cert), "--client-cert", str(cert)])

