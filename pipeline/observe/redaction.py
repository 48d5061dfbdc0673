"""Passwords out of URLs and of any text that may quote one (FFmpeg errors, log lines, `pipeline
check`). Owned here, beside logging, because every stage that prints a camera URL needs it."""
from __future__ import annotations

import re
from urllib.parse import unquote

# Userinfo of a URL: scheme://user:password@host... The password runs to the last '@' before
# the path, so passwords (and user names) containing '@' or ':' are still caught whole.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/]*):(?P<password>[^/]*)@")


def redact_url(url: str) -> str:
    """`rtsp://user:pass@host/x` -> `rtsp://user:***@host/x`; URLs without a password unchanged."""
    m = _USERINFO.match(url)
    if not m or not m.group("password"):
        return url
    return f"{m.group('scheme')}{m.group('user')}:***@{url[m.end():]}"


def url_password(url: str) -> str | None:
    m = _USERINFO.match(url)
    if not m or not m.group("password"):
        return None
    return m.group("password")


def redact_text(text: str, url: str) -> str:
    """Remove the URL's password (raw and percent-decoded) from any text, e.g. an FFmpeg error."""
    text = text.replace(url, redact_url(url))
    password = url_password(url)
    if password:
        for secret in {password, unquote(password)}:
            if secret:
                text = text.replace(secret, "***")
    return text
