"""Sink ``calabrio-rtdc``: canonical agent states of one source -> Calabrio real-time data capture.

This makes streamd the bridge from an ACD (e.g. an O2G PBX) to Calabrio adherence: it consumes
``{prefix}agent-state``, keeps the states of the source named ``from``, maps each to a real-time
data capture record and POSTs them in batches to ``/api/rest/scheduling/gis/realTimeAgentState``
(spec §4, 002 L4642-4704) with the Calabrio session cookie (:mod:`streamd.sources.calabrio.auth`).

Canonical state -> ``gisStateIdentifier`` (002 L4674-4682; configurable):

==================  ====  ==========================================================
State               code  note
==================  ====  ==========================================================
``logged_out``      1     Logout
``not_ready``       2     Not Ready (``reason_code`` sent as ``reasonCode``)
``available``       3     Ready
``busy``            4     Talking; ``vendor_state_codes`` refines it (``HOLD`` -> 10)
``after_call_work`` 6     Work Ready by default (``after_call_work_code: 5`` = Work Not Ready)
``unknown``         -     not sent; counted as ``errors{stage="processing",error_type="unmapped_state"}``
==================  ====  ==========================================================

Modules: :mod:`.config` (the config section), :mod:`.mapping` (pure: state -> record, selection,
batching), :mod:`.directory` (the Calabrio agents' ``acdId``), :mod:`.delivery` (HTTP),
:mod:`.sink` (the Kafka side; imported on ``build``, so loading a config does not load aiokafka).

Rules:

1. Three layers, each testable alone: **pure** mapping and selection (:func:`to_record`,
   :func:`select_states`, :func:`batches`; values are decoded by
   :meth:`streamd.events.AgentState.from_json`); **delivery** (:class:`RtdcDelivery`: HTTP
   batches, rejection handling, dead letters) fed with ``AgentState`` objects; the **Kafka
   side** (``sink.CalabrioRtdcSink``), one session that reads, filters, hands batches to the
   delivery and commits offsets.
2. The record body is a JSON array of ``{acdAgentId, gisStateIdentifier, timestamp, reasonCode}``
   (the seed's example is missing; ``body: object`` sends one record per request instead).
   ``content_type`` chooses how it travels: ``json`` (an ``application/json`` body) or
   ``multipart`` (``multipart/form-data``, the content type the guide declares, 002 L4659: the
   JSON text in the form field ``form_field``, a part of type ``application/json``). A 415
   answer (the tenant takes the other one) fails the sink with the setting to change.
3. A batch answered 400/422 is split in halves until the rejected records are isolated; each
   rejected record goes to ``{prefix}deadletter`` (stage ``sink``) and the rest is delivered.
   Dead letters go through the pipeline's ``emit`` like every event (Kafka, or the spool), once
   the whole batch was sent.
4. Offsets are committed only after a batch was delivered or dead-lettered: at least once.
   A transient failure (5xx, timeout, 429) ends the session; whoever runs it retries, and the
   next session resumes from the last commit (Calabrio tolerates the repeats; records are
   idempotent). The Calabrio session outlives a failed session; the sink logs out as it stops.
5. Per-agent order is kept: one agent's states share a partition and are sent in offset order.
6. The topic is read with :class:`streamd.publish.consume.TopicReader`: every partition
   assigned, offsets committed under ``group_id`` without joining the group. Partitions added
   later are picked up at the next session.
7. A systematic rejection is not bad data: once ``reject_limit`` records in a row were rejected
   over batches of which Calabrio accepted nothing (a wrong ``body`` or ``path``, a tenant that
   knows none of the ids), the session raises :class:`SystematicRejection` (fatal): the sink
   goes ``failed`` with Calabrio's answer, the batch is neither dead-lettered nor committed, and
   it is sent again when the supervisor retries the sink (``failed_retry``). The streak is kept
   across sessions, so a retry that is rejected again fails at once. Rejections below the
   limit, or in a batch of which some records were accepted, are dead-lettered (rule 3).
8. TLS as for every vendor client (:func:`~streamd.sources.http.tls_verify`: ``verify_tls``,
   ``ca_file``); a certificate that does not verify fails the sink with the cause.
9. Agents are mapped automatically (``map_by_acd_id``, the default): the sink reads the Calabrio
   agents with ``fullDetail=true`` (only the full detail carries ``acdId``, 002 L671-686) when
   it starts and every ``reference_refresh``, and sends an agent whose ``agent_id`` is a
   Calabrio agent's ``acdId`` under that id; ``agent_map`` overrides it per agent. An agent the
   last read did not know makes the sink read the list again first (at most once a minute:
   :data:`~.directory.REREAD_AFTER`). A list that maps nobody (``[]``, e.g. a missing
   permission, or no agent with an ``acdId``) is logged once at WARNING. A state of an
   agent found in neither goes to ``{prefix}deadletter`` (stage ``sink``, error type
   ``unmapped_agent``, the reason in the error) and is not sent, so it never counts as a
   rejection. The first read of the agent list must succeed (the session retries until it
   does); a later failed re-read keeps the last copy. ``map_by_acd_id: false`` sends agents not
   in ``agent_map`` with their own id and lets Calabrio decide.
"""

from streamd.sinks.calabrio_rtdc.config import CalabrioRtdcSinkConfig
from streamd.sinks.calabrio_rtdc.delivery import DeliveryReport, RtdcDelivery, SystematicRejection
from streamd.sinks.calabrio_rtdc.mapping import (
    GIS_CODES,
    RtdcMapping,
    RtdcRecord,
    batches,
    gis_code,
    select_states,
    to_record,
)

__all__ = [
    "GIS_CODES",
    "CalabrioRtdcSinkConfig",
    "DeliveryReport",
    "RtdcDelivery",
    "RtdcMapping",
    "RtdcRecord",
    "SystematicRejection",
    "batches",
    "gis_code",
    "select_states",
    "to_record",
]
