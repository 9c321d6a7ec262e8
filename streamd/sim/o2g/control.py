"""Out-of-band control of the simulated O2G for drivers in another process (benchmarks, demos).

Rules:

1. ``POST /_sim/{action}``, not part of O2G: ``generate?n=N`` generates and publishes;
   ``prepare?n=N`` generates without publishing and answers the events as NDJSON (``&bad=0.1``:
   that share is bad, half of it deviating from the guide, half unroutable: its key field left
   out); ``release`` publishes them; ``pause`` / ``resume`` stop and restart writing on the chunk
   channels; ``rate?rate=R`` sets the generated traffic to R events/s (0 stops it) and answers how
   many events were published so far; ``stats`` answers that and how many events wait in
   subscription queues (not yet written to a channel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response

from streamd.sim.deviate import deviate
from streamd.sim.o2g.guide import GUIDE, json_response

if TYPE_CHECKING:
    from streamd.sim.o2g.simulator import O2GSimulator


async def control(sim: O2GSimulator, request: Request) -> Response:
    """Answer one ``/_sim/{action}`` request (rule 1)."""
    action, n = request.path_params["action"], int(request.query_params.get("n", "1"))
    if action == "generate":
        return json_response({"events": len(sim.generate(n))})
    if action == "prepare":
        sim.prepared = []
        while len(sim.prepared) < n:
            sim.prepared.extend(sim.traffic.tick())
        bad = float(request.query_params.get("bad", "0"))
        for i, event in enumerate(sim.prepared):
            roll = sim.deviate_rng.random()
            if roll < bad / 2:
                sim.prepared[i] = deviate(event, sim.deviate_rng, GUIDE)[0]
            elif roll < bad:
                sim.prepared[i] = {
                    k: v for k, v in event.items() if k == "eventName" or k not in GUIDE.routing
                }
        return Response(b"".join(orjson.dumps(e) + b"\n" for e in sim.prepared))
    if action in ("pause", "resume"):
        sim.silence(action == "pause")
        return json_response({"silent": sim.silent})
    if action == "rate":
        sim.rate = float(request.query_params.get("rate", "0"))
        if sim.rate > 0:
            sim.start_traffic()
        return json_response({"rate": sim.rate, "published": sim.published})
    if action == "stats":
        queued = sum(len(sub.pending) for sub in sim.all_subs())
        return json_response({"published": sim.published, "queued": queued})
    if action == "release":
        released, sim.prepared = sim.prepared, []
        return json_response({"events": len(released), "matched": sim.publish(*released)})
    return Response(status_code=404)
