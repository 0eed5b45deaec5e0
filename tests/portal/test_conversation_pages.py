"""The conversation list and inspector, through the Django test client, on conversations
stored the way the gateway stores them (gateway.context.state: create, append, save_assembly).

alice owns tenant A (victor is a viewer there); mallory owns tenant B; eve belongs to none.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from gateway.context import state
from gateway.models import ContextChunk, ContextDocument, Conversation, ConversationItem
from gateway.schemas import Message, TextPart, ToolCall
from portal import selectors_conversations as selectors
from portal import services
from portal.models import Membership, Role

pytestmark = pytest.mark.django_db


def _user(name):
    return get_user_model().objects.create_user(name, f"{name}@example.com")


def _as(user):
    return services.Actor(user, "127.0.0.1")


def say(role, text):
    return Message(role, (TextPart(text),))


@pytest.fixture
def w():
    alice, victor, mallory, eve = (_user(n) for n in ("alice", "victor", "mallory", "eve"))
    a = services.tenant_create(actor=_as(alice), name="Tenant A", slug="tenant-a")
    b = services.tenant_create(actor=_as(mallory), name="Tenant B", slug="tenant-b")
    Membership.objects.create(user=victor, tenant=a, role=Role.VIEWER)
    return {"alice": alice, "victor": victor, "mallory": mallory, "eve": eve, "a": a, "b": b}


def tokens(conversation, seqs):
    rows = ConversationItem.objects.filter(conversation=conversation, seq__in=list(seqs))
    return sum(rows.values_list("tokens", flat=True))


@pytest.fixture
def trip(w):
    """Tenant A's conversation: 20 items it was created with (0–19), a pinned item (20), then
    two turns. Turn 1 (21–22) sent everything; turn 2 (23–24) kept items 12–22, with a summary
    of 0–11 and two retrieved passages (one from item 5, one from a document)."""
    opening = tuple(
        say("user" if n % 2 == 0 else "assistant", f"Opening message number {n} about Lisbon.")
        for n in range(20)
    )
    conv = state.create(
        w["a"].pk, None, "summarize+retrieve", metadata={"topic": "trip"}, items=opening
    )
    state.append(conv.pk, (say("user", "Always answer in French."),), pinned=True)

    # Turn 1: nothing left out.
    state.append(conv.pk, (say("user", "Which hotels <b>near</b> Alfama?"),), "resp_1")
    state.append(
        conv.pk,
        (
            Message(
                "assistant", tool_calls=(ToolCall("call_1", "find_hotels", '{"area": "Alfama"}'),)
            ),
        ),
        "resp_1",
    )
    input_1 = tokens(conv, [21])
    blocks_1 = [
        {"kind": "instructions", "tokens": 12},
        {"kind": "pinned", "tokens": tokens(conv, [20]), "seqs": [20]},
        {"kind": "history", "tokens": tokens(conv, range(20)), "seqs": list(range(20))},
        {"kind": "input", "tokens": input_1, "seqs": [21]},
    ]
    total_1 = sum(b["tokens"] for b in blocks_1) + 3
    state.save_assembly(
        conv.pk,
        request_id="req_1",
        first_new_seq=21,
        model="demo-chat",
        budget=8000,
        blocks=blocks_1,
        total_tokens=total_1,
        tokens_without_strategy=total_1,
    )

    # Turn 2: the window moved to 12; a summary and retrieved passages stand for 0–11.
    state.append(
        conv.pk,
        (Message("tool", (TextPart("Hotel Memmo Alfama, 4 stars"),), tool_call_id="call_1"),),
        "resp_2",
    )
    state.append(conv.pk, (say("assistant", "Je recommande le Memmo Alfama."),), "resp_2")
    doc = ContextDocument.objects.create(
        tenant_id=w["a"].pk, conversation=conv, public_id="doc_guide", title="Lisbon guide",
        text="Trams run until midnight.",
    )  # fmt: skip
    from_item = ContextChunk.objects.create(
        tenant_id=w["a"].pk, conversation=conv, item_seq=5, text="Opening message number 5",
        tokens=9, vector=b"", embedding_model="test",
    )  # fmt: skip
    from_doc = ContextChunk.objects.create(
        tenant_id=w["a"].pk, conversation=conv, document=doc, text="Trams run until midnight.",
        tokens=7, vector=b"", embedding_model="test",
    )  # fmt: skip
    summary = "The user plans a trip to Lisbon in May and asked about the opening items."
    history_2 = tokens(conv, range(12, 23))
    blocks_2 = [
        {"kind": "instructions", "tokens": 12},
        {"kind": "summary", "tokens": 21, "text": summary},
        {"kind": "retrieved", "tokens": 16, "chunks": [
            {"chunk": from_item.pk, "score": 0.8312, "tokens": 9, "text": from_item.text},
            {"chunk": from_doc.pk, "score": 0.5, "tokens": 7, "text": from_doc.text},
        ]},
        {"kind": "pinned", "tokens": tokens(conv, [20]), "seqs": [20]},
        {"kind": "history", "tokens": history_2, "seqs": list(range(12, 23))},
        {"kind": "input", "tokens": tokens(conv, [23]), "seqs": [23]},
    ]  # fmt: skip
    total_2 = sum(b["tokens"] for b in blocks_2) + 3
    without_2 = 12 + tokens(conv, range(24)) + 3
    state.save_assembly(
        conv.pk,
        request_id="req_2",
        first_new_seq=23,
        model="demo-chat",
        budget=400,
        blocks=blocks_2,
        total_tokens=total_2,
        tokens_without_strategy=without_2,
    )
    conv.refresh_from_db()
    return {
        "conv": conv,
        "summary": summary,
        "total_1": total_1,
        "total_2": total_2,
        "without_2": without_2,
        "history_2": history_2,
    }


def login(client, user):
    client.force_login(user)
    return client


def url(name, *args):
    return reverse(f"portal:{name}", args=args)


def get(client, name, *args, **query):
    response = client.get(url(name, *args), query)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def text(html):
    """The page's words, tags dropped and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def section(html, turn):
    return html.split(f'id="turn-{turn}"')[1].split("</section>")[0]


# --- the list -----------------------------------------------------------------------------


def test_the_list_shows_the_tenants_conversations_only(client, w, trip):
    other = state.create(w["b"].pk, None, "truncate", items=(say("user", "B secret"),))
    gone = state.create(w["a"].pk, None, "truncate")
    Conversation.objects.filter(pk=gone.pk).update(expires_at=timezone.now() - timedelta(hours=1))

    html = get(login(client, w["victor"]), "conversations", "tenant-a")
    conv = trip["conv"]
    row = html.split(f'id="{conv.public_id}"')[1].split("</tr>")[0]
    assert url("conversation", "tenant-a", conv.public_id) in row
    cells = text(row)
    assert "summarize+retrieve" in cells
    assert re.search(r"<td>25</td>\s*<td>2</td>", row)  # items, turns
    assert f'datetime="{conv.expires_at:%Y-%m-%dT%H:%M:%S}' in row
    assert other.public_id not in html and gone.public_id not in html
    assert 'href="/portal/t/tenant-a/conversations/" aria-current="page">Conversations</a>' in html

    assert other.public_id in get(login(client, w["mallory"]), "conversations", "tenant-b")


def test_the_list_is_paginated_last_used_first(client, w):
    made = [state.create(w["a"].pk, None, "truncate") for _ in range(selectors.PAGE_SIZE + 1)]
    state.append(made[0].pk, (say("user", "hello again"),))  # now the last used
    c = login(client, w["alice"])
    first = get(c, "conversations", "tenant-a")
    rows = re.findall(r'<tr id="(conv_[0-9a-f]+)"', first)
    assert len(rows) == selectors.PAGE_SIZE and rows[0] == made[0].public_id
    assert "Page 1 of 2" in first and 'href="?page=2"' in first
    second = re.findall(r'<tr id="(conv_[0-9a-f]+)"', get(c, "conversations", "tenant-a", page=2))
    assert len(second) == 1 and second[0] not in rows


def test_an_empty_list_says_so(client, w):
    assert "No conversations yet" in get(login(client, w["alice"]), "conversations", "tenant-a")


# --- the inspector ------------------------------------------------------------------------


def test_the_inspector_shows_the_turns_as_sent_by_the_user(client, w, trip):
    conv = trip["conv"]
    html = get(login(client, w["victor"]), "conversation", "tenant-a", conv.public_id)
    assert conv.public_id in html and "summarize+retrieve" in html and "topic: trip" in html
    assert 'aria-current="page">Conversations</a>' in html

    before = section(html, 0)
    assert "Before the first turn" in before
    assert before.count('<tr id="item-') == 21  # 0–19, and the pinned item 20
    assert "Opening message number 7 about Lisbon." in before
    pinned = before.split('id="item-20"')[1].split("</tr>")[0]
    assert "pinned" in pinned and "Always answer in French." in pinned
    assert "pinned" not in before.split('id="item-19"')[1].split("</tr>")[0]
    tokens_20 = ConversationItem.objects.get(conversation=conv, seq=20).tokens
    assert f"<td>{tokens_20}</td>" in pinned

    one = section(html, 1)
    assert re.findall(r'<tr id="item-(\d+)"', one) == ["21", "22"]
    assert "Which hotels &lt;b&gt;near&lt;/b&gt; Alfama?" in one  # escaped
    assert "<code>find_hotels</code>" in one and "Alfama" in one and "call_1" in one

    two = section(html, 2)
    assert re.findall(r'<tr id="item-(\d+)"', two) == ["23", "24"]
    assert "Result of <code>call_1</code>" in two and "Hotel Memmo Alfama, 4 stars" in two
    assert "Je recommande le Memmo Alfama." in two


def test_the_inspector_shows_what_each_turn_sent_upstream(client, w, trip):
    conv = trip["conv"]
    html = get(login(client, w["alice"]), "conversation", "tenant-a", conv.public_id)

    one = section(html, 1)
    assert '<details class="card" id="turn-1-sent">' in one  # closed; the last turn is open
    assert '<details class="card" id="turn-2-sent" open>' in html
    words = text(one)
    assert f"Sent upstream: {trip['total_1']} tokens of a budget of 8,000" in words
    assert f"the whole conversation ({trip['total_1']} tokens)" in words
    assert 'href="#item-0">items 0–19</a>' in one and 'href="#item-20">item 20</a>' in one
    assert "Left out" not in one and "Summary used" not in one

    two = section(html, 2)
    words = text(two)
    total, without, history = trip["total_2"], trip["without_2"], trip["history_2"]
    saved = without - total
    pct = round(100 * saved / without, 1)
    assert saved > 0
    assert (
        f"Sent upstream: {total} tokens of a budget of 400 ({round(100 * total / 400, 1)} %)"
        in (words)
    )
    assert f"saved {saved} tokens ({pct} %) of {without:,}" in words
    # The items kept, as ranges, with their tokens.
    history_row = text(two.split('class="block-history"')[1].split("</tr>")[0])
    assert f"items 12–22 {history} " in history_row
    assert 'href="#item-12">items 12–22</a>' in two
    assert 'href="#item-20">item 20</a>' in two  # pinned
    assert 'href="#item-23">item 23</a>' in two  # the input
    assert "Left out: items 0–11 — covered by the summary, and searchable for retrieval." in words
    # The summary used and the passages retrieved.
    assert "Summary used (21 tokens)" in words and trip["summary"] in two
    assert "Passages retrieved (16 tokens" in words
    assert "score 0.831 · 9 tokens · from item 5" in words and 'href="#item-5"' in two
    assert "score 0.500 · 7 tokens · from the document “Lisbon guide”" in words
    assert "Trams run until midnight." in two
    # Token counts per block, the reply priming and the totals.
    for kind, tokens in (("instructions", 12), ("summary", 21), ("retrieved", 16)):
        assert f"<td>{tokens}</td>" in two.split(f'class="block-{kind}"')[1].split("</tr>")[0]
    assert "2 passages" in two
    assert "Reply priming — 3" in words
    assert f'id="turn-2-total">{total}<' in two
    assert f"Without the strategy every item, instructions and input {without:,}" in words
    assert re.search(rf'<meter id="turn-2-meter" min="0" max="400" value="{total}"', two)

    # Over both turns.
    all_saved = saved  # turn 1 saved nothing
    assert f'id="tokens-sent">{trip["total_1"] + total:,}<' in html
    assert f'id="tokens-saved">{all_saved:,}<' in html
    all_pct = round(100 * all_saved / (trip["total_1"] + without), 1)
    assert f"Tokens saved by the strategy ({all_pct} %)" in html


def test_a_turn_that_sends_more_than_the_whole_conversation_says_so(client, w):
    conv = state.create(w["a"].pk, None, "retrieve", items=(say("user", "Hi"),))
    state.save_assembly(
        conv.pk,
        request_id="r",
        first_new_seq=0,
        model="demo-chat",
        budget=None,
        blocks=[
            {
                "kind": "retrieved",
                "tokens": 30,
                "chunks": [{"chunk": 999999, "score": 0.4, "tokens": 30, "text": "x " * 300}],
            },
            {"kind": "input", "tokens": 8, "seqs": [0]},
        ],  # fmt: skip
        total_tokens=41,
        tokens_without_strategy=11,
    )
    html = get(login(client, w["alice"]), "conversation", "tenant-a", conv.public_id)
    words = text(html)
    assert "the model's window is unknown" in words
    assert "30 tokens more than the whole conversation (11)" in words
    assert 'id="tokens-saved">+30<' in html and "Tokens added by the strategy" in html
    assert "<meter" not in html and "Before the first turn" not in html
    assert "x " * 200 not in html  # an excerpt, not the whole passage
    assert "score 0.400 · 30 tokens</span>" in html  # the chunk is gone: no source


def test_items_out_of_a_truncated_window_are_dropped(client, w):
    conv = state.create(
        w["a"].pk, None, "truncate", items=tuple(say("user", f"m{n}") for n in range(4))
    )
    state.append(conv.pk, (say("user", "now"),))
    state.save_assembly(
        conv.pk,
        request_id="r",
        first_new_seq=4,
        model="demo-chat",
        budget=100,
        blocks=[
            {"kind": "history", "tokens": 10, "seqs": [1, 3]},
            {"kind": "pinned", "tokens": 5, "seqs": [2]},
            {"kind": "input", "tokens": 5, "seqs": [4]},
        ],
        total_tokens=23,
        tokens_without_strategy=28,
    )
    html = get(login(client, w["alice"]), "conversation", "tenant-a", conv.public_id)
    words = text(html)
    assert "Left out: item 0 — dropped." in words
    assert 'href="#item-1">items 1, 3</a>' in html
    assert "saved 5 tokens (17.9 %) of 28" in words
    assert "23 tokens of a budget of 100 (23.0 %)" in words


def test_ranges_and_gaps():
    spans = selectors.spans([7, 0, 1, 2, 5, 8, 2])
    assert selectors.items_label(spans) == "items 0–2, 5, 7–8"
    assert selectors.items_label(selectors.spans([4])) == "item 4"
    assert selectors.items_label(selectors._gaps(spans, 12)) == "items 3–4, 6, 9–11"
    assert selectors._gaps(selectors.spans(range(10)), 10) == []
    assert selectors.items_label(selectors._gaps([], 3)) == "items 0–2"


# --- who may see it -----------------------------------------------------------------------


def test_another_tenants_conversation_is_not_found(client, w, trip):
    conv = trip["conv"]
    c = login(client, w["mallory"])  # owns tenant B
    assert c.get(url("conversation", "tenant-a", conv.public_id)).status_code == 404
    assert c.get(url("conversation", "tenant-b", conv.public_id)).status_code == 404
    assert c.get(url("conversations", "tenant-a")).status_code == 404
    assert c.get(url("conversation", "tenant-b", "conv_nope")).status_code == 404


def test_a_non_member_and_a_stranger_cannot_see_it(client, w, trip):
    conv = trip["conv"]
    c = login(client, w["eve"])
    assert c.get(url("conversation", "tenant-a", conv.public_id)).status_code == 404
    assert c.get(url("conversations", "tenant-a")).status_code == 404
    client.logout()
    response = client.get(url("conversation", "tenant-a", conv.public_id))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_an_expired_conversation_is_not_found(client, w, trip):
    conv = trip["conv"]
    Conversation.objects.filter(pk=conv.pk).update(expires_at=timezone.now() - timedelta(days=1))
    c = login(client, w["alice"])
    assert c.get(url("conversation", "tenant-a", conv.public_id)).status_code == 404
