"""POST /api/v1/feedback: a caller scores one of its requests (an A/B arm's quality signal).

The score is kept under the caller's tenant; experiment metrics join it to that tenant's usage
events only, so nobody can score another tenant's calls. Nothing is read on this path.
"""

from __future__ import annotations

import math

import orjson
from asgiref.sync import sync_to_async

from gateway import auth
from gateway.errors import invalid
from gateway.pipeline import Call, Reply, decode_json

MAX_COMMENT = 2000


async def post_feedback(call: Call) -> Reply:
    principal = await auth.authenticate(call.headers)
    body = decode_json(call.body)
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object with request_id and score.")
    request_id, score = body.get("request_id"), body.get("score")
    comment = body.get("comment") or ""
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
        raise invalid("'request_id' must be the x-request-id of one of your calls.", "request_id")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise invalid("'score' must be a number from 0 (bad) to 1 (good).", "score")
    if not 0 <= score <= 1:
        raise invalid("'score' must be between 0 and 1.", "score")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise invalid(f"'comment' must be text of at most {MAX_COMMENT} characters.", "comment")
    await sync_to_async(_save, thread_sensitive=False)(
        principal.tenant_id, principal.key_id, request_id, float(score), comment
    )
    answer = {"request_id": request_id, "score": score, "status": "recorded"}
    return Reply(201, [], orjson.dumps(answer))


def _save(tenant_id: int, key_id: int, request_id: str, score: float, comment: str) -> None:
    from prompts.models import Feedback

    Feedback.objects.update_or_create(
        tenant_id=tenant_id, request_id=request_id,
        defaults={"score": score, "comment": comment, "api_key_id": key_id},
    )  # fmt: skip
