"""Reads a failed call's google.rpc.Status details (the `grpc-status-details-bin` trailer) the
way a client must: the reason from ErrorInfo, never from the message text."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

DOMAIN = "vicinity"

# Every ErrorInfo reason the suite has read, for test_every_reason_seen_is_declared.
SEEN_REASONS: set[str] = set()


@dataclass
class Failure:
    code: grpc.StatusCode
    info: error_details_pb2.ErrorInfo
    retry: error_details_pb2.RetryInfo | None = None
    bad_request: error_details_pb2.BadRequest | None = None
    # The type URL of every detail, in order (to catch unexpected ones).
    detail_types: list[str] = field(default_factory=list)

    @property
    def retry_delay_s(self) -> float | None:
        if self.retry is None:
            return None
        return self.retry.retry_delay.seconds + self.retry.retry_delay.nanos / 1e9

    def violations(self) -> dict[str, str]:
        if self.bad_request is None:
            return {}
        return {v.field: v.description for v in self.bad_request.field_violations}


def failure(err: grpc.RpcError) -> Failure:
    """The details of a failed call. Fails the test if the status carries no ErrorInfo."""
    status = rpc_status.from_call(err)
    assert status is not None, f"{err.code()} without grpc-status-details-bin"
    assert status.code == err.code().value[0]
    info = retry = bad = None
    types = []
    for detail in status.details:
        types.append(detail.type_url)
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo,
                     error_details_pb2.BadRequest):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                if kind is error_details_pb2.ErrorInfo:
                    info = message
                elif kind is error_details_pb2.RetryInfo:
                    retry = message
                else:
                    bad = message
    assert info is not None, f"{err.code()} without an ErrorInfo: {types}"
    assert info.domain == DOMAIN, info
    SEEN_REASONS.add(info.reason)
    return Failure(err.code(), info, retry, bad, types)


def expect_failure(call, request, code: grpc.StatusCode, reason: str, **kwargs) -> Failure:
    """Calls and expects a failure with `code` and ErrorInfo `reason` (read from the details)."""
    kwargs.setdefault("timeout", 10)
    with pytest.raises(grpc.RpcError) as raised:
        call(request, **kwargs)
    got = failure(raised.value)
    assert (got.code, got.info.reason) == (code, reason), got
    return got
