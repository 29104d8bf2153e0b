"""HLE: the schema, the text-only default, the official prompts, the CAIS judge's structured reply,
and the RMS calibration error."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import suites.hle as hle
from harness.errors import ConfigError, DataError
from harness.sim.judge import structured_reply
from harness.stats.calibration import rms_calibration_error
from harness.suite import JudgedSuite
from suites import get_suite
from tests.helpers.hle_fixture import png, row, write


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write(tmp_path / "hle.jsonl")


def test_text_only_by_default_and_images_true_adds_the_image_items(data: Path) -> None:
    suite = get_suite("hle", data=data)
    assert [i.id for i in suite.items] == [f"fx{i}" for i in range(6)]
    assert isinstance(suite, JudgedSuite) and suite.default_repeats == 1
    assert isinstance(suite, hle.HleSuite) and suite.image_item_ids == frozenset()
    assert all(not m.images for m in suite.render(suite.items[0], 0, 0).messages)
    with_images = get_suite("hle", data=data, options={"images": "true"})
    assert isinstance(with_images, hle.HleSuite)
    assert [i.id for i in with_images.items] == [f"fx{i}" for i in range(6)] + ["fx100"]
    assert with_images.image_item_ids == {"fx100"}
    system, user = with_images.render(with_images.items[-1], 0, 0).messages
    assert not system.images and user.content == "Fixture: what is 100 plus 100?"
    (image,) = user.images
    assert image.media_type == "image/png" and image.data == png(2, 3, seed=0)
    assert image.pixel_size == (2, 3)
    with pytest.raises(ConfigError, match="unknown option"):
        get_suite("hle", data=data, options={"colour": "red"})
    with pytest.raises(ConfigError, match="images='maybe' must be true or false"):
        get_suite("hle", data=data, options={"images": "maybe"})


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        ("data:image/png;base64,@@@", "not valid base64"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "not a PNG, JPEG, GIF or WebP file"),
        ("data:image/png,rawbytes", "must be base64"),
    ],
)
def test_a_bad_image_names_its_line(tmp_path: Path, image: str, needle: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row(1, image=image)) + "\n")
    with pytest.raises(DataError, match=f"line 1: field 'image': .*{needle}.*drop images=true"):
        get_suite("hle", data=path, options={"images": "true"})
    with pytest.raises(DataError, match="no text-only item"):  # the default skips the row unread
        get_suite("hle", data=path)


def test_a_bare_base64_image_and_a_parquet_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [row(0), row(1, image=base64.b64encode(png(4, 4)).decode())]
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    suite = get_suite("hle", data=path, options={"images": "yes"})
    assert isinstance(suite, hle.HleSuite) and suite.image_item_ids == {"fx1"}
    (image,) = suite.render(suite.items[1], 0, 0).messages[1].images
    assert image.data == png(4, 4)


def test_rows_without_their_fields_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "x", "question": "q"}) + "\n")
    with pytest.raises(DataError, match="line 1: missing field 'answer'"):
        get_suite("hle", data=path)


def test_the_official_system_prompt_for_every_item(data: Path) -> None:
    suite = get_suite("hle", data=data)
    for item in suite.items[:2]:  # exactMatch and multipleChoice alike (upstream since 67b3251)
        prompt = suite.render(item, 0, 0)
        assert [m.role for m in prompt.messages] == ["system", "user"]
        assert prompt.messages[0].content == (
            "Your response should be in the following format:\nExplanation: {your explanation for your "
            "answer choice}\nAnswer: {your chosen answer}\nConfidence: {your confidence score between 0% "
            "and 100% for your answer}"
        )
        assert prompt.messages[1].content == item.question and prompt.target == item.answer


def test_the_judge_gets_the_cais_prompt_and_schema(data: Path) -> None:
    suite = get_suite("hle", data=data)
    assert isinstance(suite, hle.HleSuite)
    prompt = suite.render(suite.items[3], 0, 0)
    jr = suite.judge_request(prompt, "Explanation: sum\nAnswer: 6\nConfidence: 80%")
    (message,) = jr.messages
    assert message.role == "user"
    assert message.content.startswith(
        "Judge whether the following [response] to [question] is correct or not based on the precise "
        "and unambiguous [correct_answer] below.\n\n[question]: Fixture: what is 3 plus 3?\n\n[response]: "
        "Explanation: sum\nAnswer: 6\nConfidence: 80%\n\nYour judgement must be"
    )
    assert "[correct_answer]: 6\n\nreasoning:" in message.content
    assert "if there if there is any inconsistency" in message.content  # verbatim, its typo kept
    assert message.content.endswith("Put 100 if there is no confidence score available.")
    schema = jr.response_format["json_schema"]
    assert jr.response_format["type"] == "json_schema" and schema["strict"] is True
    required = ["extracted_final_answer", "reasoning", "correct", "confidence", "strict"]
    assert schema["schema"]["required"] == required
    assert jr.max_output_tokens == 4096


def test_the_judges_reply_scores_and_a_missing_one_is_unscored(data: Path) -> None:
    suite = get_suite("hle", data=data)
    assert isinstance(suite, hle.HleSuite)
    prompt = suite.render(suite.items[3], 0, 0)
    text = "Explanation: sum\nAnswer: 6\nConfidence: 80%"
    reply = structured_reply(suite.judge_request(prompt, text).messages[0].content)
    assert json.loads(reply) == {
        "extracted_final_answer": "6",
        "reasoning": "The extracted answer matches.",
        "correct": "yes",
        "confidence": 80,
        "strict": True,
    }
    score = suite.judged_score(prompt, text, reply)
    assert (score.status, score.correct, score.extracted) == ("scored", True, "6")
    assert score.meta == {"confidence": 80}
    wrong = structured_reply(suite.judge_request(prompt, "Answer: 7").messages[0].content)
    assert suite.judged_score(prompt, "Answer: 7", wrong).correct is False
    for failed in (None, "not json", '{"correct": "maybe"}'):
        score = suite.judged_score(prompt, text, failed)
        assert (score.status, score.correct, score.reason) == ("scored", False, "unscored")


def test_rms_calibration_error() -> None:
    assert rms_calibration_error([]) is None
    assert rms_calibration_error([(1.0, True)] * 10) == 0.0
    # One bin of 4: mean confidence 0.8, accuracy 0.5.
    assert rms_calibration_error([(0.8, True), (0.8, False), (0.8, True), (0.8, False)]) == pytest.approx(0.3)
    # Two bins of 2 (beta=2): confident and right, unsure and wrong by 0.5.
    pairs = [(0.5, False), (0.5, False), (1.0, True), (1.0, True)]
    assert rms_calibration_error(pairs, beta=2) == pytest.approx((0.5 * 0.25) ** 0.5)
