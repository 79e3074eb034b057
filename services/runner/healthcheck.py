"""python -m services.runner.healthcheck — exit 0 when the service in this container is ready (Docker HEALTHCHECK).

gRPC stages are asked over grpc.health.v1 on $<STAGE>_PORT. The gateway is healthy when it is wired: its
/readyz on the operators' port ($GATEWAY_METRICS_PORT) finds Redis and resolves every stage's name (being full
or draining is not ill health), so `compose up --wait` does not call a stack on a broken network healthy.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import replace

from services.runner.health import SERVING, status
from services.runner.topology import SERVICES


def gateway_wired(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3.0) as reply:
            body = json.load(reply)
    except urllib.error.HTTPError as err:  # 503: not ready, the body says why
        body = json.load(err)
    except OSError as err:
        return f"UNREACHABLE ({err})"
    if body.get("redis") != "ok":
        return f"NOT_SERVING (redis {body.get('redis')})"
    if body.get("unresolved"):
        return f"NOT_SERVING (no address for {', '.join(body['unresolved'])})"
    return SERVING


def main(name: str) -> int:
    spec = next(s for s in SERVICES if s.name == name)
    port = int(os.environ.get(f"{spec.env_prefix}PORT", spec.port))
    if name == "gateway":
        state = gateway_wired(int(os.environ.get("GATEWAY_METRICS_PORT", spec.metrics_port)))
    else:
        state = status(replace(spec, port=port), timeout=3.0)
    print(f"{name}: {state}")
    return 0 if state == SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
