"""Models as portable, safe, versioned files: weights, the store, import of foreign checkpoints, the library.

A model is a folder (or the same files in one ``.zip``) holding ``card.json`` (a
:class:`SegNetsLib.card.card.ModelCard`, validated against ``SegNetsLib/card/card.schema.json``) and
``weights.safetensors``. Model files are untrusted: nothing is ever unpickled and every tensor is checked
against the architecture before loading.

- :mod:`.library`: ``ModelLibrary`` (list, find, add, import, export, remove) and ``load(path_or_id)``
- :mod:`.store`: ``save(net, card, folder)``, reading folders and zips, building networks from cards
- :mod:`.importers`: foreign checkpoints (PyTorch state dicts, safetensors, official releases)
- :mod:`.weights`: safetensors and state-dict reading with shape checks
"""
