"""python -m services.runner.healthcheck — exit 0 when the service in this container is ready (Docker HEALTHCHECK).

gRPC stages are asked over grpc.health.v1 on $<STAGE>_PORT; the gateway answers GET /healthz on $GATEWAY_PORT.
"""

import os
import sys
from dataclasses import replace

from services.runner.health import SERVING, status
from services.runner.topology import SERVICES


def main(name: str) -> int:
    spec = next(s for s in SERVICES if s.name == name)
    port = int(os.environ.get(f"{spec.env_prefix}PORT", spec.port))
    state = status(replace(spec, port=port), timeout=3.0)
    print(f"{name}: {state}")
    return 0 if state == SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
