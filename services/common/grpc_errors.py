"""The gRPC status each of the project's errors (`core/errors.py`) is reported with."""

import grpc

from core.errors import AvatarError, BadRequest, NotFound, NotReady, Overloaded, Refused, Timeout

_STATUS = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    Refused: grpc.StatusCode.PERMISSION_DENIED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Timeout: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(err: AvatarError) -> grpc.StatusCode:
    """The status of the error's class or of the nearest class it derives from; INTERNAL for the others."""
    return next((_STATUS[kind] for kind in type(err).__mro__ if kind in _STATUS), grpc.StatusCode.INTERNAL)
