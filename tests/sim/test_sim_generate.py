"""Seeded generation: token counts, limits, determinism, accuracy and profile loading."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from anthropic import AsyncAnthropic
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI

from harness.answerkey import AnswerKey, KeyEntry
from harness.sim import SimServer, default_sim_models, load_profiles
from harness.sim.generate import infer_format, plan_output, prompt_tokens, text_tokens
from harness.types import Message, input_tokens_upper_bound

PROFILES = load_profiles()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["system", "user", "assistant"]), st.text(max_size=400)),
        min_size=1,
        max_size=6,
    )
)
def test_prompt_tokens_never_exceed_the_reservation_bound(msgs: list[tuple[str, str]]) -> None:
    messages = tuple(Message(role, text) for role, text in msgs)  # type: ignore[arg-type]
    assert prompt_tokens([m.content for m in messages]) <= input_tokens_upper_bound(messages)


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(sorted(PROFILES)),
    limit=st.integers(min_value=1, max_value=20000),
    seed=st.integers(0, 2**32),
    fmt=st.sampled_from(["letter", "boxed", "text"]),
)
def test_output_never_exceeds_the_limit_and_text_matches_tokens(
    model: str, limit: int, seed: int, fmt: str
) -> None:
    p = PROFILES[model]
    key = AnswerKey()
    key.add("q", KeyEntry("C" if fmt == "letter" else "π/2", fmt, ("A", "B", "C", "D")))  # type: ignore[arg-type]
    reasoning_on = p.reasoning or p.thinking
    cap = min(limit - 1, 4000) if p.thinking and limit > 1 else None
    plan = plan_output(
        p,
        random.Random(seed),
        limit=limit,
        user_text="q",
        answer_key=key,
        reasoning_enabled=reasoning_on,
        reasoning_cap=cap,
        show_thinking=p.provider == "anthropic",
    )
    assert plan.output <= limit
    assert text_tokens(plan.text) == plan.visible
    assert text_tokens(plan.thinking_text) == (plan.reasoning if plan.thinking_text else 0)
    if plan.finish == "length":
        assert plan.output == limit
    else:
        assert plan.text.endswith(plan.answer + ("}$." if fmt == "boxed" else ""))


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
async def test_limits_respected_over_the_wire(sim: SimServer) -> None:
    async with (
        AsyncOpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa,
        AsyncAnthropic(api_key="k", base_url=sim.anthropic_base_url, max_retries=0) as an,
    ):
        for limit in (1, 7, 50, 300, 2000):
            c = await oa.chat.completions.create(
                model="o4-mini",
                messages=[{"role": "user", "content": "Solve \\boxed{x}"}],
                max_completion_tokens=limit,
            )
            assert c.usage and c.usage.completion_tokens <= limit
            if c.usage.completion_tokens == limit:
                assert c.choices[0].finish_reason == "length"
            g = await oa.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=limit
            )
            assert g.usage and g.usage.completion_tokens <= limit
            r = await oa.responses.create(model="o4-mini", input="hi", max_output_tokens=limit)
            assert r.usage and r.usage.output_tokens <= limit
            assert (r.status == "incomplete") == (r.incomplete_details is not None)
            m = await an.messages.create(
                model="claude-3-5-haiku-20241022",
                max_tokens=limit,
                messages=[{"role": "user", "content": "hi"}],
            )
            assert m.usage.output_tokens <= limit
            if m.stop_reason == "max_tokens":
                assert m.usage.output_tokens == limit
        small = await oa.chat.completions.create(
            model="o4-mini", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=10
        )
        assert small.choices[0].finish_reason == "length" and small.choices[0].message.content == ""


async def _transcript(seed: int) -> list[Any]:
    out: list[Any] = []
    with SimServer(seed=seed) as sim:
        async with AsyncOpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa:
            for q in ("a", "b", "a"):
                c = await oa.chat.completions.create(
                    model="o4-mini", messages=[{"role": "user", "content": q}], max_completion_tokens=9000
                )
                assert c.usage
                out.append((c.choices[0].message.content, c.usage.completion_tokens))
    return out


@pytest.mark.anyio
async def test_same_seed_same_outputs() -> None:
    a, b, c = await _transcript(11), await _transcript(11), await _transcript(12)
    assert a == b
    assert a != c
    assert a[0] != a[2]  # the same body a second time is a fresh draw


@pytest.mark.anyio
async def test_accuracy_converges_to_the_profile_value() -> None:
    n = 400
    key = AnswerKey()
    prompts = [f"Question {i}: pick one.\nA) x\nB) y\nC) z\nD) w\nAnswer: $LETTER" for i in range(n)]
    targets = ["ABCD"[i % 4] for i in range(n)]
    for p, t in zip(prompts, targets, strict=True):
        key.add(p, KeyEntry(t, "letter", ("A", "B", "C", "D")))
    correct = 0
    answered = 0
    with SimServer(seed=2, answer_key=key) as sim:
        async with AsyncOpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa:
            limiter = anyio.CapacityLimiter(32)

            async def ask(i: int) -> None:
                nonlocal correct, answered
                async with limiter:
                    c = await oa.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": prompts[i]}],
                        max_completion_tokens=4000,
                    )
                m = re.search(r"Answer: ([A-D])\s*$", c.choices[0].message.content or "")
                assert m, c.choices[0].message.content
                answered += 1
                correct += m.group(1) == targets[i]

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(ask, i)
    assert answered == n
    expected = PROFILES["gpt-4o-mini"].accuracy
    assert abs(correct / n - expected) < 0.07, correct / n


def test_wrong_answers_are_plausible() -> None:
    p = PROFILES["gpt-4o-mini"]
    key = AnswerKey()
    key.add("num", KeyEntry("17", "boxed", (), difficulty=1.0))
    key.add("mc", KeyEntry("B", "letter", ("A", "B", "C")))
    for seed in range(60):
        plan = plan_output(
            p, random.Random(seed), limit=5000, user_text="num", answer_key=key, reasoning_enabled=False
        )
        assert plan.correct == (plan.answer == "17")
        assert re.fullmatch(r"-?\d+", plan.answer) and abs(int(plan.answer) - 17) <= 10
        assert f"\\boxed{{{plan.answer}}}" in plan.text
        mc = plan_output(
            p, random.Random(seed), limit=5000, user_text="mc", answer_key=key, reasoning_enabled=False
        )
        assert mc.answer in ("A", "B", "C") and mc.text.rstrip().endswith(f"Answer: {mc.answer}")
    assert p.accuracy_at(1.0) < p.accuracy_at(0.0) == p.accuracy


def test_format_is_inferred_without_a_key() -> None:
    assert infer_format("Put the final answer in \\boxed{}.")[0] == "boxed"
    fmt, letters = infer_format("Which?\nA) one\nB) two\nC) three\nAnswer with 'Answer: $LETTER'")
    assert fmt == "letter" and letters == ("A", "B", "C")
    assert infer_format("Say hello")[0] == "text"


def test_reasoning_models_think_longer_on_hard_items() -> None:
    p = PROFILES["o4-mini"]
    key = AnswerKey()
    key.add("easy", KeyEntry("1", "text", (), difficulty=0.0))
    key.add("hard", KeyEntry("1", "text", (), difficulty=1.0))

    def mean(q: str) -> float:
        plans = [
            plan_output(
                p, random.Random(s), limit=100000, user_text=q, answer_key=key, reasoning_enabled=True
            )
            for s in range(200)
        ]
        return sum(x.reasoning for x in plans) / len(plans)

    easy, hard = mean("easy"), mean("hard")
    assert 100 < easy < 1000 and hard > 2500


def test_profiles_defaults_and_user_file(tmp_path: Path) -> None:
    assert set(default_sim_models().values()) <= set(PROFILES)
    f = tmp_path / "p.toml"
    f.write_text(
        '[models."o4-mini"]\naccuracy = 0.25\n'
        '[models."my-model"]\nprovider = "openai"\noutput_tokens = { median = 10 }\n'
        'prices = { input = "1", output = "2" }\n'
    )
    merged = load_profiles(f)
    assert merged["o4-mini"].accuracy == 0.25 and merged["o4-mini"].reasoning  # other keys kept
    assert merged["my-model"].provider == "openai" and merged["my-model"].output_tokens.median == 10
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."x"]\nprovider = "nope"\n')
    with pytest.raises(ValueError, match="bad.toml"):
        load_profiles(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('[models."o4-mini"]\naccuracyy = 1\n')
    with pytest.raises(ValueError, match="accuracyy"):
        load_profiles(typo)
