"""``segnets web``: SegNets in a browser (trame-slicer on Slicer's own core)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from SegNetsLib.core.errors import SegNetsError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
# what the `web` extra brings (trame-slicer, slicer-core, vtk and what they import), absent from a plain install
WEB_PACKAGES = ("trame", "trame_server", "trame_slicer", "wslink", "aiohttp", "slicer", "vtk", "vtkmodules")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "web",
        help="serve SegNets Web (slice and 3D views, Segment Editor, Segment and Fine-tune) to a browser",
        description="Serve SegNets Web. Open the printed address in a browser; by default only this "
        "machine can connect (127.0.0.1). Rendering needs no display (EGL, or OSMesa as a fallback).",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 exposes the page, with no login "
        "and no encryption, to the network: read docs/web.md first)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a volume file or a file of a DICOM series, or a folder whose first volume (file or series) is loaded "
        "when a browser connects (the page offers the folder's other volumes)",
    )
    parser.add_argument("--open-browser", action="store_true", help="open the page in this machine's browser")
    parser.add_argument(
        "--status-endpoint",
        action="store_true",
        help="serve GET /segnets/status.json (what the server holds) for automated tests",
    )
    parser.set_defaults(handler=run_web)


def run_web(args: argparse.Namespace) -> int:
    """Start the server and block until it stops."""
    if args.data is not None and not args.data.exists():
        raise SegNetsError(f"--data {str(args.data)!r} does not exist.")
    if not 0 <= args.port <= 65535:
        raise SegNetsError(f"--port {args.port} is not a port number (0..65535).")

    from SegNetsLib.web.rendering import configure_offscreen_rendering

    configure_offscreen_rendering()  # before VTK creates any window
    for noisy in ("trame_client", "trame_server", "trame_rca", "wslink", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        from trame.app import get_server

        from SegNetsLib.web.app import SegNetsWebApp
    except ImportError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in WEB_PACKAGES:
            raise
        raise SegNetsError(
            f"SegNets Web needs the Python package {missing!r}, which is not installed: pip install 'segnets[web]'."
        ) from error

    server = get_server("segnets_web", client_type="vue3")
    app = SegNetsWebApp(server, data=args.data, status_endpoint=args.status_endpoint)
    serve(app, args.host, args.port, args.open_browser)
    return 0


def serve(app, host: str, port: int, open_browser: bool = False) -> None:
    """Serve ``app`` (a SegNetsWebApp) until the server stops (Ctrl-C, SIGTERM); then cancel a running job and
    let its worker thread end before Python exits."""
    server = app.server
    server.controller.on_server_ready.add(
        lambda **_: print(f"SegNets Web: serving on http://{host}:{server.port}/", flush=True)
    )
    try:
        server.start(host=host, port=port, open_browser=open_browser, show_connection_info=False)
    finally:
        if not app.actions.stop():
            log.warning("the SegNets job did not stop within a minute; Python may abort as it exits.")
