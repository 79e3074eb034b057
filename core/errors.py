"""The project's error vocabulary. Services raise these; `error_interceptor` maps them to gRPC codes."""

import grpc


class AvatarError(Exception):
    """Base of every error a service reports to its caller. The message is shown to a person."""

    code = grpc.StatusCode.INTERNAL
    retryable = False


class BadRequest(AvatarError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(AvatarError):
    code = grpc.StatusCode.NOT_FOUND


class NotReady(AvatarError):
    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class Overloaded(AvatarError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retryable = True


class Timeout(AvatarError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retryable = True
