"""Rendering and scoring of each suite: prompts, targets, GPQA shuffles, the demo suite, user JSONL."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.answerkey import AnswerKey
from harness.errors import ConfigError, DataError
from harness.suite import Suite
from suites import get_suite
from suites.gpqa import shuffle_for

BOXED_PREFIX = "Solve the following math problem step by step. Put your answer inside \\boxed{}.\n\n"
BOXED_SUFFIX = "\n\nRemember to put your answer inside \\boxed{}."


def test_every_suite_implements_the_protocol(fixtures: Path) -> None:
    suites = [
        get_suite("demo"),
        get_suite("math500", data=fixtures / "math500.jsonl"),
        get_suite("aime2024", data=fixtures / "aime_2024.parquet"),
        get_suite("mmlu-pro", data=fixtures / "mmlu_pro.parquet"),
        get_suite("gpqa-diamond", data=fixtures / "gpqa_diamond.csv"),
        get_suite(str(fixtures / "user_exact.jsonl")),
    ]
    for suite in suites:
        assert isinstance(suite, Suite)
        for item in suite.items:
            # Deterministic rendering: a resumed run re-renders the same prompt.
            assert suite.render(item, 1, 7) == suite.render(item, 1, 7)


def test_math500_prompt_and_scoring(fixtures: Path) -> None:
    suite = get_suite("math500", data=fixtures / "math500.jsonl")
    item = suite.items[0]
    prompt = suite.render(item, 0, 0)
    assert prompt.messages[0].role == "user"
    assert prompt.messages[0].content == BOXED_PREFIX + "Fixture: simplify 2/4." + BOXED_SUFFIX
    assert (prompt.target, prompt.answer_format, prompt.choices) == ("\\frac{1}{2}", "boxed", ())
    assert prompt.meta["subject"] == "Prealgebra" and prompt.meta["level"] == 1


@pytest.mark.anyio
async def test_math500_scores_equivalent_forms(fixtures: Path) -> None:
    suite = get_suite("math500", data=fixtures / "math500.jsonl")
    by_id = {i.id: i for i in suite.items}
    cases = [
        ("test/prealgebra/fx1.json", "It is one half: \\boxed{0.5}", True),
        ("test/prealgebra/fx2.json", "\\boxed{\\dfrac{1}{4}}", True),
        ("test/algebra/fx4.json", "\\boxed{[2, 5)}", True),
        ("test/algebra/fx4.json", "\\boxed{(2, 5]}", False),
        ("test/geometry/fx5.json", "\\boxed{60}", True),
        ("test/precalculus/fx7.json", "\\boxed{(3, \\frac{\\pi}{2})}", True),
        ("test/number_theory/fx8.json", "\\boxed{3} hmm, no: \\boxed{2}", True),
    ]
    for item_id, text, expected in cases:
        score = await suite.score(suite.render(by_id[item_id], 0, 0), text)
        assert (item_id, score.correct) == (item_id, expected)


@pytest.mark.anyio
async def test_aime_leading_zeros(fixtures: Path) -> None:
    suite = get_suite("aime2025", data=fixtures / "aime_2025.jsonl")
    prompt = suite.render(suite.items[0], 3, 99)
    assert prompt.target == "42"
    assert (await suite.score(prompt, "\\boxed{042}")).correct is True
    assert (await suite.score(prompt, "\\boxed{43}")).correct is False
    assert suite.default_repeats == 10


def test_mmlu_pro_ten_and_fewer_options(fixtures: Path) -> None:
    suite = get_suite("mmlu-pro", data=fixtures / "mmlu_pro.parquet")
    by_id = {i.id: i for i in suite.items}
    ten = suite.render(by_id["72"], 0, 0)
    assert ten.choices == tuple("ABCDEFGHIJ") and ten.target == "J"
    assert "'Answer: A/B/C/D/E/F/G/H/I/J' (e.g. 'Answer: A')" in ten.messages[0].content
    assert ten.messages[0].content.rstrip().endswith("J) Option 9")
    four = suite.render(by_id["73"], 0, 0)
    assert four.choices == ("A", "B", "C", "D") and four.target == "C"
    assert "'Answer: A/B/C/D' (e.g. 'Answer: A')" in four.messages[0].content
    assert "E)" not in four.messages[0].content and "None" not in four.messages[0].content
    six = suite.render(by_id["74"], 0, 0)
    assert six.choices == tuple("ABCDEF") and six.target == "F"


@pytest.mark.anyio
async def test_mmlu_pro_scoring(fixtures: Path) -> None:
    suite = get_suite("mmlu-pro", data=fixtures / "mmlu_pro.parquet")
    prompt = suite.render(next(i for i in suite.items if i.id == "72"), 0, 0)
    assert (await suite.score(prompt, "Thinking...\nAnswer: J")).correct is True
    wrong = await suite.score(prompt, "Thinking...\nAnswer: I")
    assert (wrong.correct, wrong.extracted) == (False, "I")
    assert (await suite.score(prompt, "")).status == "unusable"


def test_mmlu_pro_option_padding_is_dropped(tmp_path: Path) -> None:
    row = {
        "question_id": 5,
        "question": "q",
        "options": ["a", "b", "c", None, ""],
        "answer": "C",
        "category": "x",
    }
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    suite = get_suite("mmlu-pro", data=tmp_path / "m.jsonl")
    prompt = suite.render(suite.items[0], 0, 0)
    assert prompt.choices == ("A", "B", "C") and prompt.target == "C"


def test_gpqa_shuffle_is_deterministic_and_tracks_the_target(fixtures: Path) -> None:
    suite = get_suite("gpqa-diamond", data=fixtures / "gpqa_diamond.csv")
    positions: Counter[str] = Counter()
    for item in suite.items:
        correct = item.data["answers"][0]
        for repeat in range(5):
            prompt = suite.render(item, repeat, 1234)
            again = get_suite("gpqa-diamond", data=fixtures / "gpqa_diamond.csv").render(item, repeat, 1234)
            assert prompt == again  # same (seed, item, repeat) -> same permutation, even across loads
            text = prompt.messages[0].content
            assert f"{prompt.target}) {correct}\n" in text + "\n"  # the target letter shows the right answer
            assert prompt.choices == ("A", "B", "C", "D")
            perm = prompt.meta["permutation"]
            assert sorted(perm) == [0, 1, 2, 3]
            assert "ABCD"[perm.index(0)] == prompt.target
            assert (prompt.meta["shuffle_seed"], perm) == shuffle_for(1234, item.id, repeat)
            positions[prompt.target] += 1
    # Across 30 renderings the correct answer is not stuck in one place.
    assert len(positions) == 4
    item = suite.items[0]
    perms = {tuple(suite.render(item, r, 1234).meta["permutation"]) for r in range(10)}
    assert len(perms) > 1  # repeats differ
    assert suite.render(item, 0, 1).meta["shuffle_seed"] != suite.render(item, 0, 2).meta["shuffle_seed"]


def test_gpqa_prompt_is_simple_evals(fixtures: Path) -> None:
    suite = get_suite("gpqa-diamond", data=fixtures / "gpqa_diamond.csv")
    text = suite.render(suite.items[0], 0, 0).messages[0].content
    assert text.startswith(
        "Answer the following multiple choice question. The last line of your response should be of the "
        "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. "
        "Think step by step before answering.\n\nFixture: which is a noble gas?\n\nA) "
    )


@pytest.mark.anyio
async def test_gpqa_scoring_follows_the_shuffle(fixtures: Path) -> None:
    suite = get_suite("gpqa-diamond", data=fixtures / "gpqa_diamond.csv")
    item = suite.items[0]
    for repeat in range(4):
        prompt = suite.render(item, repeat, 5)
        assert (await suite.score(prompt, f"Answer: {prompt.target}")).correct is True
        other = next(x for x in "ABCD" if x != prompt.target)
        assert (await suite.score(prompt, f"Answer: {other}")).correct is False


def test_answer_key_keys_each_rendering(fixtures: Path) -> None:
    suite = get_suite("gpqa-diamond", data=fixtures / "gpqa_diamond.csv")
    key = AnswerKey()
    prompts = [suite.render(item, r, 9) for item in suite.items for r in range(3)]
    key.add_prompts(prompts)
    for p in prompts:
        entry = key.get(p.messages[-1].content)
        assert entry is not None and entry.target == p.target and entry.choices == p.choices


def test_demo_suite() -> None:
    suite = get_suite("demo", offline=True)
    assert suite.name == "demo" and suite.default_repeats == 1
    items = list(suite.items)
    assert len(items) == 40
    assert Counter(i.stratum for i in items) == {"arithmetic": 24, "mc": 16}
    assert [i.id for i in items] == [i.id for i in get_suite("demo").items]  # deterministic
    key = AnswerKey()
    for item in items:
        prompt = suite.render(item, 0, 0)
        key.add_prompt(prompt)
        if item.stratum == "mc":
            assert prompt.answer_format == "letter" and prompt.choices == ("A", "B", "C", "D")
            assert prompt.target in "ABCD"
        else:
            assert prompt.answer_format == "boxed" and prompt.target.isdigit()
            assert prompt.messages[0].content.startswith(BOXED_PREFIX)
    assert len(key) == 40
    # The correct letter is spread over the options.
    assert len({suite.render(i, 0, 0).target for i in items if i.stratum == "mc"}) >= 3


@pytest.mark.anyio
async def test_demo_scoring() -> None:
    suite = get_suite("demo")
    arith = next(i for i in suite.items if i.stratum == "arithmetic")
    mc = next(i for i in suite.items if i.stratum == "mc")
    p = suite.render(arith, 0, 0)
    assert (await suite.score(p, f"So \\boxed{{{p.target}}}")).correct is True
    assert (await suite.score(p, f"So \\boxed{{{int(p.target) + 1}}}")).correct is False
    q = suite.render(mc, 0, 0)
    assert (await suite.score(q, f"Answer: {q.target}")).correct is True
    assert (await suite.score(q, " ")).status == "unusable"


@pytest.mark.anyio
async def test_jsonl_exact(fixtures: Path) -> None:
    suite = get_suite(str(fixtures / "user_exact.jsonl"))
    assert suite.name == "jsonl:user_exact"
    by_id = {i.id: i for i in suite.items}
    p = suite.render(by_id["cap-fr"], 0, 0)
    assert p.messages[0].content == "What is the capital of France? Reply with the name only."
    assert (p.target, p.answer_format) == ("Paris", "text")
    assert (await suite.score(p, "paris.")).correct is True
    assert (await suite.score(p, "**Paris**")).correct is True
    assert (await suite.score(p, "Let me think.\nParis")).correct is True
    assert (await suite.score(p, "Lyon")).correct is False
    s = suite.render(by_id["sum"], 0, 0)
    assert s.target == "5"
    assert (await suite.score(s, "2 + 3 = 5\nAnswer: 5")).correct is True


@pytest.mark.anyio
async def test_jsonl_mc_regex_math(fixtures: Path, tmp_path: Path) -> None:
    options = {"scorer": "mc", "prompt_field": "q", "answer_field": "gold", "choices_field": "choices"}
    mc = get_suite("jsonl", data=fixtures / "user_mc.jsonl", options=options)
    assert [i.answer for i in mc.items] == ["B", "C", "B"]  # option text, index and letter
    p = mc.render(mc.items[0], 0, 0)
    assert p.choices == ("A", "B", "C") and "C) 5" in p.messages[0].content
    assert (await mc.score(p, "Answer: B")).correct is True

    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps({"prompt": "Give a code", "answer": "X-12"}) + "\n")
    rx = get_suite("jsonl", data=f, options={"scorer": "regex", "pattern": r"CODE=(\S+)"})
    p = rx.render(rx.items[0], 0, 0)
    assert (await rx.score(p, "CODE=X-11 then CODE=X-12")).correct is True
    miss = await rx.score(p, "no code")
    assert (miss.correct, miss.extracted) == (False, None)

    f.write_text(json.dumps({"prompt": "Half of one?", "answer": "\\frac{1}{2}"}) + "\n")
    mt = get_suite("jsonl", data=f, options={"scorer": "math"})
    p = mt.render(mt.items[0], 0, 0)
    assert p.answer_format == "boxed"
    assert (await mt.score(p, "\\boxed{0.5}")).correct is True


def test_jsonl_errors(tmp_path: Path) -> None:
    f = tmp_path / "u.jsonl"
    f.write_text(json.dumps({"prompt": "a", "answer": "b"}) + "\n" + json.dumps({"prompt": "c"}) + "\n")
    with pytest.raises(DataError, match=r"u\.jsonl: line 2: missing field 'answer'"):
        get_suite(str(f))
    f.write_text(json.dumps({"prompt": "a", "answer": "b"}) + "\n[1, 2]\n")
    with pytest.raises(DataError, match=r"u\.jsonl: line 2: expected a JSON object"):
        get_suite(str(f))
    f.write_text(json.dumps({"question": "a", "answer": "b"}) + "\n")
    with pytest.raises(DataError, match=r"line 1: missing field 'prompt'"):
        get_suite(str(f))
    assert get_suite(str(f), options={"prompt_field": "question"}).items[0].question == "a"
    with pytest.raises(ConfigError, match="unknown scorer"):
        get_suite(str(f), options={"scorer": "fuzzy"})
    with pytest.raises(ConfigError, match="needs pattern"):
        get_suite(str(f), options={"scorer": "regex"})
    with pytest.raises(ConfigError, match="invalid pattern"):
        get_suite(str(f), options={"scorer": "regex", "pattern": "("})
    with pytest.raises(ConfigError, match="unknown jsonl suite option"):
        get_suite(str(f), options={"promt_field": "x"})
    f.write_text(json.dumps({"prompt": "a", "answer": "Z", "choices": ["x", "y"]}) + "\n")
    with pytest.raises(DataError, match="not an option letter"):
        get_suite(str(f), options={"scorer": "mc", "choices_field": "choices"})
