"""Recording routes: control on live calls, search, details, audio (with ranges), QA reviews.

Who sees which recordings (``scope_of``): an agent their own calls' (the
recording's answering agent is their ``agent_id``), a supervisor their team's
(agents whose user has the same ``team``), QA and admins all. A recording
outside the caller's scope answers 404, as if it did not exist. Every fetch
of details or audio is written to ``recording_access``, refusals included.

Paths never come from a request: the audio routes take a recording id (digits
only, by the route's pattern), read the row, and resolve the row's bare file
name inside the recording directory (``recording.files.resolve``).
"""
from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.auth import EVERYONE, Principal, needs_agent_team, over_agent
from api.client_address import client_address, networks
from api.db import db, query
from api.errors import ApiError
from api.registry import API, ApiRequest, Instant, setup_registry
from cti.daemon import CORE
from recording import jobs
from recording import recording_db as rec_store
from recording.files import resolve
from recording.policy import ScoreError, expires_at, score
from recording.recorder import RECORDING, ControlError, Live, RecordingService

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$", max_length=64)]
CallId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$", max_length=128)]
CONTROL = frozenset({"agent", "supervisor", "admin"})
QA = frozenset({"qa", "admin"})
QA_READ = frozenset({"qa", "supervisor", "admin"})


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- models ------------------------------------------------------------------------

class PauseItem(BaseModel):
    paused_at: datetime
    resumed_at: datetime | None
    start_s: float = Field(description="seconds from the start of the file")
    end_s: float | None
    paused_by: str | None
    resumed_by: str | None


class RecordingItem(BaseModel):
    recording_id: int
    call_id: str
    segment: int
    agent: str | None
    agents: list[str]
    queue: str | None
    caller_num: str | None
    sides: str
    reason: str
    started_by: str | None
    state: str = Field(description="recording, paused, stopped, saved, failed or deleted")
    started_at: datetime
    stopped_at: datetime | None
    duration_s: float | None
    audio_lead_s: float | None = Field(description="from the start to the first audio in the file; pause "
                                                   "offsets are in file time")
    size_bytes: int | None
    sha256: str | None
    error: str | None
    deleted_at: datetime | None
    expires_at: datetime = Field(description="when the retention sweep deletes it")
    pauses: list[PauseItem]


class RecordingList(BaseModel):
    recordings: list[RecordingItem]


class ListQuery(_Body):
    since: Instant | None = Field(None, description="started at or after (ISO 8601)")
    until: Instant | None = Field(None, description="started before")
    agent: Name | None = None
    queue: Name | None = None
    caller: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{2,20}$")] | None = Field(
        None, description="a part of the caller's number (digits, optional +)")
    ticket: int | None = Field(None, ge=1, le=2**63 - 1, description="recordings of the calls linked to this ticket")
    call_id: CallId | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000)


class AudioQuery(_Body):
    download: bool = Field(False, description="as an attachment (download) rather than inline (stream)")


class ControlBody(_Body):
    action: Literal["start", "stop", "pause", "resume"]


class LiveRecording(BaseModel):
    call_id: str
    agent: str | None
    queue: str | None
    recording: bool = Field(description="a recording is running (recording or paused)")
    recording_id: int | None
    state: str | None
    sides: str | None
    started_at: float | None
    pauses: list[tuple[float, float | None]] = Field(description="paused stretches, seconds from the file's start")


class CriterionItem(BaseModel):
    id: str
    label: str
    weight: float
    max: int


class QaForm(BaseModel):
    share: float
    criteria: list[CriterionItem]


class SampleReply(BaseModel):
    considered: int
    picked: int


class ReviewItem(BaseModel):
    review_id: int
    recording_id: int
    call_id: str
    agent: str
    queue: str | None
    recording_started_at: datetime
    duration_s: float | None
    recording_state: str
    state: str
    sampled_at: datetime
    reviewer: str | None
    scored_at: datetime | None
    points: dict[str, int] | None
    total: float | None
    comment: str | None


class ReviewList(BaseModel):
    reviews: list[ReviewItem]


class ReviewQuery(_Body):
    state: Literal["pending", "scored"] | None = None
    agent: Name | None = None
    limit: int = Field(100, ge=1, le=1000)


class ScoreBody(_Body):
    points: dict[Name, int] = Field(description="criterion id -> points (0..max)")
    comment: str | None = Field(None, max_length=4000)


class AgentScore(BaseModel):
    agent: str
    scored: int
    pending: int
    average: float | None = Field(description="mean total of the scored reviews, percent")
    lowest: float | None
    highest: float | None
    last_scored_at: datetime | None


class AgentScores(BaseModel):
    agents: list[AgentScore]


# -- who sees what -------------------------------------------------------------------

def scope_of(p: Principal | None) -> rec_store.Scope:
    """QA and admins: all; supervisors: their team's agents; agents: their own calls."""
    if p is None:
        return rec_store.Scope()
    if p.role in ("qa", "admin"):
        return rec_store.Scope(everything=True)
    if p.role == "supervisor":
        return rec_store.Scope(team=p.team) if p.team else rec_store.Scope()
    if p.role == "agent" and p.agent_id:
        return rec_store.Scope(agent_id=p.agent_id)
    return rec_store.Scope()


def _who(p: Principal | None) -> str:
    return f"{p.kind}:{p.name}" if p is not None else "anonymous"


def _service(req: ApiRequest[Any, Any]) -> RecordingService:
    return req.app[RECORDING]


def _item(service: RecordingService, row: Any, pauses: list[Any]) -> RecordingItem:
    return RecordingItem(
        **{k: row[k] for k in ("recording_id", "call_id", "segment", "agent", "queue", "caller_num", "sides",
                               "reason", "started_by", "state", "started_at", "stopped_at", "size_bytes",
                               "sha256", "error", "deleted_at")},
        agents=list(row["agents"]),
        duration_s=float(row["duration_s"]) if row["duration_s"] is not None else None,
        audio_lead_s=float(row["audio_lead_s"]) if row["audio_lead_s"] is not None else None,
        expires_at=expires_at(service.config, row["queue"], row["started_at"]),
        pauses=[PauseItem(paused_at=p["paused_at"], resumed_at=p["resumed_at"], start_s=float(p["start_s"]),
                          end_s=float(p["end_s"]) if p["end_s"] is not None else None, paused_by=p["paused_by"],
                          resumed_by=p["resumed_by"]) for p in pauses])


# -- recordings ------------------------------------------------------------------------

async def list_recordings(req: ApiRequest[None, ListQuery]) -> RecordingList:
    q = req.query
    f = rec_store.Filters(since=q.since, until=q.until, agent=q.agent, queue=q.queue, caller=q.caller,
                          ticket_id=q.ticket, call_id=q.call_id, limit=q.limit, offset=q.offset)
    pool = db(req.app)
    rows = await query(rec_store.list_recordings(pool, scope_of(req.principal), f))
    pauses = await query(rec_store.pauses(pool, [r["recording_id"] for r in rows]))
    service = _service(req)
    return RecordingList(recordings=[_item(service, r, pauses.get(r["recording_id"], [])) for r in rows])


def _id(text: str) -> int:
    """A route's id (digits, by its pattern) that also fits PostgreSQL's bigint."""
    if len(text) > 18:
        raise ApiError(404, "not_found", "no such id")
    return int(text)


async def _audit(req: ApiRequest[Any, Any], rid: int, action: str, outcome: str) -> None:
    p = req.principal
    await query(rec_store.audit(db(req.app), rid, principal=_who(p), role=p.role if p else "-", action=action,
                                byte_range=req.request.headers.get("Range", "")[:200] or None, outcome=outcome,
                                remote=client_address(req.request.remote, req.request.headers.get("X-Forwarded-For"),
                                                      networks(req.app[CORE].settings.http_trusted_proxies))))


async def _visible(req: ApiRequest[Any, Any], action: str) -> Any:
    rid = _id(req.match_info["recording_id"])
    row = await query(rec_store.get_recording(db(req.app), rid, scope_of(req.principal)))
    if row is None:
        await _audit(req, rid, action, "refused")
        raise ApiError(404, "not_found", f"no recording {rid} that you may see")
    return row


async def get_recording(req: ApiRequest[None, None]) -> RecordingItem:
    row = await _visible(req, "details")
    await _audit(req, row["recording_id"], "details", "served")
    pauses = await query(rec_store.pauses(db(req.app), [row["recording_id"]]))
    return _item(_service(req), row, pauses.get(row["recording_id"], []))


async def get_audio(req: ApiRequest[None, AudioQuery]) -> web.StreamResponse:
    action = "download" if req.query.download else "stream"
    row = await _visible(req, action)
    rid = row["recording_id"]
    if row["state"] in ("recording", "paused", "stopped"):
        await _audit(req, rid, action, "refused")
        raise ApiError(409, "still_recording", "the recording is not finished yet")
    if row["deleted_at"] is not None:
        await _audit(req, rid, action, "gone")
        raise ApiError(410, "deleted", f"recording {rid} was deleted on {row['deleted_at']:%Y-%m-%d} (retention)")
    try:
        service = _service(req)
        path = resolve(service.dirs or service.read_dir, row["file_name"])
    except ValueError:
        await _audit(req, rid, action, "refused")
        raise ApiError(500, "internal", "the stored file name is not usable (logged)") from None
    if not path.is_file():
        await _audit(req, rid, action, "gone")
        raise ApiError(410, "file_missing", f"the file of recording {rid} is not on disk")
    await _audit(req, rid, action, "served")
    disposition = "attachment" if req.query.download else "inline"
    return web.FileResponse(path, headers={
        "Content-Type": "audio/wav",
        "Content-Disposition": f'{disposition}; filename="recording-{rid}.wav"',
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    })


# -- control --------------------------------------------------------------------------

def _live_view(call_id: str, live: Live | None) -> LiveRecording:
    active = live.active if live is not None else None
    return LiveRecording(
        call_id=call_id, agent=live.agent if live else None, queue=live.queue if live else None,
        recording=active is not None, recording_id=active.recording_id if active else None,
        state=active.rec.state if active else None, sides=active.rec.sides if active else None,
        started_at=active.rec.started_at if active else None, pauses=active.rec.offsets() if active else [])


async def _may_control(req: ApiRequest[Any, Any], agent: str | None) -> None:
    """The agents' rule (``api.auth.over_agent``, as for their state and listening in):
    the agent, a supervisor of their team, an admin (also on calls without an agent)."""
    p = req.principal
    assert p is not None
    if p.role == "admin":
        return
    team = None
    if agent is not None and needs_agent_team(p, agent, "team"):
        team = await req.app[API].team_of(req.app, agent)
    if agent is None or over_agent(p, agent, "team", team) is None:
        if p.role == "agent":
            raise ApiError(403, "forbidden", "an agent controls the recording of their own calls only")
        raise ApiError(403, "forbidden", "a supervisor controls the recordings of their team's calls only")


async def get_control(req: ApiRequest[None, None]) -> LiveRecording:
    call_id = req.match_info["call_id"]
    service = _service(req)
    live = service.calls.get(call_id)
    call = service.core.model.calls.get(call_id)
    if live is None and call is None:
        raise ApiError(404, "no_live_call", f"no live call {call_id!r}")
    await _may_control(req, live.agent if live is not None else call.agent)
    return _live_view(call_id, live)


async def post_control(req: ApiRequest[ControlBody, None]) -> LiveRecording:
    call_id = req.match_info["call_id"]
    service = _service(req)
    live = service.calls.get(call_id)
    call = service.core.model.calls.get(call_id)
    if live is None and call is None:
        raise ApiError(404, "no_live_call", f"no live call {call_id!r}")
    await _may_control(req, live.agent if live is not None and live.agent else (call.agent if call else None))
    try:
        live = await service.control(call_id, req.body.action, _who(req.principal))
    except ControlError as exc:
        raise ApiError(exc.status, exc.error_id, exc.message) from None
    return _live_view(call_id, live)


# -- quality review -------------------------------------------------------------------

async def get_form(req: ApiRequest[None, None]) -> QaForm:
    qa = _service(req).config.qa
    return QaForm(share=qa.share, criteria=[CriterionItem(**c.model_dump()) for c in qa.criteria])


async def post_sample(req: ApiRequest[None, None]) -> SampleReply:
    service = _service(req)
    report = await query(jobs.sample(db(req.app), service.config, random.SystemRandom()))
    return SampleReply(considered=report.considered, picked=report.picked)


def _review(r: Any) -> ReviewItem:
    return ReviewItem(review_id=r["review_id"], recording_id=r["recording_id"], call_id=r["call_id"],
                      agent=r["agent"], queue=r["queue"], recording_started_at=r["started_at"],
                      duration_s=float(r["duration_s"]) if r["duration_s"] is not None else None,
                      recording_state=r["recording_state"], state=r["state"], sampled_at=r["sampled_at"],
                      reviewer=r["reviewer"], scored_at=r["scored_at"],
                      points=json.loads(r["points"]) if r["points"] is not None else None,
                      total=float(r["total"]) if r["total"] is not None else None, comment=r["comment"])


async def list_reviews(req: ApiRequest[None, ReviewQuery]) -> ReviewList:
    q = req.query
    rows = await query(rec_store.reviews(db(req.app), state=q.state, agent=q.agent, limit=q.limit))
    return ReviewList(reviews=[_review(r) for r in rows])


async def post_score(req: ApiRequest[ScoreBody, None]) -> ReviewItem:
    review_id = _id(req.match_info["review_id"])
    criteria = _service(req).config.qa.criteria
    try:
        result = score(criteria, req.body.points)
    except ScoreError as exc:
        raise ApiError(422, "invalid_score", f"the points do not fit the form: {exc}") from None
    saved = await query(rec_store.save_score(db(req.app), review_id, reviewer=_who(req.principal),
                                             form=[c.model_dump() for c in criteria], points=result.points,
                                             total=result.total, comment=req.body.comment))
    if saved is None:
        raise ApiError(404, "not_found", f"no review {review_id}")
    rows = await query(rec_store.reviews(db(req.app), state=None, agent=saved["agent"], limit=1000))
    return _review(next(r for r in rows if r["review_id"] == review_id))


async def agent_scores(req: ApiRequest[None, None]) -> AgentScores:
    rows = await query(rec_store.agent_scores(db(req.app), scope_of(req.principal)))
    return AgentScores(agents=[AgentScore(
        agent=r["agent"], scored=r["scored"], pending=r["pending"],
        average=float(r["average"]) if r["average"] is not None else None,
        lowest=float(r["lowest"]) if r["lowest"] is not None else None,
        highest=float(r["highest"]) if r["highest"] is not None else None,
        last_scored_at=r["last_scored_at"]) for r in rows])


def setup_recording_routes(app: web.Application) -> None:
    api = setup_registry(app)
    tags = ("recordings",)
    rid = "{recording_id:[0-9]+}"
    api.add("GET", "/api/recordings", list_recordings, summary="Search recordings (date, agent, queue, caller, ticket)",
            description="Newest first. Agents see their own calls', supervisors their team's, QA and admins all.",
            roles=EVERYONE, query=ListQuery, response=RecordingList, tags=tags)
    api.add("GET", f"/api/recordings/{rid}", get_recording, summary="A recording's details and pauses (audited)",
            roles=EVERYONE, response=RecordingItem, tags=tags)
    api.add("GET", f"/api/recordings/{rid}/audio", get_audio, summary="A recording's audio (WAV; Range requests; audited)",
            description="Answers 206 with the bytes asked for in a Range header; ?download=true as an attachment. "
                        "404 for a recording you may not see, 410 once the retention sweep deleted it.",
            roles=EVERYONE, query=AudioQuery, tags=tags, content_type="audio/wav")
    api.add("GET", "/api/calls/{call_id}/recording", get_control, summary="The recording of a live call",
            roles=CONTROL, response=LiveRecording, tags=tags)
    api.add("POST", "/api/calls/{call_id}/recording", post_control,
            summary="Start, stop, pause or resume the recording of a live call",
            description="Pause before a card number is given (PCI DSS): the paused stretch holds silence only. "
                        "Agents on their own calls, supervisors on their team's, admins on any.",
            roles=CONTROL, body=ControlBody, response=LiveRecording, tags=tags)
    qa_tags = ("quality",)
    api.add("GET", "/api/qa/form", get_form, summary="The scoring form (criteria, weights) and the sampled share",
            roles=QA_READ, response=QaForm, tags=qa_tags)
    api.add("POST", "/api/qa/sample", post_sample, summary="Sample each agent's new recordings for review, now",
            roles=QA, response=SampleReply, tags=qa_tags)
    api.add("GET", "/api/qa/reviews", list_reviews, summary="The review list", roles=QA, query=ReviewQuery,
            response=ReviewList, tags=qa_tags)
    api.add("POST", "/api/qa/reviews/{review_id:[0-9]+}/score", post_score, summary="Score a review",
            description="Every criterion of the form, 0..max points; 422 invalid_score names each problem.",
            roles=QA, body=ScoreBody, response=ReviewItem, tags=qa_tags)
    api.add("GET", "/api/qa/agents", agent_scores, summary="Review scores per agent",
            description="Agents see their own, supervisors their team's, QA and admins everyone's.",
            roles=EVERYONE, response=AgentScores, tags=qa_tags)

