"""REST work a client may cost: a rate per client with 429 and Retry-After, and none of the places that
conversations need while the gateway is full."""

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.rest_limits import RateLimiter
from tests.manual_clock import ManualClock

pytestmark = pytest.mark.unit


def test_a_client_gets_its_burst_then_its_rate_and_others_are_not_affected():
    clock = ManualClock()
    limiter = RateLimiter(per_min=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0
    clock.now += 1.0
    assert limiter.take("a") == 0 and limiter.take("a") > 0


@pytest.fixture
def api(redis_url):
    settings = GatewaySettings(redis_url=redis_url, rest_burst=2, rest_rate_per_min=6, max_sessions=1)
    with TestClient(create_app(settings)) as client:
        yield client


def test_past_its_rate_a_client_gets_429_with_retry_after(api):
    speech = {"input": "Hello.", "model": "no-such-model"}
    assert [api.post("/v1/audio/speech", json=speech).status_code for _ in range(2)] == [404, 404]
    limited = api.post("/v1/audio/speech", json=speech)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert api.get("/v1/avatars/default").status_code == 200  # reading a status costs nothing: not limited


def test_rest_work_waits_its_turn_behind_conversations_on_a_full_gateway(api):
    admission = api.app.state.admission
    assert admission.admit()  # a conversation holds the one place
    busy = api.post("/v1/audio/speech", json={"input": "Hello."})
    assert busy.status_code == 429 and "busy" in busy.json()["error"]["message"]
    admission.release()
    assert admission.admitted == 0
