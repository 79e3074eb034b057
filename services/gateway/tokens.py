"""python -m services.gateway.tokens --subject alice [--grants converse,rest] [--avatars ...] [--ttl-s 3600]

Mints a per-user access token signed with GATEWAY_JWT_SECRET (read from the environment or .env, as the gateway
reads it) and prints it."""

import argparse

from services.gateway.access import GRANTS, mint
from services.gateway.config import GatewaySettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[2])
    parser.add_argument("--subject", required=True, help="who the token is for (a user id)")
    parser.add_argument("--grants", default="converse", help=f"comma-separated, of {', '.join(GRANTS)}")
    parser.add_argument("--avatars", default=None, help="comma-separated avatar ids (default: every avatar)")
    parser.add_argument("--ttl-s", type=int, default=3600, help="seconds the token is valid")
    args = parser.parse_args()
    settings = GatewaySettings()
    secret = settings.jwt_secret.get_secret_value()
    if not secret:
        parser.error("set GATEWAY_JWT_SECRET (the gateway's signing key) in the environment or .env")
    avatars = args.avatars.split(",") if args.avatars is not None else None
    try:
        print(mint(secret, args.subject, [g for g in args.grants.split(",") if g], avatars, args.ttl_s,
                   settings.jwt_audience, settings.jwt_issuer))
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
