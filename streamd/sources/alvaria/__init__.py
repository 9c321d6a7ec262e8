"""Alvaria Cloud real-time reporting source: poll the five query endpoints and diff snapshots.

Modules: :mod:`.config` (the ``kind: alvaria`` config block), :mod:`.auth` (OAuth2 client credentials
as an ``httpx.Auth``), :mod:`.models` (typed responses and event payloads), :mod:`.client` (the REST
adapter: the only module that sees httpx), :mod:`.diff` (pure snapshot diffing), :mod:`.normalize`
(pure canonical mapping), :mod:`.scopes` (per-scope health and backoff), :mod:`.query` (one query's
``PollSpec``), :mod:`.source` (the runtime).
"""
