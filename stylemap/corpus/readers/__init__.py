"""The corpus readers, one module per format, and the registry that picks one for a source.

The interface they share is base.py's (with local.py, what the readers of local folders share). Neither
imports a reader, and a reader imports them as modules (`import stylemap.corpus.readers.local as local`), never
this package, so no import leads back to the registry. A format's reader is the `Corpus` class of the module
named after it: the formats themselves are listed once, in params.LAYOUTS.
"""
from __future__ import annotations

from stylemap.corpus.readers import diffusiondb, folder, img2dataset, journeydb
from stylemap.corpus.readers.base import Reader
from stylemap.params import LAYOUTS, Source

_MODULES = {m.__name__.rpartition(".")[2]: m for m in (diffusiondb, folder, img2dataset, journeydb)}
READERS = {fmt: _MODULES[fmt].Corpus for fmt in LAYOUTS}  # a format without its module fails here, at import


def open_corpus(src: Source) -> Reader:
    """The reader for a source's `format`."""
    return READERS[src.format](src)
