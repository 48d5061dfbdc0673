"""A real RTSP server for tests: GStreamer's GstRtspServer serving a live H.264 test pattern.

Runs under Debian's /usr/bin/python3 (which has python3-gi); started and stopped by
tests/support/rtsp_server.py. Prints one line `READY <port>` on stdout once it listens.

    /usr/bin/python3 tests/support/gst_rtsp_server.py --port 0 --mount /cam

With --user/--password the server requires RTSP basic authentication: a client without those
exact credentials gets 401 Unauthorized.
"""
from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def launch_line(width: int, height: int, fps: int) -> str:
    # is-live paces the pattern in real time; "ball" moves, so frames differ.
    # A one-second GOP with SPS/PPS on every IDR lets a (re)connecting client start quickly.
    return (
        f"( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! videoconvert "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=300 "
        f"! video/x-h264,profile=constrained-baseline "
        f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def require_basic_auth(server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory,
                       user: str, password: str) -> None:
    """Only `user:password` may see and play the factory's media; anyone else gets 401."""
    role = "viewer"
    token = GstRtspServer.RTSPToken.new()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
    auth = GstRtspServer.RTSPAuth()
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions.new()
    permissions.add_role_from_structure(Gst.Structure.new_from_string(
        f"{role}, {GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS}=(boolean)true, "
        f"{GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT}=(boolean)true"))
    factory.set_permissions(permissions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mount", default="/stream")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--shared", action="store_true",
                        help="all clients share one pipeline (joiners start mid-GOP)")
    parser.add_argument("--user", help="require RTSP basic auth with this user (and --password)")
    parser.add_argument("--password", default="")
    args = parser.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.width, args.height, args.fps))
    factory.set_shared(args.shared)
    # Interleaved TCP only: the sources under test ask for rtsp_transport=tcp.
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    if args.user:
        require_basic_auth(server, factory, args.user, args.password)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"FAILED cannot listen on {args.host}:{args.port}", flush=True)
        return 1

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
