"""Who and what a request belongs to: end user, session, trace and tags, from the headers
(`x-waystation-user`, `-session`, `-trace-id`, `-tags`) or the body (`user`, `metadata`).

They go into the usage event and the logs, and to the upstream where its API has a field.

Precedence: the body first, the headers fill what it lacks. The end user is the body's `user`
(on the Anthropic route `metadata.user_id`, parsed into `req.user`), else `metadata.user_id`
(OpenAI route), else `x-waystation-user`; whichever it is goes upstream as the provider's own
field (OpenAI `user`, Anthropic `metadata.user_id`; Gemini has none). Session and trace id:
`metadata.session_id` / `metadata.trace_id`, else the header. Tags are the union of
`metadata.tags` and `x-waystation-tags` (both comma-separated), as routing rules see them.
Only OpenAI-route bodies carry these `metadata` keys: Anthropic's `metadata` has `user_id` alone.

Every value is checked the same way wherever it came from, and a bad one is a 400 that names
where it was: at most 256 printable characters; at most 20 tags of at most 64 characters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from gateway.errors import GatewayError
from gateway.schemas import ChatRequest, EmbeddingRequest
from gateway.usage import UsageRecord

USER_HEADER = "x-waystation-user"
SESSION_HEADER = "x-waystation-session"
TRACE_HEADER = "x-waystation-trace-id"
TAGS_HEADER = "x-waystation-tags"

MAX_VALUE_CHARS = 256  # the usage event's columns are this wide
MAX_TAGS = 20
MAX_TAG_CHARS = 64

R = TypeVar("R", ChatRequest, EmbeddingRequest)


@dataclass(frozen=True, slots=True)
class Metadata:
    user: str | None = None
    session_id: str | None = None
    trace_id: str | None = None
    tags: tuple[str, ...] = ()


def apply(headers: dict[bytes, bytes], req: R, record: UsageRecord) -> R:
    """Record the request's metadata; returns the request with what the upstream should see.

    Raises GatewayError (400) before anything is recorded if a value is malformed. Works for
    an embeddings request too (its only field is `user`).
    """
    meta = read(headers, req, anthropic=record.route == "messages")
    record.end_user = meta.user or ""
    record.session_id = meta.session_id or ""
    record.trace_id = meta.trace_id or ""
    record.tags = list(meta.tags)
    if meta.user != req.user:
        return replace(req, user=meta.user)
    return req


def read(
    headers: dict[bytes, bytes], req: ChatRequest | EmbeddingRequest, *, anthropic: bool
) -> Metadata:
    """The request's metadata, validated; see the module docstring for the precedence."""
    body: dict[str, str] = getattr(req, "metadata", None) or {}
    user = _value(req.user, "metadata.user_id" if anthropic else "user")
    if user is None:
        user = _value(body.get("user_id"), "metadata.user_id")
    if user is None:
        user = _value(_header(headers, USER_HEADER), USER_HEADER)
    session = _value(body.get("session_id"), "metadata.session_id")
    if session is None:
        session = _value(_header(headers, SESSION_HEADER), SESSION_HEADER)
    trace = _value(body.get("trace_id"), "metadata.trace_id")
    if trace is None:
        trace = _value(_header(headers, TRACE_HEADER), TRACE_HEADER)
    tags = _tags(_header(headers, TAGS_HEADER), TAGS_HEADER)
    tags += _tags(body.get("tags"), "metadata.tags")
    unique = tuple(dict.fromkeys(tags))
    if len(unique) > MAX_TAGS:
        where = TAGS_HEADER if TAGS_HEADER.encode() in headers else "metadata.tags"
        raise _invalid(
            f"'{where}': {len(unique)} distinct tags (header and metadata.tags together); "
            f"at most {MAX_TAGS} are allowed.",
            where,
        )
    return Metadata(user, session, trace, unique)


def _header(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(name.encode())
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise _invalid(f"'{name}' must be UTF-8 text.", name) from None


def _value(value: str | None, where: str) -> str | None:
    """A stripped, checked value; None when absent or blank."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_VALUE_CHARS:
        raise _invalid(
            f"'{where}' is {len(value)} characters long; at most {MAX_VALUE_CHARS} are allowed.",
            where,
        )
    if not value.isprintable():
        raise _invalid(f"'{where}' must contain only printable characters.", where)
    return value


def _tags(value: str | None, where: str) -> list[str]:
    if value is None:
        return []
    tags = [tag.strip() for tag in value.split(",")]
    tags = [tag for tag in tags if tag]
    for tag in tags:
        if len(tag) > MAX_TAG_CHARS:
            raise _invalid(
                f"'{where}': the tag '{tag[:20]}...' is {len(tag)} characters long; "
                f"at most {MAX_TAG_CHARS} are allowed.",
                where,
            )
        if not tag.isprintable():
            raise _invalid(f"'{where}': tags must contain only printable characters.", where)
    if len(set(tags)) > MAX_TAGS:
        raise _invalid(
            f"'{where}' has {len(set(tags))} tags; at most {MAX_TAGS} are allowed.", where
        )
    return tags


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)
