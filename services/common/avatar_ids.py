"""What an avatar id may be, for every service: ASCII letters, digits, '-' and '_', at most 64 — a folder name
under the avatars directory, never a path (and never too long for the file system)."""

import re

from services.common.errors import BadRequest

AVATAR_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_avatar_id(avatar_id: str) -> str:
    if not AVATAR_ID.fullmatch(avatar_id):
        raise BadRequest(f"avatar id {avatar_id[:80]!r} may only hold letters, digits, - and _ (at most 64)")
    return avatar_id
