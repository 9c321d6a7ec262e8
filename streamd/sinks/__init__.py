"""Sinks: components that consume streamd's own canonical events and push them to a vendor.

A sink is the mirror of a source: a config model (``kind``, ``build``) plus a runtime with
``async def run(self, *, task_status)`` that runs until cancelled (see :mod:`.calabrio_rtdc`).
"""
