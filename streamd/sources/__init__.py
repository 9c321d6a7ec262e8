"""Sources: one coroutine per configured vendor connection (see :mod:`streamd.sources.base`)."""
