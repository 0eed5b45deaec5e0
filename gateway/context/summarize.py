"""The rolling summary: evicted turns folded into it by a summariser model called through the
gateway itself (routing, retries and billing included), extended each time the window moves,
never rewritten from the whole conversation."""

from __future__ import annotations

import uuid

from billing.pricing import cost_of
from gateway import catalog, router, tokens
from gateway.context.assemble import Item
from gateway.errors import GatewayError
from gateway.schemas import ChatRequest, Message, TextPart, Usage
from gateway.usage import UsageRecord
from gateway.usage import emit as emit_usage

INSTRUCTIONS = (
    "You maintain the running summary of a conversation between a user and an assistant. "
    "Rewrite the summary so far to also cover the new turns. Keep every fact, name, number, "
    "decision and open question that later turns may need; drop pleasantries. Write plain "
    "prose, third person, as short as the facts allow."
)


def transcript(items: list[Item]) -> str:
    lines = []
    for item in items:
        text = item.message.text
        for call in item.message.tool_calls:
            text += f" [calls {call.name}({call.arguments})]"
        lines.append(f"{item.message.role}: {text}")
    return "\n".join(lines)


async def extend(
    principal, model: str, summary: str, evicted: list[Item], allowance: int
) -> tuple[str, int]:
    """The new summary and its tokens, at most `allowance`."""
    entry = await catalog.resolve(model, principal.may_use(model), mode="chat")
    prompt = f"Summary so far:\n{summary or '(none yet)'}\n\nNew turns:\n{transcript(evicted)}"
    req = ChatRequest(
        model=model,
        messages=(
            Message("system", (TextPart(INSTRUCTIONS),)),
            Message("user", (TextPart(prompt),)),
        ),
        max_tokens=allowance,
        temperature=0,
    )
    record = UsageRecord.begin(f"summary-{uuid.uuid4().hex}", "context.summary")
    record.tenant_id, record.api_key_id, record.public_model = (
        principal.tenant_id,
        principal.key_id,
        model,
    )
    try:
        resp, target = await router.complete(entry, req, record.attempts)
    except GatewayError as err:
        record.status, record.error_type = err.status, err.kind
        emit_usage(record)
        raise
    record.provider, record.upstream_model = target.provider, resp.model
    usage = resp.usage
    if usage.input_tokens is None or usage.output_tokens is None:
        text = resp.choices[0].message.text if resp.choices else ""
        usage = Usage(tokens.count_prompt_tokens(req), tokens.count_text_tokens(text))
    record.set_usage(usage)
    record.cost = cost_of(usage, target.price)
    emit_usage(record)
    text = resp.choices[0].message.text.strip() if resp.choices else ""
    return clip(text, allowance)


def clip(text: str, allowance: int) -> tuple[str, int]:
    """The summary must fit its allowance whatever the summariser wrote."""
    encoding = tokens.encoding()
    ids = encoding.encode(text, disallowed_special=())
    if len(ids) > allowance - 3:
        ids = ids[: max(allowance - 3, 0)]
        text = encoding.decode(ids)
    return text, len(ids) + 3
