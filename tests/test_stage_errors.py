"""What a failed stage call means to the gateway (grpc_stages.stage_failed): a stream its connection cut may be
opened again; a stage that failed may not."""

import grpc
import pytest

from services.gateway.grpc_stages import stage_failed
from services.gateway.protocol import ErrorCode

pytestmark = pytest.mark.unit


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize("code, details, retry", [
    (grpc.StatusCode.UNAVAILABLE, "Socket closed", True),
    (grpc.StatusCode.INTERNAL, "Internal error from Core", True),  # a connection ageing out under an open stream
    (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2", True),
    (grpc.StatusCode.INTERNAL, "the model failed", False),
    (grpc.StatusCode.UNKNOWN, "Exception calling application", False),
])
def test_a_stream_cut_with_its_connection_may_be_reopened_a_failed_stage_may_not(code, details, retry):
    failed = stage_failed("speech recognition", _error(code, details))
    assert (failed.code == ErrorCode.STAGE_UNAVAILABLE) is retry
