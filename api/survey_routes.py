"""A campaign's survey over the API: its questions with their branching (docs/dialer.md,
"Surveys and branching"), checked whenever one is saved (``dialer.survey``).

Routes::

    GET  /api/campaigns/{id}/survey     the campaign's survey (canonical form)
    PUT  /api/campaigns/{id}/survey     replace it; 422 names a bad field (a dangling
                                        reference, a cycle, a question never asked)

The survey set at creation (``POST /api/campaigns``, ``survey``) is checked the same way
(``checked_survey``).
"""
from __future__ import annotations

from typing import Annotated, Any

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.campaign_routes import MANAGERS, parser_error
from api.crm_common import StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from dialer import campaign_store
from dialer.survey import InvalidSurvey, parse_survey, survey_to_json

log = structlog.get_logger(__name__)

QID = r"^[a-z][a-z0-9_]{0,31}$"


class Question(StrictBody):
    id: str = Field(pattern=QID)
    text: str = Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")
    type: str = Field("text", pattern=r"^(text|choice|yes_no)$")
    options: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=20)
    next: str | None = Field(None, pattern=QID,
                             description="the question after this one whatever the answer ('end' ends the survey);"
                                         " absent: the following one")
    branches: dict[Annotated[str, Field(min_length=1, max_length=100)], Annotated[str, Field(pattern=QID)]] = Field(
        default_factory=dict, max_length=20,
        description="by answer (an option, yes or no), the question after this one ('end' ends the survey)")


class SurveyBody(StrictBody):
    survey: list[Question] = Field(max_length=50, description="the questions, the first asked first")


class SurveyView(BaseModel):
    campaign_id: int
    survey: list[dict[str, Any]]


def checked_survey(questions: list[Question], where: str = "body") -> list[dict]:
    """A survey checked (``dialer.survey``: no dangling reference, no cycle, every question
    reachable) and made canonical; 422 ``invalid_body`` naming the field."""
    try:
        return survey_to_json(parse_survey([q.model_dump(exclude_none=True) for q in questions]))
    except InvalidSurvey as exc:
        raise parser_error(where, exc, "invalid_survey") from None


async def get_survey(req: ApiRequest[None, None]) -> SurveyView:
    cid = int(req.match_info["campaign_id"])
    survey = await query(campaign_store.get_survey(db(req.app), cid))
    if survey is None:
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    return SurveyView(campaign_id=cid, survey=survey)


async def put_survey(req: ApiRequest[SurveyBody, None]) -> SurveyView:
    cid = int(req.match_info["campaign_id"])
    survey = checked_survey(req.body.survey)
    if not await query(campaign_store.set_survey(db(req.app), cid, survey)):
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    log.info("campaign survey set", campaign_id=cid, questions=len(survey), actor=actor_of(req))
    return SurveyView(campaign_id=cid, survey=survey)


def setup_survey_routes(app: web.Application) -> None:
    """The survey routes. After ``setup_auth``."""
    api = setup_registry(app)
    tags = ("campaigns",)
    api.add("GET", "/api/campaigns/{campaign_id:[0-9]+}/survey", get_survey,
            summary="A campaign's survey, with its branching", roles=MANAGERS, response=SurveyView, tags=tags)
    api.add("PUT", "/api/campaigns/{campaign_id:[0-9]+}/survey", put_survey,
            summary="Replace a campaign's survey (checked: no dangling reference, no cycle, no question never asked)",
            roles=MANAGERS, body=SurveyBody, response=SurveyView, tags=tags,
            description="A bad field is refused with 422 invalid_body naming it (body.survey.2.branches.no); "
                        "nothing is written. Agents see it on their next lead card. The results export has a "
                        "column per question of the survey in force.")
