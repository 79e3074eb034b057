"""Who may do what (services/gateway/access.py): per-user signed tokens with grants, one shared token, or none on
loopback only; malformed credentials are refused, never a crash; secrets never reach the logs."""

import logging
import time

import jwt
import pytest

from services.gateway.access import Access, Denied, mint
from services.gateway.config import GatewaySettings
from services.llm.config import LlmSettings

pytestmark = pytest.mark.unit

KEY = "a-signing-key-of-at-least-32-bytes-long"


def jwt_access(**settings) -> Access:
    return Access(GatewaySettings(jwt_secret=KEY, **settings))


def test_a_users_token_names_them_and_what_they_may_do():
    access = jwt_access()
    alice = access.check(mint(KEY, "alice", ["converse"], ["default"], 60))
    assert alice.subject == "alice"
    alice.require("converse")
    alice.require_avatar("default")
    with pytest.raises(Denied, match="rest"):
        alice.require("rest")
    with pytest.raises(Denied, match="grace"):
        alice.require_avatar("grace")
    admin = access.check(access.mint("ops", ["admin", "rest"], None, 60))
    admin.require("admin")
    admin.require_avatar("anyone")  # no avatars claim: every avatar


@pytest.mark.parametrize("token, why", [
    ("", "missing"),
    ("not.a.token", "invalid"),
    ("ünïcødé-tökén", "invalid"),
    (jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, "another-key-of-at-least-32-bytes-long!!",
                algorithm="HS256"), "invalid"),
    (jwt.encode({"sub": "eve", "exp": int(time.time()) - 3600}, KEY, algorithm="HS256"), "expired"),
    (jwt.encode({"sub": "eve"}, KEY, algorithm="HS256"), "invalid"),  # no expiry: refused
    (jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, "", algorithm="none"), "invalid"),
    (jwt.encode({"sub": "eve", "exp": int(time.time()) + 60, "grants": "admin"}, KEY, algorithm="HS256"), "grants"),
])
def test_forged_expired_and_malformed_tokens_are_refused(token, why):
    with pytest.raises(Denied, match=why):
        jwt_access().check(token)


@pytest.mark.parametrize("token", ["", "wrong", "ünïcødé", "\ud800", "x" * 10_000])
def test_any_wrong_shared_token_is_refused_and_none_is_an_error(token):
    access = Access(GatewaySettings(auth_token="s3cret-token"))
    with pytest.raises(Denied):
        access.check(token)
    assert access.check("s3cret-token").subject == "shared"


def test_no_authentication_only_on_loopback():
    assert Access(GatewaySettings(host="127.0.0.1")).mode == "none"
    with pytest.raises(ValueError, match="no authentication"):
        Access(GatewaySettings(host="0.0.0.0"))
    with pytest.raises(ValueError, match="no authentication"):
        Access(GatewaySettings(host="0.0.0.0", auth="none"))
    assert Access(GatewaySettings(host="0.0.0.0", auth_token="s3cret-token")).mode == "token"
    assert Access(GatewaySettings(host="0.0.0.0", jwt_secret=KEY)).mode == "jwt"


def test_secret_settings_never_reach_the_logs(caplog, monkeypatch):
    planted = "sk-planted-secret-9f8e7d"
    monkeypatch.setenv("LLM_OPENAI_API_KEY", planted)
    monkeypatch.setenv("GATEWAY_AUTH_TOKEN", planted)
    monkeypatch.setenv("GATEWAY_JWT_SECRET", planted)
    with caplog.at_level(logging.INFO):
        LlmSettings().log_non_defaults()
        logging.getLogger("test").info("gateway settings: %s", GatewaySettings().model_dump())
        logging.getLogger("test").info("gateway settings: %r", GatewaySettings())
    assert "openai_api_key" in caplog.text and planted not in caplog.text
