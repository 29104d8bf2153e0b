"""The simulator's ASGI application (starlette): provider routes, errors and control endpoints.

Routes:

- OpenAI: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``GET /v1/models[/{id}]``
- Anthropic: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``, ``GET /v1/models[/{id}]``
  (the models routes answer in Anthropic's shape when the request has ``anthropic-version``)
- Google Gemini: ``POST /v1beta/models/{model}:generateContent``,
  ``:streamGenerateContent?alt=sse`` and ``:countTokens`` (:mod:`harness.sim.wire_gemini`)
- Batches (:mod:`harness.sim.batch`): OpenAI ``/v1/files``, ``/v1/batches``; Anthropic
  ``/v1/messages/batches``; ``POST /sim/batch-settings`` (time scale and faults)
- Control: ``GET /sim/invoice``, ``POST /sim/invoice/reset`` (starts a new invoice with a new
  ``instance`` id), ``POST /sim/answer-key`` (JSONL in the ``AnswerKey.save`` format),
  ``POST /sim/faults`` (JSON settings, ``null`` clears), ``GET /sim/health``

Every provider response carries the request id header (``x-request-id`` / ``request-id``) and, once
the model is known, the provider's rate-limit headers.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.answerkey import AnswerKey
from harness.sim.batch import SimBatches, batch_routes, gemini_batch_create
from harness.sim.faults import PRE_STREAM_FAULTS, FaultConfig
from harness.sim.generate import CachePlan, OutputPlan, draw_cache, plan_output, prompt_tokens
from harness.sim.invoice import usage_from_anthropic, usage_from_openai
from harness.sim.parse import (
    Refuse,
    anthropic_texts,
    auth_error,
    fault_error,
    not_found,
    parse_chat,
    parse_messages,
    parse_responses,
)
from harness.sim.profiles import COMPAT_PROVIDERS, ModelProfile, resolve_model
from harness.sim.ratelimit import Admission, anthropic_headers, openai_headers
from harness.sim.state import SimState
from harness.sim.streaming import Rendered, SSEResponse, install_cut_log_filter
from harness.sim.wire_anthropic import MessageParams, message_body, message_stream, signature
from harness.sim.wire_gemini import (
    GeminiParams,
    gemini_auth_error,
    gemini_body,
    gemini_count_tokens,
    gemini_error_body,
    gemini_fault_error,
    gemini_not_found,
    gemini_rate_limited,
    gemini_stream,
    parse_gemini,
    usage_from_gemini,
)
from harness.sim.wire_openai import (
    ChatParams,
    ResponsesParams,
    chat_body,
    chat_stream,
    chat_usage,
    responses_body,
    responses_stream,
)

__all__ = ["build_app"]

_JSON = "application/json"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class _Handlers:
    def __init__(self, state: SimState) -> None:
        self.s = state

    # ------------------------------------------------------------------ shared plumbing

    def _error(self, provider: str, rid: str, err: Refuse, headers: dict[str, str]) -> Response:
        if provider == "google":  # the delay is in the body's RetryInfo; Gemini sends no retry-after
            return Response(
                _dumps(gemini_error_body(err)), status_code=err.status, headers=headers, media_type=_JSON
            )
        if err.retry_after_s is not None:
            headers["retry-after"] = str(max(1, math.ceil(err.retry_after_s)))
            headers["retry-after-ms"] = str(round(err.retry_after_s * 1000))
        if provider == "anthropic":
            body: dict[str, Any] = {
                "type": "error",
                "error": {"type": err.kind, "message": err.message},
                "request_id": rid,
            }
        else:
            body = {"error": {"message": err.message, "type": err.kind, "param": err.param, "code": err.code}}
        return Response(_dumps(body), status_code=err.status, headers=headers, media_type=_JSON)

    def _base_headers(self, provider: str, rid: str) -> dict[str, str]:
        if provider == "google":
            return {"x-sim-request-id": rid}  # Gemini has no request-id header; responseId is in the body
        if provider == "anthropic":
            return {"request-id": rid, "anthropic-organization-id": "00000000-0000-4000-8000-00000000515d"}
        return {"x-request-id": rid, "openai-version": "2020-10-01", "openai-organization": "org-sim"}

    def _rl_headers(self, provider: str, a: Admission) -> dict[str, str]:
        if provider == "google":
            return {}  # Gemini sends no rate-limit headers
        return anthropic_headers(a) if provider == "anthropic" else openai_headers(a)

    @staticmethod
    def _authorised(request: Request, provider: str) -> bool:
        if provider == "google":
            key = request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
            return bool(key.strip())
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and auth[7:].strip():
            return True
        return provider == "anthropic" and bool(request.headers.get("x-api-key", "").strip())

    async def _json_body(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refuse(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            ) from None
        if not isinstance(body, dict):
            raise Refuse(400, "The request body must be a JSON object.", "invalid_request_error")
        return raw, body

    def _admit(self, profile: ModelProfile, tokens: int) -> Admission:
        a = self.s.rate_limiter.admit(profile.id, profile.rpm, profile.tpm, tokens)
        return a

    async def _generate(
        self,
        request: Request,
        *,
        provider: str,
        api: str,
        parse: Callable[[ModelProfile, dict[str, Any]], dict[str, Any]],
        render: Callable[
            [ModelProfile, dict[str, Any], OutputPlan, CachePlan, str], tuple[Any, Rendered | None]
        ],
        path_model: str | None = None,
        path_stream: bool | None = None,
    ) -> Response:
        """Common flow: auth, parse, model, rate limit, fault, plan, render, send, bill.

        ``path_model`` / ``path_stream``: Gemini names the model and streaming in the URL, not the body.
        """
        s = self.s
        t0 = time.monotonic()
        rid = s.request_id(provider)
        headers = self._base_headers(provider, rid)
        client_id = request.headers.get("x-client-request-id") or None
        s.invoice.begin(client_id)
        profile: ModelProfile | None = None
        stream = False
        fault_name: str | None = None
        try:
            if not self._authorised(request, provider):
                raise gemini_auth_error() if provider == "google" else auth_error(provider)
            raw, body = await self._json_body(request)
            model = body.get("model") if path_model is None else path_model
            if not isinstance(model, str) or not model:
                raise Refuse(
                    400, "you must provide a model parameter", "invalid_request_error", param="model"
                )
            profile = resolve_model(s.profiles, model, provider)
            if profile is None:
                raise gemini_not_found(model) if provider == "google" else not_found(provider, model)
            stream = bool(body.get("stream")) if path_stream is None else path_stream
            req = parse(profile, body)
            req["request_id"] = rid
            req.setdefault("stream", stream)
            rng = s.rng_for(raw if path_model is None else path_model.encode() + b"\n" + raw)
            try:
                fault = s.choose_fault(rng, profile, request.headers, stream)
            except ValueError as exc:
                raise Refuse(400, str(exc), "invalid_request_error") from None
            admission = self._admit(profile, req["prompt"] + req["limit"])
            headers.update(self._rl_headers(provider, admission))
            if not admission.allowed and provider == "google":
                raise gemini_rate_limited(profile, admission.which, admission.reset_s)
            if not admission.allowed:
                raise Refuse(
                    429,
                    f"Rate limit reached for {profile.id} on {admission.which} per min: limit "
                    f"{admission.limit_requests if admission.which == 'requests' else admission.limit_tokens}"
                    ".",
                    "rate_limit_error" if provider == "anthropic" else admission.which,
                    code=None if provider == "anthropic" else "rate_limit_exceeded",
                    retry_after_s=admission.reset_s,
                )
            if fault.kind in PRE_STREAM_FAULTS:
                fault_name = fault.kind
                if provider == "google":
                    raise gemini_fault_error(profile, fault.kind, fault.retry_after_s)
                raise fault_error(provider, profile, fault.kind, fault.retry_after_s)
        except Refuse as err:
            s.invoice.record(
                request_id=rid,
                provider=provider,
                api=api,
                model=profile.id if profile else None,
                stream=stream,
                status="refused",
                http_status=err.status,
                fault=fault_name,
                client_request_id=client_id,
            )
            return self._error(provider, rid, err, headers)
        except BaseException as exc:
            # The request never reached generation: the client went away while sending its body (a
            # killed process), or the simulator itself failed. Nothing is billed, and the request is
            # on the invoice all the same, so `tollbench reconcile` can prove it cost nothing.
            gone = isinstance(exc, ClientDisconnect)
            s.invoice.record(
                request_id=rid,
                provider=provider,
                api=api,
                model=profile.id if profile else None,
                stream=stream,
                status="refused",
                http_status=499 if gone else 500,
                fault=fault_name or ("client_disconnected" if gone else "simulator_error"),
                client_request_id=client_id,
            )
            if gone:
                return Response(status_code=499)  # nobody reads it
            raise

        cache = draw_cache(
            profile,
            rng,
            req["prompt"],
            cache_control=req.get("cache_control", False),
            ttl=req.get("cache_ttl", "5m"),
        )
        plan = plan_output(
            profile,
            rng,
            limit=req["limit"],
            user_text=req["user_text"],
            answer_key=s.answer_key,
            reasoning_enabled=req["reasoning"],
            reasoning_cap=req.get("reasoning_cap"),
            effort=req.get("effort"),
            show_thinking=req.get("show_thinking", provider != "openai"),
            structured=bool(req.get("structured")),
        )
        body_id = (
            rid if provider == "google" else s.body_id({"chat": "chat", "responses": "resp"}.get(api, "msg"))
        )
        payload, rendered = render(profile, req, plan, cache, body_id)
        headers["openai-processing-ms" if provider == "openai" else "x-sim-processing-ms"] = str(
            int((time.monotonic() - t0) * 1000)
        )
        speed = s.speed
        if rendered is None:
            delay = (profile.ttft_s + plan.output / profile.tokens_per_s) * speed
            if fault.kind == "stall":
                delay += fault.stall_s
            if delay > 0:
                await anyio.sleep(delay)
            raw_usage = payload["usageMetadata" if provider == "google" else "usage"]
            if provider == "google":
                usage = usage_from_gemini(raw_usage)
            elif provider == "anthropic":
                usage = usage_from_anthropic(raw_usage)
            elif provider in COMPAT_PROVIDERS:  # their dialects differ; bill what was generated
                usage = usage_from_openai(chat_usage(plan, cache))
            else:
                usage = usage_from_openai(raw_usage)
            s.invoice.record(
                request_id=rid,
                provider=provider,
                api=api,
                model=profile.id,
                response_model=profile.response_model,
                body_id=body_id,
                stream=False,
                status="incomplete" if plan.finish == "length" else "completed",
                http_status=200,
                usage=usage,
                raw_usage=raw_usage,
                fault=fault.kind,
                client_request_id=client_id,
            )
            return Response(_dumps(payload), status_code=200, headers=headers, media_type=_JSON)

        r = rendered
        model_id, resp_model, fault_kind = profile.id, profile.response_model, fault.kind

        def on_done(status: str, sent: int) -> None:
            complete = status in ("completed", "incomplete")
            usage = r.usage if complete else r.partial_usage(sent)
            s.invoice.record(
                request_id=rid,
                provider=provider,
                api=api,
                model=model_id,
                response_model=resp_model,
                body_id=body_id,
                stream=True,
                status=status,
                http_status=200,
                usage=usage,
                raw_usage=r.raw_usage if complete else None,
                fault=fault_kind,
                client_request_id=client_id,
            )

        return SSEResponse(
            r,
            headers,
            on_done=on_done,
            speed=speed,
            pace_s=s.pace_s,
            ttft_s=profile.ttft_s,
            tokens_per_s=profile.tokens_per_s,
            fault=fault.kind,
            fault_after=fault.after,
            stall_s=fault.stall_s,
        )

    # ------------------------------------------------------------------ batches

    def batch_line(self, provider: str, api: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One request of a batch (:mod:`harness.sim.batch`): generated as the live non-streaming
        call would be, and billed at the batch price; a refused request is an error line."""
        s = self.s
        rid = s.request_id(provider)
        raw = _dumps(body)
        profile: ModelProfile | None = None
        try:
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise Refuse(400, "you must provide a model parameter", "invalid_request_error")
            profile = resolve_model(s.profiles, model.removeprefix("models/"), provider)
            if profile is None:
                raise Refuse(404, f"The model `{model}` does not exist", "not_found_error")
            if body.get("stream"):
                raise Refuse(400, "stream is not supported in a batch", "invalid_request_error")
            parse = {"anthropic": parse_messages, "google": parse_gemini}.get(provider, parse_chat)
            req = parse(profile, body)
        except Refuse as err:
            s.invoice.record(
                request_id=rid,
                provider=provider,
                api=f"batch:{api}",
                model=profile.id if profile else None,
                status="refused",
                http_status=err.status,
            )
            return err.status, {"type": err.kind, "message": err.message}
        req["request_id"] = rid
        req["stream"] = False
        rng = s.rng_for(raw)
        cache = draw_cache(
            profile,
            rng,
            req["prompt"],
            cache_control=req.get("cache_control", False),
            ttl=req.get("cache_ttl", "5m"),
        )
        plan = plan_output(
            profile,
            rng,
            limit=req["limit"],
            user_text=req["user_text"],
            answer_key=s.answer_key,
            reasoning_enabled=req["reasoning"],
            reasoning_cap=req.get("reasoning_cap"),
            effort=req.get("effort"),
            show_thinking=req.get("show_thinking", provider != "openai"),
            structured=bool(req.get("structured")),
        )
        body_id = rid if provider == "google" else s.body_id("chat" if api == "chat" else "msg")
        render = {"anthropic": self._render_messages, "google": self._render_gemini}.get(
            provider, self._render_chat
        )
        payload, _ = render(profile, req, plan, cache, body_id)
        raw_usage = payload["usageMetadata" if provider == "google" else "usage"]
        if provider == "google":
            usage = usage_from_gemini(raw_usage)
        elif provider == "anthropic":
            raw_usage["service_tier"] = "batch"
            usage = usage_from_anthropic(raw_usage)
        else:
            usage = usage_from_openai(raw_usage)
        s.invoice.record(
            request_id=rid,
            provider=provider,
            api=f"batch:{api}",
            model=profile.id,
            response_model=profile.response_model,
            body_id=body_id,
            status="incomplete" if plan.finish == "length" else "completed",
            http_status=200,
            usage=usage,
            raw_usage=raw_usage,
            batch=True,
        )
        return 200, payload

    # ------------------------------------------------------------------ OpenAI

    def _render_chat(
        self, profile: ModelProfile, req: dict[str, Any], plan: OutputPlan, cache: CachePlan, body_id: str
    ) -> tuple[Any, Rendered | None]:
        dialect = profile.provider if profile.provider in COMPAT_PROVIDERS else "openai"
        cost = None
        if dialect in ("xai", "openrouter"):  # they report their own cost
            billed = usage_from_openai(chat_usage(plan, cache))
            cost = self.s.invoice.price(profile.provider, profile.id, billed)
        p = ChatParams(
            body_id,
            int(time.time()),
            "fp_5f2c1a0b9e",
            req["include_usage"],
            req["include_obfuscation"] and dialect == "openai",
            dialect=dialect,
            cost_usd=cost,
            byok=profile.byok,
        )
        if req["stream"]:
            return None, chat_stream(profile, plan, cache, p)
        return chat_body(profile, plan, cache, p), None

    async def chat(self, request: Request) -> Response:
        return await self._generate(
            request, provider="openai", api="chat", parse=parse_chat, render=self._render_chat
        )

    async def compat_chat(self, request: Request) -> Response:
        """Chat Completions of an OpenAI-compatible provider (``/{provider}/v1/chat/completions``)."""
        provider = request.path_params["provider"]
        return await self._generate(
            request, provider=provider, api="chat", parse=parse_chat, render=self._render_chat
        )

    def _render_responses(
        self, profile: ModelProfile, req: dict[str, Any], plan: OutputPlan, cache: CachePlan, body_id: str
    ) -> tuple[Any, Rendered | None]:
        p = ResponsesParams(
            body_id,
            int(time.time()),
            self.s.body_id("rs"),
            self.s.body_id("msgi"),
            req["max_output_tokens"],
            req["effort"],
            req["instructions"],
            req["store"],
            req["temperature"],
            req["top_p"],
            req["metadata"],
            req["include_obfuscation"],
        )
        if req["stream"]:
            return None, responses_stream(profile, plan, cache, p)
        return responses_body(profile, plan, cache, p), None

    async def responses(self, request: Request) -> Response:
        return await self._generate(
            request,
            provider="openai",
            api="responses",
            parse=parse_responses,
            render=self._render_responses,
        )

    # ------------------------------------------------------------------ Anthropic

    def _render_messages(
        self, profile: ModelProfile, req: dict[str, Any], plan: OutputPlan, cache: CachePlan, body_id: str
    ) -> tuple[Any, Rendered | None]:
        sig = signature(random.Random(body_id)) if req["reasoning"] else ""
        p = MessageParams(body_id, req["request_id"], sig, bool(req["reasoning"]))
        if req["stream"]:
            return None, message_stream(profile, plan, cache, p)
        return message_body(profile, plan, cache, p), None

    async def messages(self, request: Request) -> Response:
        return await self._generate(
            request,
            provider="anthropic",
            api="messages",
            parse=parse_messages,
            render=self._render_messages,
        )

    async def count_tokens(self, request: Request) -> Response:
        rid = self.s.request_id("anthropic")
        headers = self._base_headers("anthropic", rid)
        try:
            if not self._authorised(request, "anthropic"):
                raise auth_error("anthropic")
            _, body = await self._json_body(request)
            model = str(body.get("model") or "")
            if resolve_model(self.s.profiles, model, "anthropic") is None:
                raise not_found("anthropic", model)
            msgs, texts = anthropic_texts(body)
            if not msgs:
                raise Refuse(400, "messages: Field required", "invalid_request_error")
        except Refuse as err:
            return self._error("anthropic", rid, err, headers)
        return Response(_dumps({"input_tokens": prompt_tokens(texts)}), headers=headers, media_type=_JSON)

    # ------------------------------------------------------------------ Google Gemini

    def _render_gemini(
        self, profile: ModelProfile, req: dict[str, Any], plan: OutputPlan, cache: CachePlan, body_id: str
    ) -> tuple[Any, Rendered | None]:
        p = GeminiParams(body_id, req["request_id"])
        if req["stream"]:
            return None, gemini_stream(profile, plan, cache, p)
        return gemini_body(profile, plan, cache, p), None

    async def gemini(self, request: Request) -> Response:
        """``POST /v1beta/models/{model}:{method}``."""
        model, _, method = request.path_params["target"].rpartition(":")
        if method == "countTokens":
            return await self.gemini_count_tokens(request, model)
        if method == "batchGenerateContent" and model and self.s.batches is not None:
            return await gemini_batch_create(self.s.batches, request, model, self._authorised)
        if method not in ("generateContent", "streamGenerateContent") or not model:
            rid = self.s.request_id("google")
            err = Refuse(404, f"Method {method!r} is not found for models/{model}.", "NOT_FOUND")
            return self._error("google", rid, err, self._base_headers("google", rid))
        stream = method == "streamGenerateContent"
        if stream and request.query_params.get("alt") != "sse":
            rid = self.s.request_id("google")
            err = Refuse(
                400, "The simulator streams only server-sent events: add ?alt=sse.", "INVALID_ARGUMENT"
            )
            return self._error("google", rid, err, self._base_headers("google", rid))
        return await self._generate(
            request,
            provider="google",
            api="gemini",
            parse=parse_gemini,
            render=self._render_gemini,
            path_model=model,
            path_stream=stream,
        )

    async def gemini_count_tokens(self, request: Request, model: str) -> Response:
        rid = self.s.request_id("google")
        headers = self._base_headers("google", rid)
        try:
            if not self._authorised(request, "google"):
                raise gemini_auth_error()
            _, body = await self._json_body(request)
            if resolve_model(self.s.profiles, model, "google") is None:
                raise gemini_not_found(model)
            answer = gemini_count_tokens(body)
        except Refuse as err:
            return self._error("google", rid, err, headers)
        return Response(_dumps(answer), headers=headers, media_type=_JSON)

    # ------------------------------------------------------------------ models

    def _model_obj(self, p: ModelProfile, anthropic: bool) -> dict[str, Any]:
        if anthropic:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.created))
            return {
                "type": "model",
                "id": p.response_model,
                "display_name": p.display_name,
                "created_at": created,
                "lifecycle": "active",
                "deprecated_at": None,
                "retires_at": None,
                "max_tokens": p.max_output_tokens,
            }
        return {"id": p.id, "object": "model", "created": p.created, "owned_by": "system"}

    async def models(self, request: Request) -> Response:
        anthropic = "anthropic-version" in request.headers
        provider = "anthropic" if anthropic else "openai"
        rid = self.s.request_id(provider)
        headers = self._base_headers(provider, rid)
        if not self._authorised(request, provider):
            return self._error(provider, rid, auth_error(provider), headers)
        model_id = request.path_params.get("model_id")
        if model_id is not None:
            p = resolve_model(self.s.profiles, model_id, provider)
            if p is None:
                return self._error(provider, rid, not_found(provider, model_id), headers)
            return Response(_dumps(self._model_obj(p, anthropic)), headers=headers, media_type=_JSON)
        data = [self._model_obj(p, anthropic) for p in self.s.profiles.values() if p.provider == provider]
        if anthropic:
            body: dict[str, Any] = {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        else:
            body = {"object": "list", "data": data}
        return Response(_dumps(body), headers=headers, media_type=_JSON)

    # ------------------------------------------------------------------ control

    async def invoice(self, request: Request) -> Response:
        return JSONResponse(self.s.invoice.as_json())

    async def invoice_reset(self, request: Request) -> Response:
        instance = self.s.invoice.reset()  # a new invoice epoch: a new instance id
        return JSONResponse({"ok": True, "instance": instance})

    async def answer_key(self, request: Request) -> Response:
        raw = await request.body()
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "key.jsonl"
            path.write_bytes(raw)
            try:
                key = AnswerKey.load(path)
            except ValueError as exc:
                return JSONResponse({"error": str(exc).replace(str(path), "body")}, status_code=400)
        self.s.answer_key.update(key)
        return JSONResponse({"ok": True, "added": len(key), "size": len(self.s.answer_key)})

    async def faults(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"null")
            self.s.faults = None if data is None else FaultConfig.from_mapping(data)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "faults": self.s.faults.as_dict() if self.s.faults else None})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "models": sorted(self.s.profiles)})


def build_app(state: SimState) -> Starlette:
    """The ASGI application serving ``state``."""
    install_cut_log_filter()
    h = _Handlers(state)
    state.batches = SimBatches(h.batch_line, state.batch_settings)
    routes = [
        *batch_routes(state.batches, h._authorised),
        Route("/v1/chat/completions", h.chat, methods=["POST"]),
        *(
            Route(path, h.compat_chat, methods=["POST"])
            for path in ("/{provider}/v1/chat/completions", "/{provider}/api/v1/chat/completions")
        ),
        Route("/v1/responses", h.responses, methods=["POST"]),
        Route("/v1/messages", h.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", h.count_tokens, methods=["POST"]),
        Route("/v1/models", h.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", h.models, methods=["GET"]),
        Route("/v1beta/models/{target:path}", h.gemini, methods=["POST"]),
        Route("/sim/invoice", h.invoice, methods=["GET"]),
        Route("/sim/invoice/reset", h.invoice_reset, methods=["POST"]),
        Route("/sim/answer-key", h.answer_key, methods=["POST"]),
        Route("/sim/faults", h.faults, methods=["POST"]),
        Route("/sim/health", h.health, methods=["GET"]),
    ]
    return Starlette(routes=routes)
