"""A small vicinity client in Python: copy it and keep what you need.

It shows the three things a client must get right:

* a channel built with docs/service-config.json (a timeout per RPC, retries of the idempotent
  RPCs on UNAVAILABLE; never of Shake; see connect() for a grpc Python bug it works around);
* errors read from their google.rpc.ErrorInfo reason (in the status details), never from
  the message text, compared with constants generated from the proto's ErrorReason;
* RESOURCE_EXHAUSTED with a google.rpc.RetryInfo (a rate limit) waited out as the server says,
  not retried at once.

Stubs come from the proto (see README.md):

    python -m grpc_tools.protoc -I../../proto --python_out=gen --grpc_python_out=gen \
        ../../proto/vicinity/v1/vicinity.proto
    PYTHONPATH=gen python client.py --target 127.0.0.1:50051 --user alice

Needs grpcio, grpcio-status and googleapis-common-protos (grpcio-tools only to generate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import namedtuple
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

try:
    from vicinity.v1 import vicinity_pb2 as pb
    from vicinity.v1 import vicinity_pb2_grpc as rpc
except ImportError:  # pragma: no cover - a hint for whoever copies this file
    sys.exit("generate the stubs first (see the top of client.py) and put them on PYTHONPATH")

# docs/service-config.json of the repository; pass your own copy with --service-config.
SERVICE_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "service-config.json"
NOTICE_VERSION = "2026-11"


def reason(value: int) -> str:
    """The ErrorInfo reason of an ErrorReason value: its name without the prefix."""
    return pb.ErrorReason.Name(value).removeprefix("ERROR_REASON_")


CONSENT_REQUIRED = reason(pb.ERROR_REASON_CONSENT_REQUIRED)
LOCATION_REQUIRED = reason(pb.ERROR_REASON_LOCATION_REQUIRED)
PAGE_TOKEN_EXPIRED = reason(pb.ERROR_REASON_PAGE_TOKEN_EXPIRED)
RATE_LIMITED = reason(pb.ERROR_REASON_RATE_LIMITED)


def connect(target: str, service_config: Path | str = SERVICE_CONFIG,
            credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A channel whose calls get the service config's retry policies and timeouts.

    grpc Python (C-core) starts a timeout that comes from the service config too early: a
    "2s" one has been seen to fire after 0.2 s (grpc/grpc issues 34547 and 40633). So the
    timeouts are taken out of the channel's copy of the config and given to each call as its
    own deadline instead (a call's explicit timeout= still wins), which C-core gets right."""
    config = json.loads(Path(service_config).read_text())  # fails early if broken
    timeouts = {}
    for entry in config.get("methodConfig", []):
        timeout = entry.pop("timeout", None)
        for name in entry["name"]:
            if timeout is not None and "method" in name:
                timeouts[f"/{name['service']}/{name['method']}"] = float(timeout.rstrip("s"))
    options = [("grpc.service_config", json.dumps(config)), ("grpc.enable_retries", 1)]
    if credentials is not None:
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    return grpc.intercept_channel(channel, _Timeouts(timeouts))


class _CallDetails(
    namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready compression"),
    grpc.ClientCallDetails,
):
    pass


class _Timeouts(grpc.UnaryUnaryClientInterceptor):
    """Gives each call without a timeout of its own the one its method has in the config."""

    def __init__(self, timeouts: dict[str, float]):
        self.timeouts = timeouts

    def intercept_unary_unary(self, continuation, details, request):
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if details.timeout is None and method in self.timeouts:
            details = _CallDetails(details.method, self.timeouts[method], details.metadata,
                                   details.credentials, getattr(details, "wait_for_ready", None),
                                   getattr(details, "compression", None))
        return continuation(details, request)


@dataclass
class VicinityError(Exception):
    """A failed call, as its status details tell it."""

    code: grpc.StatusCode
    reason: str  # the ErrorInfo reason, e.g. "CONSENT_REQUIRED"; "" if the call had none
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # seconds, from RetryInfo
    violations: dict[str, str] = field(default_factory=dict)  # BadRequest: field -> why
    message: str = ""  # for logs only: never branch on it

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason or '(no ErrorInfo)'}: {self.message}"


def vicinity_error(err: grpc.RpcError) -> VicinityError:
    """Reads ErrorInfo, RetryInfo and BadRequest from a failed call's status details."""
    error = VicinityError(code=err.code(), reason="", message=err.details() or "")
    status = rpc_status.from_call(err)  # None when the server sent no details
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            error.reason, error.metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            error.retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            error.violations = {v.field: v.description for v in bad.field_violations}
    return error


def call(method, request, *, attempts: int = 3, longest_wait: float = 30.0, **kwargs):
    """Calls `method`; a RESOURCE_EXHAUSTED that carries a RetryInfo is waited out and tried
    again (at most `attempts` calls); every other failure raises VicinityError. UNAVAILABLE
    is already retried by the channel for the idempotent RPCs (the service config)."""
    for attempt in range(1, attempts + 1):
        try:
            return method(request, **kwargs)
        except grpc.RpcError as err:
            error = vicinity_error(err)
            wait = error.retry_after
            if (error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and wait is not None
                    and attempt < attempts and wait <= longest_wait):
                time.sleep(wait)
                continue
            raise error from None
    raise AssertionError("unreachable")


class Vicinity:
    """The stubs of the four services on one channel, with an API key if the server has keys."""

    def __init__(self, channel: grpc.Channel, api_key: str | None = None):
        self.consent = rpc.ConsentServiceStub(channel)
        self.nearby = rpc.PeopleNearbyStub(channel)
        self.shake = rpc.ShakeStub(channel)
        self.privacy = rpc.PrivacyServiceStub(channel)
        self.metadata = [("authorization", f"Bearer {api_key}")] if api_key else []

    def __call__(self, method, request, **kwargs):
        return call(method, request, metadata=self.metadata, **kwargs)

    def list_nearby(self, user_id: str, page_size: int = 20, **filters):
        """Every user near `user_id`, page after page. An expired page token starts again."""
        token = ""
        while True:
            try:
                page = self(self.nearby.ListNearby, pb.ListNearbyRequest(
                    user_id=user_id, limit=page_size, page_token=token, **filters))
            except VicinityError as e:
                if e.reason == PAGE_TOKEN_EXPIRED and token:
                    token = ""
                    continue
                raise
            yield from page.users
            token = page.next_page_token
            if not token:
                return


def tls(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials from --ca-cert (and a client certificate for mutual TLS), or None."""
    if not args.ca_cert:
        return None
    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(args.ca_cert),
        private_key=read(args.client_key),
        certificate_chain=read(args.client_cert),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--lat", type=float, default=39.9087)
    parser.add_argument("--lng", type=float, default=116.3975)
    parser.add_argument("--api-key")
    parser.add_argument("--ca-cert", help="CA (PEM) that signed an https server's certificate: TLS")
    parser.add_argument("--client-cert", help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--client-key", help="the client certificate's private key (PEM)")
    parser.add_argument("--service-config", default=str(SERVICE_CONFIG))
    parser.add_argument("--keep", action="store_true", help="do not clear the location at the end")
    args = parser.parse_args(argv)
    if bool(args.client_cert) != bool(args.client_key):
        parser.error("--client-cert and --client-key go together")

    with connect(args.target, args.service_config, tls(args)) as channel:
        api = Vicinity(channel, args.api_key)
        try:
            user = args.user
            # Looking before being seen is refused: the reason says what to do.
            try:
                list(api.list_nearby(user))
            except VicinityError as e:
                if e.reason == CONSENT_REQUIRED:
                    print(f"{user}: no consent for {e.metadata.get('feature')}: granting it")
                    api(api.consent.GrantConsent, pb.GrantConsentRequest(
                        user_id=user, feature=pb.FEATURE_PEOPLE_NEARBY,
                        notice_version=NOTICE_VERSION, source="examples/python"))
                elif e.reason != LOCATION_REQUIRED:
                    raise
            updated = api(api.nearby.UpdateLocation, pb.UpdateLocationRequest(
                user_id=user, location=pb.Location(latitude=args.lat, longitude=args.lng)))
            until = datetime.fromtimestamp(updated.visible_until.seconds, timezone.utc)
            print(f"{user}: visible until {until:%H:%M:%S} UTC")
            nearby = list(api.list_nearby(user))
            print(f"{user}: {len(nearby)} nearby")
            for other in nearby:
                print(f"  {other.user_id}: within {other.distance_m} m")
            export = api(api.privacy.ExportMyData, pb.ExportMyDataRequest(user_id=user))
            for stored in export.locations:
                print(f"{user}: stored {pb.Feature.Name(stored.feature)} at "
                      f"{stored.location.latitude:.5f},{stored.location.longitude:.5f} "
                      f"(to {stored.precision_m} m)")
            if not args.keep:
                cleared = api(api.privacy.ClearLocation, pb.ClearLocationRequest(user_id=user))
                print(f"{user}: cleared {cleared.purged_entries} location entries")
        except VicinityError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
