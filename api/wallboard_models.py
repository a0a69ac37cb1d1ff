"""Request and reply models of the wallboard's routes: the board, supervisors'
live actions (``api.wallboard_routes``), the interval reports and the staffing
plan (``api.report_routes``)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.registry import Day


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpyBody(Strict):
    mode: Literal["listen", "whisper", "barge"]


class AgentActionBody(Strict):
    action: Literal["not_ready", "logout"]
    reason: str = Field("supervisor", max_length=64, pattern=r"^[A-Za-z0-9 _.-]*$")


class MoveBody(Strict):
    queue: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
    priority: int | None = Field(None, ge=-1000, le=1000)

    @model_validator(mode="after")
    def _something(self) -> "MoveBody":
        if self.queue is None and self.priority is None:
            raise ValueError("give queue, priority or both")
        return self


class CallbackBody(Strict):
    call_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@+-]+$")
    number: str | None = Field(None, pattern=r"^\+?[0-9]{3,20}$", description="default: the caller's number")


class ActionReply(BaseModel):
    id: int | None
    action: str
    result: str
    detail: str = ""


class ActionItem(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    agent_id: str | None
    call_id: str | None
    details: dict[str, Any]
    result: str
    error: str | None


class ActionList(BaseModel):
    actions: list[ActionItem]


class ActionsQuery(Strict):
    limit: int = Field(100, ge=1, le=1000)


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    at: float


class ReportQuery(Strict):
    start: Day = Field(description="first local day")
    end: Day = Field(description="last local day (included)")
    granularity: Literal["15min", "30min", "60min", "day", "week"] = "60min"
    queue: str | None = Field(None, max_length=64)
    agent: str | None = Field(None, max_length=64)
    format: Literal["json", "csv"] = "json"

    @model_validator(mode="after")
    def _range(self) -> "ReportQuery":
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).days > 400:
            raise ValueError("at most 400 days at a time")
        return self


class ReportReply(BaseModel):
    granularity: str
    timezone: str
    intervals: dict[str, int] = Field(description="15-minute intervals read from rollups and from the calls")
    rows: list[dict[str, Any]]


class TimelineQuery(Strict):
    day: Day


class TimelineReply(BaseModel):
    agent_id: str
    day: date
    spans: list[dict[str, Any]]


class StaffingQuery(Strict):
    day: Day
    queue: str = Field(max_length=64)
    granularity: Literal["15min", "30min", "60min"] = "30min"
    weeks: int = Field(4, ge=1, le=12)
    shrinkage: float = Field(0.3, ge=0, lt=1)
    patience_s: float | None = Field(None, gt=0, le=3600)


class StaffingReply(BaseModel):
    queue: str
    day: date
    policy: str
    rows: list[dict[str, Any]]


class ChannelReportQuery(Strict):
    start: Day = Field(description="first local day")
    end: Day = Field(description="last local day (included)")
    granularity: Literal["15min", "30min", "60min", "day", "week"] | None = Field(
        None, description="per interval (by arrival) when given; else the range's totals")
    format: Literal["json", "csv"] = "json"

    @model_validator(mode="after")
    def _range(self) -> "ChannelReportQuery":
        if self.end >= date.max:
            raise ValueError("end: a day before 9999-12-31")
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).days > 62:
            raise ValueError("at most 62 days at a time (the report reads every contact)")
        return self


class ChannelReportReply(BaseModel):
    timezone: str
    start: date
    end: date
    granularity: str | None = None
    rows: list[dict[str, Any]] = Field(description="one per channel: voice, chat, email, message "
                                                   "(omni.channel_report.CHANNEL_COLUMNS), per interval "
                                                   "(start, local_start) with a granularity")
