"""Passwords out of URLs and of any text that may quote one (FFmpeg errors, log lines, `pipeline
check`, status messages). Owned here, beside logging, because every stage that prints a camera URL needs it."""
from __future__ import annotations

import re
from urllib.parse import unquote

# Userinfo of a URL: scheme://user:password@host... The password runs to the last '@' of the URL,
# so passwords containing '@', ':', or an unencoded '/' or '#' are still caught whole (a URL with a
# port, "host:554/a@b", is a port, not a password).
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/]*):(?!\d{1,5}[/?#])(?P<password>.*)@(?=[^@]*$)",
                       re.DOTALL)
# Credentials in a query string or fragment: ?pwd=..., &token=..., ;password=..., key=...
SECRET_PARAMETERS = ("password", "passwd", "pwd", "pass", "token", "access_token", "auth", "authorization",
                     "key", "apikey", "api_key", "secret", "sig", "signature", "credential", "credentials")
_SECRET_PARAMETER = re.compile(r"(?P<name>[?&;#](?:[A-Za-z0-9_.-]*[_.-])?(?:" + "|".join(SECRET_PARAMETERS)
                               + r"))=(?P<value>[^&;#\s]*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`rtsp://user:pass@host/x?token=t` -> `rtsp://user:***@host/x?token=***`; URLs without
    credentials unchanged."""
    m = _USERINFO.match(url)
    if m and m.group("password"):
        url = f"{m.group('scheme')}{m.group('user')}:***@{url[m.end():]}"
    return _SECRET_PARAMETER.sub(lambda q: f"{q.group('name')}=***" if q.group("value") else q.group(0), url)


def url_secrets(url: str) -> list[str]:
    """The URL's password and credential query values, each as written and percent-decoded."""
    found = []
    m = _USERINFO.match(url)
    if m and m.group("password"):
        found.append(m.group("password"))
    found += [q.group("value") for q in _SECRET_PARAMETER.finditer(url[m.end():] if m else url) if q.group("value")]
    return sorted({v for s in found for v in (s, unquote(s)) if v}, key=len, reverse=True)


def url_password(url: str) -> str | None:
    m = _USERINFO.match(url)
    if not m or not m.group("password"):
        return None
    return m.group("password")


def redact_text(text: str, url: str) -> str:
    """Remove the URL's credentials (raw and percent-decoded) from any text, e.g. an FFmpeg error."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text
