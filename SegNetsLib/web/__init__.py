"""SegNets Web: the SegNets workflow in a browser, on Slicer's own core (trame-slicer, slicer-core).

``segnets web`` (:mod:`SegNetsLib.commands.web`) serves :class:`SegNetsLib.web.app.SegNetsWebApp`.
Modules: ``app`` (layout), ``panel`` (the SegNets panel), ``state`` (its page state), ``actions``
(what its buttons do), ``loading`` (volumes in), ``status`` (a JSON view for tests), ``rendering``
(off-screen OpenGL). Import ``rendering`` and call it before anything imports VTK.
"""
