"""Who may do what: every WebSocket hello and REST call carries a credential, and it names a subject and grants.

Three ways, chosen by GATEWAY_AUTH (`auto`: jwt where a key is configured, else token where one is, else none):
- jwt: short-lived signed access tokens, one per user. HS256 with the gateway's key (`GATEWAY_JWT_SECRET`; mint
  them with `python -m services.gateway.tokens` or `POST /admin/tokens`), or RS256 from an identity provider (its
  public key, or its JWKS address). Claims: `sub` and `exp` required; `grants` (default: converse) and `avatars`
  (default: every avatar).
- token: one shared secret (`GATEWAY_AUTH_TOKEN`) that opens everything, as subject `shared`.
- none: no credential asked. Only a gateway that listens on this machine alone may run so.

A session belongs to the subject that opened it (`conversation.py` refuses anyone else's resume).
"""

import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import jwt

from services.gateway.config import GatewaySettings

log = logging.getLogger(__name__)

Grant = Literal["converse", "rest", "make_avatars", "admin"]
GRANTS: tuple[Grant, ...] = ("converse", "rest", "make_avatars", "admin")
_LEEWAY_S = 30  # clocks of the minting and the checking machine may differ this much


class Denied(Exception):
    """The credential is missing, malformed, expired or not good for what was asked."""


@dataclass(frozen=True)
class Principal:
    subject: str
    grants: frozenset[str]
    avatars: frozenset[str] | None = None  # None: every avatar

    def require(self, grant: Grant) -> None:
        if grant not in self.grants:
            raise Denied(f"this token does not grant {grant!r} (it grants {sorted(self.grants) or 'nothing'})")

    def require_avatar(self, avatar_id: str) -> None:
        if self.avatars is not None and avatar_id not in self.avatars:
            raise Denied(f"this token does not grant the avatar {avatar_id!r}")


EVERYTHING = frozenset(GRANTS)
ANONYMOUS = Principal("anonymous", EVERYTHING)  # who everyone is where authentication is off
SHARED = Principal("shared", EVERYTHING)  # who holds the one shared token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mode(settings: GatewaySettings) -> Literal["none", "token", "jwt"]:
    if settings.auth != "auto":
        return settings.auth
    if settings.jwt_secret.get_secret_value() or settings.jwt_public_key or settings.jwt_jwks_url:
        return "jwt"
    return "token" if settings.auth_token.get_secret_value() else "none"


class Access:
    def __init__(self, settings: GatewaySettings):
        self.mode = mode(settings)
        self._settings = settings
        self._token = settings.auth_token.get_secret_value().encode()
        self._secret = settings.jwt_secret.get_secret_value()
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        if self.mode == "none" and not is_loopback(settings.host):
            raise ValueError(f"the gateway listens on {settings.host} with no authentication: set GATEWAY_JWT_SECRET "
                             "(per-user tokens) or GATEWAY_AUTH_TOKEN (one shared token); GATEWAY_AUTH=none is "
                             "only allowed on a loopback address")
        if self.mode == "token" and not self._token:
            raise ValueError("GATEWAY_AUTH=token needs GATEWAY_AUTH_TOKEN")
        if self.mode == "jwt" and not (self._secret or settings.jwt_public_key or self._jwks):
            raise ValueError("GATEWAY_AUTH=jwt needs GATEWAY_JWT_SECRET, GATEWAY_JWT_PUBLIC_KEY or GATEWAY_JWT_JWKS_URL")
        if self.mode == "none":
            log.warning("AUTHENTICATION IS OFF: anyone who reaches %s:%d may converse, call the REST API and make "
                        "avatars (allowed because it listens on loopback only)", settings.host, settings.port)

    def check(self, credential: str) -> Principal:
        """The principal a credential stands for; raises Denied."""
        if self.mode == "none":
            return ANONYMOUS
        if not credential:
            raise Denied("missing token")
        if self.mode == "token":
            # Compared as bytes: any text a client sends is a wrong token, never an error.
            if not secrets.compare_digest(credential.encode("utf-8", "surrogatepass"), self._token):
                raise Denied("wrong token")
            return SHARED
        return self._check_jwt(credential)

    def _check_jwt(self, credential: str) -> Principal:
        settings = self._settings
        options = {"require": ["exp", "sub"]}
        try:
            if self._secret:
                key, algorithms = self._secret, ["HS256"]
            elif settings.jwt_public_key:
                key, algorithms = settings.jwt_public_key, ["RS256", "ES256"]
            else:
                key, algorithms = self._jwks.get_signing_key_from_jwt(credential).key, ["RS256", "ES256"]
            claims = jwt.decode(credential, key, algorithms=algorithms, options=options, leeway=_LEEWAY_S,
                                audience=settings.jwt_audience or None, issuer=settings.jwt_issuer or None)
        except jwt.ExpiredSignatureError:
            raise Denied("the token has expired") from None
        except (jwt.PyJWTError, ValueError, UnicodeError) as err:
            raise Denied(f"invalid token ({type(err).__name__})") from None
        grants = claims.get("grants", ["converse"])
        avatars = claims.get("avatars")
        if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
            raise Denied("invalid token (grants must be a list of names)")
        if avatars is not None and (not isinstance(avatars, list) or not all(isinstance(a, str) for a in avatars)):
            raise Denied("invalid token (avatars must be a list of ids)")
        return Principal(str(claims["sub"]), frozenset(grants) & EVERYTHING,
                         frozenset(avatars) if avatars is not None else None)

    def mint(self, subject: str, grants: list[str], avatars: list[str] | None, ttl_s: int) -> str:
        """A token signed with the gateway's own key (HS256)."""
        if not self._secret:
            raise ValueError("minting needs GATEWAY_JWT_SECRET (the gateway's own signing key)")
        return mint(self._secret, subject, grants, avatars, ttl_s, self._settings.jwt_audience,
                    self._settings.jwt_issuer)


def mint(secret: str, subject: str, grants: list[str], avatars: list[str] | None, ttl_s: int, audience: str = "",
         issuer: str = "") -> str:
    unknown = set(grants) - set(GRANTS)
    if unknown:
        raise ValueError(f"unknown grants {sorted(unknown)}; known: {list(GRANTS)}")
    now = int(time.time())
    claims: dict = {"sub": subject, "iat": now, "exp": now + ttl_s, "grants": list(grants)}
    if avatars is not None:
        claims["avatars"] = list(avatars)
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
