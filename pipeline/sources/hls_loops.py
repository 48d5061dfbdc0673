"""HLS playlists that refer back to themselves (directly or through their variants).

FFmpeg's HLS demuxer follows such a loop without end: thousands of requests a second and memory
growing until the open's timeout (issue 23). Before a network camera opens an HLS URL
(`.m3u8`), its playlist is read here, with its variants to a small depth, each read bounded in
time and size; a URI that leads back to a playlist already seen is a loop and the camera does not
open it (it reports the reason and retries after its backoff). Anything else that goes wrong
here (no answer, an HTTP error, not a playlist) is left to FFmpeg to report as it would.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urljoin, urlsplit, urlunsplit

MAX_PLAYLIST_BYTES = 1 << 20
MAX_DEPTH = 3  # master -> variant -> (a variant that is a master again: already suspicious)
MAX_FETCHES = 8


def is_hls_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and parts.path.lower().endswith(".m3u8")


def _without_fragment(url: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path, p.query, ""))


def _fetch(url: str, timeout_s: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
            body = response.read(MAX_PLAYLIST_BYTES + 1)
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if len(body) > MAX_PLAYLIST_BYTES:
        return None
    text = body.decode("utf-8", errors="replace")
    return text if text.lstrip("\ufeff").startswith("#EXTM3U") else None


def _uris(playlist: str) -> list[str]:
    return [ln.strip() for ln in playlist.splitlines() if ln.strip() and not ln.startswith("#")]


def playlist_loop(url: str, timeout_s: float) -> str | None:
    """A one-line description of a loop in the playlist at `url` (names relative to it), or None."""
    seen = {_without_fragment(url)}
    todo = [(url, 0)]
    fetches = 0
    while todo and fetches < MAX_FETCHES:
        current, depth = todo.pop(0)
        text = _fetch(current, timeout_s)
        fetches += 1
        if text is None:
            continue
        for uri in _uris(text):
            target = _without_fragment(urljoin(current, uri))
            if target in seen:
                name = urlsplit(current).path.rsplit("/", 1)[-1]
                return f"HLS playlist loop: {name} lists {uri}, a playlist already read"
            if depth + 1 < MAX_DEPTH and urlsplit(target).path.lower().endswith(".m3u8"):
                seen.add(target)
                todo.append((target, depth + 1))
    return None
