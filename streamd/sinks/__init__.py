"""Sinks: components that consume streamd's own canonical events and push them to a vendor.

A sink is the mirror of a source (see :mod:`.base`): a config model (``kind``, ``build``) plus a
runtime whose one session reads Kafka through :class:`streamd.publish.consume.TopicReader` and
runs under the supervisor; it publishes its dead letters through the pipeline like a source
(see :mod:`.calabrio_rtdc`).
"""
