"""The stateful OpenAI routes: the Responses API and conversations (items and documents).

State lives in the database (gateway.context.state); the model call itself goes through the
same pipeline as a chat completion (`pipeline.serve`), with the Responses wire format.
"""

from __future__ import annotations

import time
from dataclasses import replace
from urllib.parse import parse_qs

import orjson
from asgiref.sync import sync_to_async

from gateway import auth, metadata, pipeline
from gateway.context import retrieval, state
from gateway.context import service as context
from gateway.context.messages import from_json
from gateway.errors import GatewayError, invalid
from gateway.models import ConversationItem, StoredResponse
from gateway.providers.openai import responses as wire
from gateway.providers.openai.client import render_error as openai_error
from gateway.providers.openai.responses_stream import ResponsesStreamEncoder
from gateway.schemas import ChatRequest, ChatResponse, Message, TextPart

MAX_DOCUMENT_CHARS = 2_000_000
Reply = pipeline.Reply


def _in_thread(fn):
    return sync_to_async(fn, thread_sensitive=False)


def _json(data: dict, status: int = 200) -> Reply:
    return Reply(status, body=orjson.dumps(data))


class ResponsesCodec:
    """The Responses wire for one response, in the shape `pipeline.serve` renders through.
    The answer's item id is chosen up front, so what the client sees is what is stored."""

    def __init__(self, info: wire.ResponseInfo) -> None:
        self.info = info
        self.item_id = state.new_id("msg")

    def parse_request(self, body: object) -> ChatRequest:
        return wire.parse_request(body).chat

    def render_response(self, resp: ChatResponse, public_model: str = "") -> dict:
        info = replace(self.info, completed_at=int(time.time()))
        ids = wire.item_ids(resp.choices[0].message, self.item_id) if resp.choices else None
        return wire.render_response(resp, info, output_ids=ids)

    def new_stream_encoder(self, req: ChatRequest, request_id: str, public_model: str):
        return ResponsesStreamEncoder(self.info, item_id=self.item_id)

    def render_error(self, err: GatewayError) -> dict:
        return openai_error(err)

    def passthrough(self, adapter, req, request_id, public_model):
        return None


# --- responses --------------------------------------------------------------------------


async def create_response(call: pipeline.Call) -> Reply:
    record = call.record
    principal = await auth.caller(call.headers, record)
    parsed = wire.parse_request(pipeline.decode_json(call.body))
    req = metadata.apply(call.headers, parsed.chat, record)
    instructions = (
        (Message("system", (TextPart(parsed.instructions),)),) if parsed.instructions else ()
    )
    if parsed.conversation:
        conversation = await context.find(principal, parsed.conversation)
    elif parsed.previous_response_id:
        conversation = await context.after_response(principal, parsed.previous_response_id)
    elif parsed.store:
        conversation = await context.start(principal)
    else:
        conversation = None  # stateless: nothing is kept
    info = wire.ResponseInfo(
        id=state.new_id("resp"),
        created_at=int(time.time()),
        model=req.model,
        request=parsed,
        conversation_id=parsed.conversation and conversation.public_id,
    )
    codec = ResponsesCodec(info)
    if conversation is None:
        upstream = replace(req, messages=(*instructions, *req.messages))
        return await pipeline.serve(call, principal, upstream, codec)
    turn = await context.begin(principal, conversation, req, instructions)

    async def after(resp: ChatResponse) -> None:
        first_in, first_out, upto = await context.finish(
            turn, resp, record.request_id, req.model, info.id, codec.item_id
        )
        if parsed.store:
            body = codec.render_response(resp)
            await _in_thread(state.save_response)(
                info.id, turn.conversation_id, first_in, first_out, upto, body
            )

    return await pipeline.serve(call, principal, turn.request, codec, after)


async def _stored_response(call: pipeline.Call, response_id: str) -> StoredResponse:
    principal = await auth.authenticate(call.headers)
    found = await _in_thread(state.response)(principal.tenant_id, response_id)
    if found is None:
        raise context.not_found("response", response_id, "response_id")
    return found


async def get_response(call: pipeline.Call, response_id: str) -> Reply:
    return _json((await _stored_response(call, response_id)).body)


async def delete_response(call: pipeline.Call, response_id: str) -> Reply:
    found = await _stored_response(call, response_id)
    await _in_thread(found.delete)()
    return _json(wire.render_deleted(response_id, "response"))


async def response_input_items(call: pipeline.Call, response_id: str) -> Reply:
    found = await _stored_response(call, response_id)
    rows = await _in_thread(state.item_rows)(
        found.conversation_id, found.input_from, found.output_from
    )
    return _json(_listing(rows, call))


# --- conversations ----------------------------------------------------------------------


async def create_conversation(call: pipeline.Call) -> Reply:
    principal = await auth.authenticate(call.headers)
    body = pipeline.decode_json(call.body) if call.body else {}
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    items = wire.parse_items(body["items"]) if body.get("items") else ()
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise invalid("'metadata' must be an object of strings.", "metadata")
    strategy = body.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise invalid("'strategy' must be a string such as 'summarize+retrieve'.", "strategy")
    summarizer = body.get("summarizer_model") or ""
    if not isinstance(summarizer, str):
        raise invalid("'summarizer_model' must be a model name.", "summarizer_model")
    conversation = await context.start(principal, strategy, summarizer, meta, items)
    return _json(_conversation_json(conversation))


def _conversation_json(conversation) -> dict:
    data = wire.render_conversation(
        conversation.public_id, int(conversation.created_at.timestamp()), conversation.metadata
    )
    return {**data, "strategy": conversation.strategy}


async def get_conversation(call: pipeline.Call, conversation_id: str) -> Reply:
    principal = await auth.authenticate(call.headers)
    return _json(_conversation_json(await context.find(principal, conversation_id)))


async def delete_conversation(call: pipeline.Call, conversation_id: str) -> Reply:
    principal = await auth.authenticate(call.headers)
    conversation = await context.find(principal, conversation_id)
    await _in_thread(conversation.delete)()
    return _json(wire.render_deleted(conversation_id, "conversation"))


async def conversation_items(call: pipeline.Call, conversation_id: str) -> Reply:
    principal = await auth.authenticate(call.headers)
    conversation = await context.find(principal, conversation_id)
    if call.method == "POST":
        body = pipeline.decode_json(call.body)
        if not isinstance(body, dict) or "items" not in body:
            raise invalid('Send {"items": [...]} with the items to add.', "items")
        pinned = body.get("pinned", False)
        if not isinstance(pinned, bool):
            raise invalid("'pinned' must be true or false.", "pinned")
        items = wire.parse_items(body["items"])
        added = await _in_thread(state.append)(conversation.pk, items, pinned=pinned)
        return _json(_listing(added, call, paged=False))
    rows = await _in_thread(state.item_rows)(conversation.pk)
    return _json(_listing(rows, call))


async def add_document(call: pipeline.Call, conversation_id: str | None = None) -> Reply:
    """Text or Markdown for retrieval: a conversation's own, or tenant-wide (no id)."""
    principal = await auth.authenticate(call.headers)
    conversation = await context.find(principal, conversation_id) if conversation_id else None
    body = pipeline.decode_json(call.body)
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    text, title = body.get("text"), body.get("title") or ""
    if not isinstance(text, str) or not text.strip():
        raise invalid("'text' must be the document's text or Markdown.", "text")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise invalid(f"'text' is over {MAX_DOCUMENT_CHARS} characters.", "text")
    if not isinstance(title, str) or len(title) > 300:
        raise invalid("'title' must be a string of at most 300 characters.", "title")
    document = await retrieval.add_document(
        principal.tenant_id,
        conversation.pk if conversation else None,
        state.new_id("doc"),
        title,
        text,
    )
    chunks = await _in_thread(document.chunks.count)()
    return _json(
        {"id": document.public_id, "object": "document", "title": title, "chunks": chunks,
         "conversation": conversation.public_id if conversation else None}
    )  # fmt: skip


def _listing(rows: list[ConversationItem], call: pipeline.Call, paged: bool = True) -> dict:
    query = parse_qs(call.query.decode("latin-1")) if paged else {}
    order = (query.get("order") or ["asc"])[0]
    if order not in ("asc", "desc"):
        raise invalid("'order' must be asc or desc.", "order")
    try:
        limit = int((query.get("limit") or ["100"])[0])
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise invalid("'limit' must be a whole number from 1 to 1000.", "limit")
    ordered = rows if order == "asc" else list(reversed(rows))
    after = (query.get("after") or [None])[0]
    if after:
        # One stored message may render as several items: "<id>", "<id>_1", ... (tool calls).
        stem, _, suffix = after.rpartition("_")
        row_id = stem if suffix.isdigit() and stem.count("_") >= 1 else after
        ids = [row.public_id for row in ordered]
        ordered = ordered[ids.index(row_id) + 1 :] if row_id in ids else []
    page = ordered[:limit]
    data = [item for r in page for item in wire.render_item(from_json(r.message), r.public_id)]
    return wire.render_list(data, has_more=len(ordered) > len(page))
