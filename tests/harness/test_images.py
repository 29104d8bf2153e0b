"""Images as prompt parts: reading them (data URLs, bare base64, the format from the bytes, pixel sizes
of PNG, JPEG, GIF and WebP headers), the per-model token bounds, the registry of models that take
images (and the ``image_tokens`` alias key), and the image's hash in the response-cache key."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from harness.errors import DataError
from harness.models import image_rule_for, load_aliases, resolve_model
from harness.run.cache import canonical_request, request_key
from harness.types import (
    WORST_IMAGE_TOKENS,
    Image,
    ImageRule,
    Message,
    Request,
    image_tokens_upper_bound,
    input_tokens_upper_bound,
)
from tests.helpers.hle_fixture import data_url, png


def _gif(w: int, h: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", w, h) + b"\x00" * 8


def _jpeg(w: int, h: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def _webp_vp8x(w: int, h: int) -> bytes:
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    body += (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_data_urls_and_bare_base64_are_read_and_the_type_comes_from_the_bytes() -> None:
    raw = png(3, 5)
    assert Image.from_data_url(data_url(raw)) == Image("image/png", raw)
    assert Image.from_data_url(base64.b64encode(raw).decode()) == Image("image/png", raw)
    # A declared type that is not the file's: the bytes win (providers refuse a mismatch).
    assert Image.from_data_url(data_url(raw, "image/jpeg")).media_type == "image/png"
    wrapped = "\n".join(base64.b64encode(raw).decode()[i : i + 8] for i in range(0, 40, 8))
    assert (
        Image.from_data_url("data:image/png;base64," + wrapped + base64.b64encode(raw).decode()[40:]).data
        == raw
    )
    for bad, needle in [
        ("data:image/png;base64,***", "not valid base64"),
        (data_url(b"plain text"), "not a PNG, JPEG, GIF or WebP"),
        ("data:image/png,abc", "must be base64"),
    ]:
        with pytest.raises(ValueError, match=needle):
            Image.from_data_url(bad)
    image = Image("image/png", raw)
    assert image.data_url == data_url(raw) and base64.b64decode(image.b64) == raw
    assert len(image.sha256) == 64


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (png(640, 480), "image/png"),
        (_gif(640, 480), "image/gif"),
        (_jpeg(640, 480), "image/jpeg"),
        (_webp_vp8x(640, 480), "image/webp"),
    ],
)
def test_pixel_sizes_from_each_header(data: bytes, media_type: str) -> None:
    image = Image.from_data_url(data_url(data))
    assert image.media_type == media_type and image.pixel_size == (640, 480)


def test_the_bounds_of_each_rule() -> None:
    small, big, odd = (
        Image("image/png", png(100, 100)),
        Image("image/png", png(4000, 1000)),
        Image("image/png", b"\x89PNG\r\n\x1a\n"),
    )
    assert odd.pixel_size is None
    tiles = ImageRule("tiles", base=85, per_unit=170)
    # A short side counted as 768 (2 tiles); the long side in proportion, at most 2048 (4 tiles).
    assert image_tokens_upper_bound(tiles, small) == 85 + 170 * 4
    assert image_tokens_upper_bound(tiles, big) == 85 + 170 * 8
    assert image_tokens_upper_bound(tiles, odd) == 85 + 170 * 8  # unknown size: the most tiles
    patches = ImageRule("patches", per_unit=1.62)
    assert image_tokens_upper_bound(patches, small) == 26  # ceil(16 patches * 1.62)
    assert image_tokens_upper_bound(patches, big) == 2489  # capped at 1,536 patches
    assert image_tokens_upper_bound(patches, odd) == 2489
    pixels = ImageRule("pixels", cap=1750)
    assert image_tokens_upper_bound(pixels, small) == 14  # ceil(10,000 / 750)
    assert image_tokens_upper_bound(pixels, big) == image_tokens_upper_bound(pixels, odd) == 1750
    gemini = ImageRule("gemini", cap=258)
    assert image_tokens_upper_bound(gemini, small) == 258
    assert image_tokens_upper_bound(gemini, big) == 6 * 2 * 258
    assert image_tokens_upper_bound(gemini, odd) == 11 * 11 * 258  # reserved as 8192x8192
    assert image_tokens_upper_bound(ImageRule("gemini", cap=1120), small) == 1120
    assert image_tokens_upper_bound(ImageRule("fixed", cap=999), big) == 999
    # No rule: the worst case of every rule.
    assert image_tokens_upper_bound(None, small) == WORST_IMAGE_TOKENS
    assert image_tokens_upper_bound(None, odd) == WORST_IMAGE_TOKENS
    huge = Image("image/png", png(1, 1)[:16] + struct.pack(">II", 20_000, 20_000))  # the header is enough
    assert huge.pixel_size == (20_000, 20_000)
    assert image_tokens_upper_bound(None, huge) == 27 * 27 * 258 > WORST_IMAGE_TOKENS


def test_the_prompt_bound_adds_each_image() -> None:
    image = Image("image/png", png(100, 100))
    text = (Message("user", "What is drawn?"),)
    with_image = (Message("user", "What is drawn?", (image, image)),)
    rule = ImageRule("pixels", cap=1750)
    assert input_tokens_upper_bound(with_image, rule) == input_tokens_upper_bound(text) + 2 * (14 + 16)
    assert input_tokens_upper_bound(with_image) == input_tokens_upper_bound(text) + 2 * (
        WORST_IMAGE_TOKENS + 16
    )


def test_which_models_take_images() -> None:
    assert image_rule_for("openai", "gpt-4o-2024-08-06") == ImageRule("tiles", base=85, per_unit=170)
    assert image_rule_for("openai", "gpt-4o-mini-2024-07-18") == ImageRule("tiles", base=2833, per_unit=5667)
    assert image_rule_for("openai", "gpt-4.1-mini") == ImageRule("patches", per_unit=1.62)
    assert image_rule_for("openai", "o1") is not None and image_rule_for("openai", "o1-pro") is not None
    # A snapshot of a family has its rule; a new variant that only starts with one, the worst.
    assert image_rule_for("anthropic", "claude-sonnet-4-20250514") == ImageRule("pixels", cap=1750)
    assert image_rule_for("openai", "gpt-5.9-mini") == image_rule_for("openai", "gpt-4o-mini")
    assert image_rule_for("google", "gemini-2.5-flash-preview-05-20") == ImageRule("gemini", cap=2240)
    for text_only in (
        "o3-mini",
        "o3-mini-2025-01-31",
        "o1-mini",
        "o1-preview",
        "gpt-3.5-turbo",
        "local-model",
    ):
        assert image_rule_for("openai", text_only) is None, text_only
    assert image_rule_for("anthropic", "claude-sonnet-4-5") == ImageRule("pixels", cap=1750)
    assert image_rule_for("anthropic", "claude-future-9") == ImageRule("pixels", cap=4800)
    assert image_rule_for("google", "gemini-3-pro-preview") == ImageRule("gemini", cap=1120)
    assert image_rule_for("deepseek", "deepseek-chat") is None
    assert resolve_model("openai/gpt-4o").image_rule is not None
    assert resolve_model("openai/o3-mini").image_rule is None


def test_the_image_tokens_alias_key(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models."local/vlm"]\nmodel = "openai/qwen-vl"\nimage_tokens = 1200\n')
    spec = resolve_model("local/vlm", aliases=load_aliases(path, env={}))
    assert spec.image_rule == ImageRule("fixed", cap=1200)
    path.write_text('[models."local/vlm"]\nmodel = "openai/qwen-vl"\nimage_tokens = 0\n')
    with pytest.raises(DataError, match="image_tokens must be positive"):
        load_aliases(path, env={})


def test_the_cache_key_holds_the_image_bytes_hash() -> None:
    spec = resolve_model("openai/gpt-4o")
    a, b = Image("image/png", png(2, 2, seed=1)), Image("image/png", png(2, 2, seed=2))

    def key(*images: Image) -> str:
        request = Request("gpt-4o", (Message("user", "Q", images),), 100)
        return request_key(canonical_request(spec, request, repeat=0, run_seed=0, endpoint="simulator"))

    assert key(a) != key(b) != key() and key(a) == key(Image("image/png", png(2, 2, seed=1)))
    plain = canonical_request(spec, Request("gpt-4o", (Message("user", "Q"),), 100), repeat=0, run_seed=0,
                              endpoint="simulator")  # fmt: skip
    assert plain["messages"] == [{"role": "user", "content": "Q"}]  # text-only keys are unchanged


def test_the_forecast_estimate_counts_images_by_the_models_rule() -> None:
    from harness.forecast.estimate import estimate_input_tokens

    image = Image("image/png", png(100, 100))
    text = (Message("user", "What is drawn?"),)
    with_image = (Message("user", "What is drawn?", (image,)),)
    rule = ImageRule("tiles", base=85, per_unit=170)
    assert estimate_input_tokens(with_image, rule) == estimate_input_tokens(text) + 85 + 170 * 4
    assert estimate_input_tokens(with_image) == estimate_input_tokens(text) + WORST_IMAGE_TOKENS
