import pytest

from services.runner.redis_server import EmbeddedRedis, redis_answers
from tests.stack import Stack


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis: the one on 127.0.0.1:6379 where it runs, otherwise one started for the tests."""
    if redis_answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/15"
        return
    server = EmbeddedRedis()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def stack(redis_url):
    """All five services as separate processes, started once for the whole run."""
    # A quick avatar fine-tunes for a few steps only in tests.
    quick = {"WORKER_STEPS": "3", "WORKER_SENTENCES": "3", "WORKER_HEARTBEAT_S": "0.5", "WORKER_LEASE_S": "4",
             # every process prints its spans, one JSON line each, into its log (test_tracing reads them)
             "OTEL_TRACES_EXPORTER": "console",
             # tests open sessions back to back, the next maybe before the gateway has seen the last one leave;
             # admission itself is tested on a gateway of its own (test_gateway_ws.py)
             "GATEWAY_MAX_SESSIONS": "8"}
    started = Stack(redis_url, extra_env=quick).start()
    for name in started.specs:
        started.wait(name)
    yield started
    started.stop()


def pytest_ignore_collect(collection_path, config):
    """`-m unit` (make test-unit) does not import the other modules at all: their imports (torch, NeMo, the
    models' libraries) would cost the unit tier most of its time. The unit tier is whole modules, marked with
    `pytestmark = pytest.mark.unit`."""
    if config.option.markexpr.strip() != "unit" or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    return True if "pytestmark = pytest.mark.unit" not in collection_path.read_text() else None
