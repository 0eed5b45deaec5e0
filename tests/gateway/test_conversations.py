"""Server-side conversations through the real gateway: each context strategy keeps a long
conversation within the model's window, summaries grow incrementally, retrieval finds an old
fact, and the Responses API works with the official SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway import tokens
from tests.fakes.control import Reply
from tests.gateway.helpers import another_gateway, apply_yaml, new_key

WINDOW, RESERVE = 600, 100
BUDGET = WINDOW - RESERVE
CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{url}", api_key: "{key}"}}
    models:
      - name: small
        context_window: {window}
        output_reservation: {reserve}
        deployments: [{{provider: oai, model: small-up}}]
        cache: off
      - name: summarizer
        deployments: [{{provider: oai, model: sum-up}}]
        cache: off
"""
FILLER = (
    "Here is turn {n} of our planning chat: we compared venues, prices, dates and the "
    "catering menu options in some detail, then moved on to the next point on the list."
)


@pytest.fixture
def key(gateway, openai_fake) -> str:
    from gateway import catalog

    apply_yaml(
        CONFIG.format(url=openai_fake.base_url, key=openai_fake.api_key, window=WINDOW,
                      reserve=RESERVE)
    )  # fmt: skip
    catalog.invalidate()
    return new_key()


def gw(gateway_or_url, key: str) -> openai.OpenAI:
    base = gateway_or_url if isinstance(gateway_or_url, str) else gateway_or_url.base_url
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


def new_conversation(base: str, key: str, **body) -> str:
    reply = httpx.post(
        base + "/v1/conversations", json=body, headers={"authorization": f"Bearer {key}"}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def turn(client: openai.OpenAI, conversation: str, text: str, system: str | None = None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    answer = client.chat.completions.create(
        model="small", messages=messages, extra_body={"conversation": conversation}
    )
    return answer.choices[0].message.content


def sent_tokens(request) -> int:
    """What the gateway sent upstream, counted as the gateway counts a prompt."""
    total = 3
    for message in request.json["messages"]:
        content = message.get("content") or ""
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        total += 3 + tokens.count_text_tokens(text)
    return total


def upstream_chats(fake, model: str = "small-up") -> list:
    return [r for r in fake.requests if r.path.endswith("/chat/completions")
            and r.json.get("model") == model]  # fmt: skip


def run_long_conversation(gateway, key, fake, strategy: str, turns: int = 50) -> str:
    conversation = new_conversation(gateway.base_url, key, strategy=strategy,
                                    summarizer_model="summarizer")  # fmt: skip
    client = gw(gateway, key)
    for n in range(turns):
        turn(client, conversation, FILLER.format(n=n), system="You plan events.")
    return conversation


@pytest.mark.parametrize("strategy", ["truncate", "summarize", "retrieve", "summarize+retrieve"])
def test_a_conversation_five_times_the_window_stays_within_it(gateway, openai_fake, key, strategy):
    run_long_conversation(gateway, key, openai_fake, strategy)

    sent = upstream_chats(openai_fake)
    whole = sum(sent_tokens(r) for r in sent[-1:])
    assert len(sent) == 50
    # The conversation grew far past the window ...
    assert tokens.count_text_tokens(FILLER.format(n=10)) * 2 * 50 > 5 * WINDOW
    # ... and no turn sent more than the budget; the instructions always went first.
    assert max(sent_tokens(r) for r in sent) <= BUDGET
    assert all(r.json["messages"][0]["content"].startswith("You plan events.") for r in sent)
    assert whole <= BUDGET and "turn 49" in sent[-1].json["messages"][-1]["content"]
    assert not any("turn 0 " in str(m) for m in sent[-1].json["messages"])  # out of the window


def test_the_summary_grows_incrementally(gateway, openai_fake, key):
    run_long_conversation(gateway, key, openai_fake, "summarize")

    calls = upstream_chats(openai_fake, "sum-up")
    # Once per move of the window, not once per turn, and never the whole conversation again.
    assert 2 <= len(calls) < 50 / 2
    for call in calls:
        prompt = call.json["messages"][-1]["content"]
        assert prompt.count("turn ") < 20
    later = [r for r in upstream_chats(openai_fake) if "Summary of the earlier" in str(r.json)]
    assert later, "turns after the first move carry the summary"
    # The previous summary is handed to the next call: extended, not recomputed.
    assert "Summary so far:\n(none yet)" in calls[0].json["messages"][-1]["content"]
    second = calls[1].json["messages"][-1]["content"]
    assert not second.startswith("Summary so far:\n(none yet)")
    assert second.startswith("Summary so far:\necho: Summary so far")  # the first summary


def test_retrieval_brings_back_a_fact_planted_40_turns_earlier(gateway, openai_fake, key):
    conversation = new_conversation(gateway.base_url, key, strategy="retrieve")
    client = gw(gateway, key)
    turn(client, conversation, "Please remember this: my locker code at the gym is 4812.")
    for n in range(40):
        turn(client, conversation, FILLER.format(n=n))
    turn(client, conversation, "What is my locker code at the gym?")

    last = upstream_chats(openai_fake)[-1].json["messages"]
    assert "4812" in last[0]["content"] and "<retrieved_context>" in last[0]["content"]
    assert not any("4812" in str(m["content"]) for m in last[1:])  # not via the window
    assert sent_tokens(upstream_chats(openai_fake)[-1]) <= BUDGET


def test_documents_attached_to_a_conversation_are_retrieved(gateway, openai_fake, key):
    conversation = new_conversation(gateway.base_url, key, strategy="retrieve")
    handbook = (
        "# Travel policy\n\nEconomy class is required for flights under six hours. "
        "Hotel nights are reimbursed up to 180 euros in Paris.\n\n# Equipment\n\n"
        "Every engineer may order one monitor per year."
    )
    reply = httpx.post(
        f"{gateway.base_url}/v1/conversations/{conversation}/documents",
        json={"title": "Handbook", "text": handbook},
        headers={"authorization": f"Bearer {key}"},
    )
    assert reply.status_code == 200 and reply.json()["chunks"] >= 1
    turn(gw(gateway, key), conversation, "How much is a hotel night in Paris reimbursed?")
    assert "180 euros" in upstream_chats(openai_fake)[-1].json["messages"][0]["content"]


def test_a_turn_that_cannot_fit_is_refused_before_any_upstream_cost(gateway, openai_fake, key):
    conversation = new_conversation(gateway.base_url, key)
    with pytest.raises(openai.BadRequestError) as caught:
        turn(gw(gateway, key), conversation, "word " * 3000)
    assert caught.value.code == "context_length_exceeded"
    assert openai_fake.requests == []


def test_two_gateway_processes_continue_one_conversation(gateway, openai_fake, key):
    conversation = new_conversation(gateway.base_url, key)
    with another_gateway() as other:
        for n in range(6):
            base = other if n % 2 else gateway.base_url
            turn(gw(base, key), conversation, f"Message number {n}.")
    items = httpx.get(
        f"{gateway.base_url}/v1/conversations/{conversation}/items",
        headers={"authorization": f"Bearer {key}"},
    ).json()["data"]
    texts = [i["content"][0]["text"] for i in items if i["role"] == "user"]
    assert texts == [f"Message number {n}." for n in range(6)]
    last = upstream_chats(openai_fake)[-1].json["messages"]
    assert [m["content"] for m in last if m["role"] == "user"][:5] == texts[:5]


def test_another_tenants_conversation_is_not_found(gateway, openai_fake, key):
    conversation = new_conversation(gateway.base_url, key)
    stranger = new_key(tenant="globex")
    with pytest.raises(openai.NotFoundError):
        turn(gw(gateway, stranger), conversation, "hello")
    reply = httpx.get(
        f"{gateway.base_url}/v1/conversations/{conversation}",
        headers={"authorization": f"Bearer {stranger}"},
    )
    assert reply.status_code == 404


def test_responses_with_previous_response_id_through_the_sdk(gateway, openai_fake, key):
    client = gw(gateway, key)
    openai_fake.script(Reply(text="Nice to meet you, Ada."), Reply(text="Your name is Ada."))
    first = client.responses.create(model="small", input="My name is Ada.", instructions="Be kind.")
    second = client.responses.create(
        model="small", input="What is my name?", previous_response_id=first.id
    )

    assert first.output_text == "Nice to meet you, Ada."
    assert second.output_text == "Your name is Ada."
    sent = upstream_chats(openai_fake)[-1].json["messages"]
    assert [m["content"] for m in sent] == [
        "My name is Ada.", "Nice to meet you, Ada.", "What is my name?"
    ] or [m["content"] for m in sent][1:] == [
        "My name is Ada.", "Nice to meet you, Ada.", "What is my name?"
    ]  # fmt: skip
    assert client.responses.retrieve(second.id).output_text == "Your name is Ada."
    items = client.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["What is my name?"]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_responses_stream_through_the_sdk(gateway, openai_fake, key):
    client = gw(gateway, key)
    openai_fake.script(Reply(text="one two three four"))
    with client.responses.stream(model="small", input="Count to four.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "one two three four" == final.output_text
    follow = client.responses.create(
        model="small", input="And then?", previous_response_id=final.id
    )
    assert "Count to four." in str(upstream_chats(openai_fake)[-1].json["messages"])
    assert follow.previous_response_id == final.id


def test_a_response_names_a_conversation(gateway, openai_fake, key):
    client = gw(gateway, key)
    conversation = client.conversations.create(
        items=[{"role": "user", "content": "The project is called Falcon."}]
    )
    client.responses.create(model="small", input="What is the project called?",
                            conversation=conversation.id)  # fmt: skip
    sent = str(upstream_chats(openai_fake)[-1].json["messages"])
    assert "Falcon" in sent
    items = client.conversations.items.list(conversation.id)
    assert len(items.data) == 3  # the seeded item, the question, the answer


def test_expired_conversations_are_purged(gateway, openai_fake, key):
    from datetime import timedelta

    from django.utils import timezone

    from gateway.models import Conversation
    from gateway.tasks import purge_expired_conversations

    keep = new_conversation(gateway.base_url, key)
    old = new_conversation(gateway.base_url, key)
    Conversation.objects.filter(public_id=old).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert purge_expired_conversations() >= 1
    assert set(Conversation.objects.values_list("public_id", flat=True)) == {keep}


def test_pinned_items_are_always_sent(gateway, openai_fake, key):
    conversation = new_conversation(gateway.base_url, key)
    reply = httpx.post(
        f"{gateway.base_url}/v1/conversations/{conversation}/items",
        json={"items": [{"role": "user", "content": "House rule: always answer in French."}],
              "pinned": True},
        headers={"authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    client = gw(gateway, key)
    for n in range(30):
        turn(client, conversation, FILLER.format(n=n))
    last = upstream_chats(openai_fake)[-1]
    assert "House rule" in str(last.json["messages"]) and sent_tokens(last) <= BUDGET
    assert "turn 0 " not in str(last.json["messages"])  # while old turns went
