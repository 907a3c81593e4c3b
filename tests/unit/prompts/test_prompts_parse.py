"""Parsing LLM replies: the prompt is found behind typical chat noise; everything else is a
counted reason, never an exception."""

import pytest

from squeeze3d.prompts.parse import PARSE_REASONS, mentions, normalize, parse_reply

GOOD = "A rustic oak chair with a high backrest."


@pytest.mark.parametrize("reply", [
    "A rustic oak chair with a high backrest",
    'Sure! Here is a prompt:\n\n1. "A rustic oak chair with a high backrest."',
    "**Prompt:** A rustic oak chair with a high backrest.<|eot_id|>",
    "  - `a rustic oak chair with a high backrest`  \n\nI hope this helps!",
    "Here you go:\n* A rustic oak chair   with a high backrest!",
    "Prompt 1: A rustic oak chair with a high backrest.\nPrompt 2: A brass lamp with a conical shade.",
])
def test_prompt_found_behind_chat_noise(reply):
    assert parse_reply(reply).prompt == GOOD


@pytest.mark.parametrize("reply, reason", [
    (None, "empty"), ("", "empty"), ("   \n<|eot_id|>", "empty"),
    ("I'm sorry, but I can't help with that.", "refusal"),
    ("Here is your prompt:", "no_candidate"),
    ("chair", "too_short"), ("oak chair", "too_short"),
    ("a " + "very " * 60 + "long chair", "too_long"),
    ("%%%% ### 1234 5678 !!!! @@@", "garbled"),
    ("ĠchĠairĠĠ 0x3f 0x2e ### ===", "garbled"),
    ("x y z q", "garbled"),
    ("Nut\ufffd\ufffd ornate row bo pol matte talist model", "garbled"),
    ("A modern chair \x19 made of oak", "garbled"),
])
def test_unparseable_replies_give_a_reason(reply, reason):
    res = parse_reply(reply)
    assert res.prompt is None and res.reason == reason and reason in PARSE_REASONS


def test_random_bytes_never_raise():
    import random

    rng = random.Random(0)
    for _ in range(300):
        text = "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(0, 80)))
        res = parse_reply(text)
        assert (res.prompt is None) != (res.reason is None)


def test_normalize_and_mentions():
    assert normalize("A Rustic,  oak CHAIR!") == normalize("the rustic oak chair") == "rustic oak chair"
    assert mentions("Two oak benches.", "bench") and mentions("A car.", "car")
    assert not mentions("A carpet made of wool.", "car")
