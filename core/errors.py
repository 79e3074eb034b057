"""The project's error vocabulary, in plain Python. Services raise these; the gRPC layer
(`services/common/grpc_errors.py`) says which status each one is."""


class AvatarError(Exception):
    """Base of every error a service reports to its caller. The message is shown to a person."""


class BadRequest(AvatarError):
    """The caller sent something that cannot be used as it is."""


class NotFound(AvatarError):
    """What the caller named (an avatar, a voice, a model) does not exist here."""


class Refused(AvatarError):
    """What the caller asked for is not allowed: an avatar withdrawn, or used beyond its person's consent."""


class NotReady(AvatarError):
    """The service is starting or its model is loading: the same call may work soon."""


class Overloaded(AvatarError):
    """The service is at its limit: the same call may work soon, or on another replica."""


class Timeout(AvatarError):
    """The work took longer than it was given."""
