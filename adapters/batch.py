"""Batch APIs behind the adapters: OpenAI Batch (a JSONL file of Chat Completions requests) and
Anthropic Message Batches (docs/batch.md; PROTOCOLS.md sections 6 and 12).

A batch line carries the same body the adapter's live call would send (its ``request_params``, not
streamed), and a result line is parsed into the same :class:`~harness.types.Completion` the live path
produces (the adapter's own usage normalisation). :func:`batch_client` says whether a model's adapter
has a batch API here (OpenAI's own Chat Completions and Anthropic Messages); the others run live.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from harness.types import Adapter, Completion, ModelSpec, Request, Usage

from ._common import finish_reason
from .anthropic_messages import AnthropicMessagesAdapter, usage_from_anthropic
from .google_genai import GoogleGenAIAdapter
from .openai_chat import OpenAIChatAdapter

__all__ = ["BatchClient", "BatchResult", "BatchStatus", "batch_client", "has_batch_api"]

ResultKind = Literal["succeeded", "errored", "expired", "canceled"]


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A provider batch as last read."""

    provider_id: str
    ended: bool
    """No request of the batch will be answered any more (completed, expired, cancelled, failed)."""
    status: str
    """The provider's own status word."""
    total: int
    done: int
    failed: int
    expired: int
    created_at: float | None = None
    """Unix seconds (for finding a batch after a crash)."""
    metadata: Mapping[str, str] | None = None
    expires_at: float | None = None
    """Unix seconds: the end of the batch's completion window (24 h after its creation)."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's result line."""

    custom_id: str
    kind: ResultKind
    completion: Completion | None = None
    error_type: str | None = None
    error_message: str | None = None
    http_status: int | None = None


class BatchClient:
    """One model's batch API (subclasses per provider)."""

    provider = ""
    endpoint = ""

    def line(self, request: Request, custom_id: str) -> dict[str, Any]:
        raise NotImplementedError

    async def submit(self, lines: Sequence[Mapping[str, Any]], metadata: Mapping[str, str]) -> str:
        """Create the batch; return the provider's batch id."""
        raise NotImplementedError

    async def status(self, provider_id: str) -> BatchStatus:
        raise NotImplementedError

    async def cancel(self, provider_id: str) -> None:
        raise NotImplementedError

    async def results(self, provider_id: str) -> list[BatchResult]:
        """Every result line of an ended batch."""
        raise NotImplementedError

    async def recent(self, limit: int = 100) -> list[BatchStatus]:
        """The newest batches of the account (to find one created just before a crash)."""
        raise NotImplementedError


def _body(params: Mapping[str, Any]) -> dict[str, Any]:
    """SDK keyword arguments as the JSON body they send (``extra_body`` merged, headers dropped)."""
    body = {k: v for k, v in params.items() if k not in ("extra_body", "extra_headers", "stream")}
    body.update(dict(params.get("extra_body") or {}))
    return body


class OpenAIBatchClient(BatchClient):
    """OpenAI Batch over ``/v1/chat/completions`` (files upload, batches create, output/error files)."""

    provider = "openai"
    endpoint = "/v1/chat/completions"

    def __init__(self, adapter: OpenAIChatAdapter) -> None:
        self.adapter = adapter
        self.client: Any = adapter._client

    def line(self, request: Request, custom_id: str) -> dict[str, Any]:
        body = _body(self.adapter.request_params(request, stream=False))
        return {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}

    async def submit(self, lines: Sequence[Mapping[str, Any]], metadata: Mapping[str, str]) -> str:
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        f = await self.client.files.create(file=("tollbench-batch.jsonl", io.BytesIO(data)), purpose="batch")
        b = await self.client.batches.create(
            input_file_id=f.id, endpoint=self.endpoint, completion_window="24h", metadata=dict(metadata)
        )
        return str(b.id)

    def _status(self, b: Any) -> BatchStatus:
        counts = b.request_counts
        total = int(counts.total) if counts else 0
        done = int(counts.completed) if counts else 0
        failed = int(counts.failed) if counts else 0
        ended = b.status in ("completed", "expired", "cancelled", "failed")
        return BatchStatus(
            str(b.id),
            ended,
            str(b.status),
            total,
            done,
            failed,
            total - done - failed if b.status == "expired" else 0,
            float(b.created_at) if b.created_at else None,
            dict(b.metadata or {}),
            float(b.expires_at) if b.expires_at else None,
        )

    async def status(self, provider_id: str) -> BatchStatus:
        return self._status(await self.client.batches.retrieve(provider_id))

    async def cancel(self, provider_id: str) -> None:
        await self.client.batches.cancel(provider_id)

    async def recent(self, limit: int = 100) -> list[BatchStatus]:
        page = await self.client.batches.list(limit=limit)
        return [self._status(b) for b in page.data]

    async def results(self, provider_id: str) -> list[BatchResult]:
        b = await self.client.batches.retrieve(provider_id)
        out: list[BatchResult] = []
        for fid in (b.output_file_id, b.error_file_id):
            if not fid:
                continue
            content = await self.client.files.content(fid)
            for raw in content.text.splitlines():
                if raw.strip():
                    out.append(self.parse(json.loads(raw)))
        return out

    def parse(self, line: Mapping[str, Any]) -> BatchResult:
        """One output or error line -> the live path's Completion (or the error)."""
        from openai.types.chat import ChatCompletion

        cid = str(line.get("custom_id"))
        response = line.get("response") or None
        error = line.get("error") or None
        if response is None or int(response.get("status_code") or 0) != 200:
            if error is None and response is not None:
                error = (response.get("body") or {}).get("error") or {}
            err = dict(error or {})
            code = str(err.get("code") or err.get("type") or "batch_error")
            kind: ResultKind = (
                "expired"
                if code == "batch_expired"
                else "canceled"
                if code == "batch_cancelled"
                else "errored"
            )
            return BatchResult(
                cid,
                kind,
                error_type=code,
                error_message=str(err.get("message") or ""),
                http_status=int(response["status_code"])
                if response and response.get("status_code")
                else None,
            )
        completion_obj = ChatCompletion.model_validate(response["body"])
        choice = completion_obj.choices[0] if completion_obj.choices else None
        message = choice.message if choice is not None else None
        text = (message.content or "") if message is not None else ""
        raw_finish = choice.finish_reason if choice is not None else None
        completion = self.adapter._completion(
            text=text,
            usage=completion_obj.usage,
            raw_finish=raw_finish or "stop",
            refused=bool(message is not None and message.refusal),
            headers={"x-request-id": str(response.get("request_id") or "")},
            response_model=completion_obj.model,
            tier="batch",
            ttft=None,
            started=time.perf_counter(),
            output_bound=len(text.encode("utf-8", "surrogatepass")) + 1,
            streamed=False,
        )
        return BatchResult(cid, "succeeded", completion=completion, http_status=200)


class AnthropicBatchClient(BatchClient):
    """Anthropic Message Batches (create with inline requests, poll, results JSONL)."""

    provider = "anthropic"
    endpoint = "/v1/messages"

    def __init__(self, adapter: AnthropicMessagesAdapter) -> None:
        self.adapter = adapter
        self.client: Any = adapter._client

    def line(self, request: Request, custom_id: str) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": _body(self.adapter.request_params(request))}

    async def submit(self, lines: Sequence[Mapping[str, Any]], metadata: Mapping[str, str]) -> str:
        # Message Batches take no metadata: a lost answer is found again by time and size
        # (harness.run.batch), and its custom ids say whose requests it holds.
        b = await self.client.messages.batches.create(requests=[dict(x) for x in lines])
        return str(b.id)

    def _status(self, b: Any) -> BatchStatus:
        c = b.request_counts
        total = int(c.processing + c.succeeded + c.errored + c.canceled + c.expired)
        created = b.created_at.timestamp() if isinstance(b.created_at, datetime) else None
        expires = b.expires_at.timestamp() if isinstance(b.expires_at, datetime) else None
        return BatchStatus(
            str(b.id),
            b.processing_status == "ended",
            str(b.processing_status),
            total,
            int(c.succeeded),
            int(c.errored),
            int(c.expired),
            created,
            None,
            expires,
        )

    async def status(self, provider_id: str) -> BatchStatus:
        return self._status(await self.client.messages.batches.retrieve(provider_id))

    async def cancel(self, provider_id: str) -> None:
        await self.client.messages.batches.cancel(provider_id)

    async def recent(self, limit: int = 100) -> list[BatchStatus]:
        page = await self.client.messages.batches.list(limit=limit)
        return [self._status(b) for b in page.data]

    async def results(self, provider_id: str) -> list[BatchResult]:
        out: list[BatchResult] = []
        decoder = await self.client.messages.batches.results(provider_id)
        async for item in decoder:
            out.append(self.parse(item.model_dump()))
        return out

    def parse(self, line: Mapping[str, Any]) -> BatchResult:
        cid = str(line.get("custom_id"))
        result = dict(line.get("result") or {})
        kind = str(result.get("type"))
        if kind != "succeeded":
            err = ((result.get("error") or {}).get("error") or {}) if kind == "errored" else {}
            return BatchResult(
                cid,
                kind if kind in ("errored", "expired", "canceled") else "errored",  # type: ignore[arg-type]
                error_type=str(err.get("type") or kind),
                error_message=str(err.get("message") or ""),
            )
        message = dict(result.get("message") or {})
        text = "".join(
            str(block.get("text") or "")
            for block in message.get("content") or []
            if isinstance(block, Mapping) and block.get("type") == "text"
        )
        usage = {k: v for k, v in dict(message.get("usage") or {}).items() if v is not None}
        raw_finish = message.get("stop_reason") or "end_turn"
        tier = usage.get("service_tier")
        completion = Completion(
            text=text,
            usage=usage_from_anthropic(usage),
            usage_known=bool(usage),
            finish_reason=finish_reason(str(raw_finish)),
            raw_finish_reason=str(raw_finish),
            raw_usage=usage,
            request_id=None,
            response_model=message.get("model"),
            service_tier=tier if isinstance(tier, str) else "batch",
            ttft_s=None,
            latency_s=0.0,
            rate_limits=None,
        )
        return BatchResult(cid, "succeeded", completion=completion, http_status=200)


class GoogleBatchClient(BatchClient):
    """Gemini batch mode (inline requests; the batch's display name names the run and the batch)."""

    provider = "google"
    endpoint = "batchGenerateContent"

    def __init__(self, adapter: GoogleGenAIAdapter) -> None:
        self.adapter = adapter
        self.client: Any = adapter._client
        self._model = adapter.spec.model

    def line(self, request: Request, custom_id: str) -> dict[str, Any]:
        params = self.adapter.request_params(request)
        config = {k: v for k, v in dict(params["config"]).items() if k != "http_options"}
        extra = dict((params["config"].get("http_options") or {}).get("extra_body") or {})
        if extra:  # checked by the adapter; the batch has no per-request extra body
            config.update(extra)
        return {"contents": params["contents"], "config": config, "metadata": {"key": custom_id}}

    async def submit(self, lines: Sequence[Mapping[str, Any]], metadata: Mapping[str, str]) -> str:
        name = f"tollbench:{metadata.get('tollbench_run', '')}:{metadata.get('tollbench_batch', '')}"
        job = await self.client.aio.batches.create(
            model=self._model, src=[dict(x) for x in lines], config={"display_name": name}
        )
        return str(job.name)

    def _status(self, job: Any) -> BatchStatus:
        state = str(getattr(job.state, "value", job.state) or "")
        ended = state in (
            "JOB_STATE_SUCCEEDED",
            "JOB_STATE_FAILED",
            "JOB_STATE_CANCELLED",
            "JOB_STATE_EXPIRED",
        )
        responses = list(job.dest.inlined_responses or []) if job.dest is not None else []
        done = sum(1 for r in responses if r.response is not None)
        failed = sum(1 for r in responses if r.error is not None and (r.error.code or 0) not in (1, 4))
        expired = sum(1 for r in responses if r.error is not None and r.error.code == 4)
        meta: dict[str, str] = {}
        parts = str(job.display_name or "").split(":")
        if len(parts) == 3 and parts[0] == "tollbench":
            meta = {"tollbench_run": parts[1], "tollbench_batch": parts[2]}
        created = job.create_time.timestamp() if isinstance(job.create_time, datetime) else None
        return BatchStatus(
            str(job.name), ended, state, len(responses), done, failed, expired, created, meta,
            created + 86400.0 if created is not None else None,
        )  # fmt: skip

    async def status(self, provider_id: str) -> BatchStatus:
        return self._status(await self.client.aio.batches.get(name=provider_id))

    async def cancel(self, provider_id: str) -> None:
        await self.client.aio.batches.cancel(name=provider_id)

    async def recent(self, limit: int = 100) -> list[BatchStatus]:
        out: list[BatchStatus] = []
        pager = await self.client.aio.batches.list(config={"page_size": limit})
        async for job in pager:
            out.append(self._status(job))
            if len(out) >= limit:
                break
        return out

    async def results(self, provider_id: str) -> list[BatchResult]:
        job = await self.client.aio.batches.get(name=provider_id)
        responses = list(job.dest.inlined_responses or []) if job.dest is not None else []
        return [self.parse(r) for r in responses]

    def parse(self, item: Any) -> BatchResult:
        from .google_genai import gemini_finish_reason, usage_from_gemini

        cid = str((item.metadata or {}).get("key"))
        if item.response is None:
            err = item.error
            code = int(getattr(err, "code", 0) or 0)
            kind: ResultKind = "expired" if code == 4 else "canceled" if code == 1 else "errored"
            return BatchResult(
                cid, kind, error_type=f"code_{code}", error_message=str(getattr(err, "message", ""))
            )
        response = item.response
        candidate = response.candidates[0] if response.candidates else None
        parts = candidate.content.parts if candidate is not None and candidate.content is not None else None
        text = "".join(p.text for p in parts or [] if p.text and not p.thought)
        raw = candidate.finish_reason if candidate is not None else None
        raw_finish = str(getattr(raw, "value", raw)) if raw is not None else "STOP"
        meta = response.usage_metadata
        completion = Completion(
            text=text,
            usage=usage_from_gemini(meta) if meta is not None else Usage(),
            usage_known=meta is not None,
            finish_reason=gemini_finish_reason(raw_finish),
            raw_finish_reason=raw_finish,
            raw_usage=meta.model_dump(mode="json", exclude_none=True) if meta is not None else None,
            request_id=response.response_id,
            response_model=response.model_version,
            service_tier="batch",
        )
        return BatchResult(cid, "succeeded", completion=completion, http_status=200)


def has_batch_api(spec: ModelSpec) -> bool:
    """Whether :func:`batch_client` gives a batch API for this model (without building its adapter)."""
    if spec.provider == "openai" and spec.api == "chat":
        return (spec.dialect or "openai") == "openai"
    return spec.provider in ("anthropic", "google")


def batch_client(adapter: Adapter) -> BatchClient | None:
    """The batch API behind ``adapter``, or None when its model runs live only (another provider's
    API, OpenAI-compatible servers, the Responses API)."""
    if (
        isinstance(adapter, OpenAIChatAdapter)
        and adapter.dialect == "openai"
        and adapter.provider == "openai"
    ):
        return OpenAIBatchClient(adapter)
    if isinstance(adapter, AnthropicMessagesAdapter):
        return AnthropicBatchClient(adapter)
    if isinstance(adapter, GoogleGenAIAdapter):
        return GoogleBatchClient(adapter)
    return None
