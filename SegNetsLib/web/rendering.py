"""Off-screen OpenGL for the web server: pick a VTK render window that needs no display."""

from __future__ import annotations

import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

EGL_WINDOW = "vtkEGLRenderWindow"
OSMESA_WINDOW = "vtkOSOpenGLRenderWindow"


def choose_render_window(environ: dict[str, str] | None = None) -> str | None:
    """The VTK render window class to use, or None to keep VTK's default (a display is available).

    An explicit ``VTK_DEFAULT_OPENGL_WINDOW`` wins; with a ``DISPLAY`` VTK's default X window is used;
    otherwise EGL (Mesa's llvmpipe works without a GPU) when libEGL is present, else OSMesa.
    """
    environ = os.environ if environ is None else environ
    if environ.get("VTK_DEFAULT_OPENGL_WINDOW"):
        return environ["VTK_DEFAULT_OPENGL_WINDOW"]
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    if ctypes.util.find_library("EGL"):
        return EGL_WINDOW
    if ctypes.util.find_library("OSMesa"):
        return OSMESA_WINDOW
    log.warning("Neither libEGL nor libOSMesa was found; install one (apt-get install -y libosmesa6) to render.")
    return EGL_WINDOW


def configure_offscreen_rendering() -> str | None:
    """Set ``VTK_DEFAULT_OPENGL_WINDOW`` before VTK creates any window; return the class chosen."""
    window = choose_render_window()
    if window:
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = window
    return window
