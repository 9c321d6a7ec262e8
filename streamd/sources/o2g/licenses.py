"""Licence pre-flight (issue 17 item 8): which event packages this server's licences will not deliver.

Rules:

1. Once per source run, after the first login, each licence the configured packages need is
   asked for with ``GET {base}/system/licenses?lic=NAME`` (004 L8771-8809: 204 installed, 403
   not; available out of a session, free).
2. The licences of a package (:data:`PACKAGE_LICENSES`), each list "any of these": the
   subscription's for the packages whose ids are users (004 L2159-2161: CAPEX
   ``ROXE_API_TEL_ADVANCED`` or ``ROXE_API_CONTACTCENTER_AGENT``, OPEX ``api-tel-f``); the call
   centre services' for ``pilot``, ``rti`` and ``acdstats``, whose subscription takes none but
   whose methods do (004 L2102-2104; CAPEX ``ROXE_API_CONTACTCENTER_SVCS``, OPEX ``api-tel-f``).
   The guide names no licence for the events of ``system``, ``pbxManagement`` and ``rsi``: they
   are reported as not checked.
3. One line says it all (:func:`verdict`, pure): a warning naming the packages none of whose
   licences is installed, else a debug line (a start-up says nothing it need not); an answer other than 204/403 (or none) leaves that
   licence unknown, and a package with an unknown licence and no installed one is "not checked".
   The pre-flight never stops the source: O2G remains the judge at subscription time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Final

from streamd.errors import SourceError
from streamd.sources.http import httpx_errors
from streamd.sources.o2g.client import O2GClient

log = logging.getLogger("streamd.sources.o2g")

_SUBSCRIPTION: Final = ("ROXE_API_TEL_ADVANCED", "ROXE_API_CONTACTCENTER_AGENT", "api-tel-f")
_CALL_CENTER: Final = ("ROXE_API_CONTACTCENTER_SVCS", "api-tel-f")
PACKAGE_LICENSES: Final[Mapping[str, tuple[str, ...]]] = {
    "telephony": _SUBSCRIPTION,
    "eventSummary": _SUBSCRIPTION,
    "unifiedComLog": _SUBSCRIPTION,
    "user": _SUBSCRIPTION,
    "userManagement": _SUBSCRIPTION,
    "routingManagement": _SUBSCRIPTION,
    "agent": _SUBSCRIPTION,
    "pilot": _CALL_CENTER,
    "rti": _CALL_CENTER,
    "acdstats": _CALL_CENTER,
}
"""Licences of each package, any one of which will do (rule 2)."""


def needed(packages: Iterable[str]) -> list[str]:
    """The licence names to ask about for ``packages``, each once, in a stable order."""
    names: list[str] = []
    for package in packages:
        names += [n for n in PACKAGE_LICENSES.get(package, ()) if n not in names]
    return names


def verdict(packages: Iterable[str], installed: Mapping[str, bool | None]) -> tuple[int, str]:
    """The log level and line for what ``installed`` (name -> yes / no / unknown) says (rule 3)."""
    missing: dict[tuple[str, ...], list[str]] = {}
    unchecked: list[str] = []
    covered: list[str] = []
    for package in packages:
        names = PACKAGE_LICENSES.get(package)
        answers = [installed.get(n) for n in names or ()]
        if names is None or (True not in answers and None in answers):
            unchecked.append(package)
        elif True in answers:
            covered.append(package)
        else:
            missing.setdefault(names, []).append(package)
    parts = [
        f"{', '.join(pkgs)} (none of {' / '.join(names)} is installed)" for names, pkgs in missing.items()
    ]
    tail = f"; not checked: {', '.join(unchecked)}" if unchecked else ""
    if parts:
        line = f"this server's licences will not deliver the events of {'; '.join(parts)}{tail}"
        return logging.WARNING, line
    return logging.DEBUG, f"the licences cover {', '.join(covered) or 'no checked package'}{tail}"


async def preflight(client: O2GClient, packages: Iterable[str]) -> None:
    """Ask about each needed licence and log the one line (rules 1, 3)."""
    packages = list(packages)
    installed: dict[str, bool | None] = {}
    for name in needed(packages):
        try:
            with httpx_errors():
                response = await client.http.get(client.base_url + "/system/licenses", params={"lic": name})
        except SourceError as exc:
            log.debug("o2g %s: licence %s: %s", client.config.name, name, exc)
            installed[name] = None
            continue
        status = response.status_code
        installed[name] = True if 200 <= status < 300 else False if status == 403 else None
    level, line = verdict(packages, installed)
    log.log(level, "o2g %s: licence pre-flight: %s", client.config.name, line)
