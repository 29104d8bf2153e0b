"""The simulator's batch APIs: OpenAI Batch (files, batches, output and error files) and Anthropic
Message Batches (create, list, retrieve, cancel, results), billed at the batch price.

Time is scaled (:class:`BatchSettings`): a batch's requests finish evenly over ``complete_s`` seconds
after its creation (the real APIs take minutes to 24 h), and its completion window (24 h on both APIs)
lasts ``window_s`` seconds; past it the batch expires with the requests finished so far answered (and
billed) and the rest ``expired``. A cancel does the same at the moment it arrives. Progress is
computed when a batch is read, so nothing runs in the background.

Faults (:class:`BatchSettings`): ``errored_every`` makes every k-th request of a batch fail (an error
line, not billed); ``lose_creates`` creates the next N batches and then drops the connection before
answering, as a process lost between create and record sees it (the batch exists and runs).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["BatchSettings", "SimBatches", "batch_routes"]

_JSON = "application/json"

#: (provider, api, body) -> (HTTP status, response body, billed?) for one request of a batch.
LineRunner = Callable[[str, str, dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass(slots=True)
class BatchSettings:
    """The batch APIs' time scale and faults (mutable; read at each request)."""

    complete_s: float = 1.0
    """Seconds from create until every request of a batch is answered (evenly spread)."""
    window_s: float = 86400.0
    """The completion window ("24h"), in seconds: past it a batch expires with partial output."""
    errored_every: int = 0
    """Every k-th request of a batch fails with an error line (0: none)."""
    lose_creates: int = 0
    """The next N batch creates succeed but their answer is lost (the connection drops)."""

    def update(self, values: Mapping[str, Any]) -> None:
        for key in ("complete_s", "window_s"):
            if key in values:
                setattr(self, key, float(values[key]))
        for key in ("errored_every", "lose_creates"):
            if key in values:
                setattr(self, key, int(values[key]))


@dataclass(slots=True)
class _Batch:
    id: str
    provider: str
    endpoint: str
    lines: list[tuple[str, dict[str, Any]]]
    created: float
    window_s: float
    complete_s: float
    errored_every: int
    metadata: dict[str, Any] | None = None
    input_file_id: str | None = None
    cancel_at: float | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    """custom_id -> {"kind": succeeded|errored|expired|canceled, "status", "body"} in finish order."""
    final: str | None = None
    """completed / expired / cancelled once ended."""
    ended: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class SimBatches:
    """Files and batches of one simulator (thread-safe; progress computed on read)."""

    def __init__(self, run_line: LineRunner, settings: BatchSettings | None = None) -> None:
        self._run_line = run_line
        self.settings = settings or BatchSettings()
        self._lock = threading.Lock()
        self._files: dict[str, tuple[str, str, bytes]] = {}
        self._batches: dict[str, _Batch] = {}
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:06d}{int(time.time() * 1000) % 10**8:08d}"

    # -- files -------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        with self._lock:
            fid = self._id("file-sim")
            self._files[fid] = (filename, purpose, data)
        return self._file_obj(fid)

    def _file_obj(self, fid: str) -> dict[str, Any]:
        name, purpose, data = self._files[fid]
        return {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }

    def file_content(self, fid: str) -> bytes | None:
        with self._lock:
            got = self._files.get(fid)
        return None if got is None else got[2]

    # -- batches -----------------------------------------------------------------------------

    def create(
        self,
        provider: str,
        endpoint: str,
        lines: list[tuple[str, dict[str, Any]]],
        *,
        metadata: dict[str, Any] | None = None,
        input_file_id: str | None = None,
    ) -> tuple[_Batch, bool]:
        """A new batch, and whether its answer is to be lost (the ``lose_creates`` fault)."""
        st = self.settings
        with self._lock:
            bid = self._id("batch_sim" if provider == "openai" else "msgbatch_sim")
            b = _Batch(
                bid,
                provider,
                endpoint,
                lines,
                time.time(),
                st.window_s,
                st.complete_s,
                st.errored_every,
                metadata=metadata,
                input_file_id=input_file_id,
            )
            self._batches[bid] = b
            lose = st.lose_creates > 0
            if lose:
                st.lose_creates -= 1
        return b, lose

    def get(self, bid: str) -> _Batch | None:
        with self._lock:
            b = self._batches.get(bid)
        if b is not None:
            self._advance(b)
        return b

    def list(self, provider: str) -> list[_Batch]:
        with self._lock:
            found = [b for b in self._batches.values() if b.provider == provider]
        for b in found:
            self._advance(b)
        return sorted(found, key=lambda b: b.created, reverse=True)

    def cancel(self, bid: str) -> _Batch | None:
        with self._lock:
            b = self._batches.get(bid)
            if b is not None and b.final is None and b.cancel_at is None:
                b.cancel_at = time.time()
        if b is not None:
            self._advance(b)
        return b

    def _advance(self, b: _Batch, now: float | None = None) -> None:
        """Answer every request due by now; end the batch when all are, or at expiry / cancel."""
        with self._lock:
            if b.final is not None:
                return
            now = time.time() if now is None else now
            end_t = b.created + b.window_s
            if b.cancel_at is not None:
                end_t = min(end_t, b.cancel_at)
            n = len(b.lines)
            upto = min(now, end_t)
            for i, (cid, body) in enumerate(b.lines):
                if cid in b.results:
                    continue
                due = b.created + b.complete_s * (i + 1) / max(1, n)
                if due > upto:
                    break
                if b.errored_every and (i + 1) % b.errored_every == 0:
                    b.results[cid] = {
                        "kind": "errored",
                        "status": 500,
                        "body": {"type": "api_error", "message": "The server had an error (sim fault)."},
                    }
                    continue
                api = {"anthropic": "messages", "google": "gemini"}.get(b.provider, "chat")
                status, payload = self._run_line(b.provider, api, body)
                kind = "succeeded" if status == 200 else "errored"
                b.results[cid] = {"kind": kind, "status": status, "body": payload}
                usage = payload.get("usage") if status == 200 else None
                meta = payload.get("usageMetadata") if status == 200 else None
                if isinstance(meta, dict):
                    usage = {
                        "input_tokens": meta.get("promptTokenCount", 0),
                        "output_tokens": int(meta.get("candidatesTokenCount", 0) or 0)
                        + int(meta.get("thoughtsTokenCount", 0) or 0),
                    }
                if isinstance(usage, dict):
                    b.usage["input_tokens"] += int(
                        usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0
                    )
                    b.usage["output_tokens"] += int(
                        usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0
                    )
            if len(b.results) == n:
                b.final, b.ended = "completed", min(now, end_t)
            elif now >= end_t:
                b.final = "cancelled" if b.cancel_at is not None and b.cancel_at <= end_t else "expired"
                b.ended = end_t
                left = "canceled" if b.final == "cancelled" else "expired"
                for cid, _ in b.lines:
                    b.results.setdefault(cid, {"kind": left, "status": None, "body": None})
            else:
                return
            if b.provider == "openai":
                self._write_openai_files(b)

    def _write_openai_files(self, b: _Batch) -> None:
        out: list[str] = []
        err: list[str] = []
        for cid, r in b.results.items():
            rid = f"batch_req_{abs(hash((b.id, cid))) % 10**12:012d}"
            if r["kind"] == "succeeded":
                line = {
                    "id": rid,
                    "custom_id": cid,
                    "response": {"status_code": 200, "request_id": rid, "body": r["body"]},
                    "error": None,
                }
                out.append(json.dumps(line))
            elif r["kind"] == "errored":
                line = {
                    "id": rid,
                    "custom_id": cid,
                    "response": {"status_code": r["status"], "request_id": rid, "body": {"error": r["body"]}},
                    "error": None,
                }
                err.append(json.dumps(line))
            else:
                code = "batch_expired" if r["kind"] == "expired" else "batch_cancelled"
                line = {
                    "id": rid,
                    "custom_id": cid,
                    "response": None,
                    "error": {"code": code, "message": f"This request was not executed ({r['kind']})."},
                }
                err.append(json.dumps(line))
        if out:
            fid = self._id("file-simout")
            self._files[fid] = (f"{b.id}_output.jsonl", "batch_output", ("\n".join(out) + "\n").encode())
            b.output_file_id = fid
        if err:
            fid = self._id("file-simerr")
            self._files[fid] = (f"{b.id}_error.jsonl", "batch_output", ("\n".join(err) + "\n").encode())
            b.error_file_id = fid

    # -- wire shapes -------------------------------------------------------------------------

    def openai_obj(self, b: _Batch) -> dict[str, Any]:
        counts = {
            "total": len(b.lines),
            "completed": sum(1 for r in b.results.values() if r["kind"] == "succeeded"),
            "failed": sum(1 for r in b.results.values() if r["kind"] == "errored"),
        }
        status = b.final or ("cancelling" if b.cancel_at is not None else "in_progress")
        usage = {
            "input_tokens": b.usage["input_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": b.usage["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": b.usage["input_tokens"] + b.usage["output_tokens"],
        }
        return {
            "id": b.id,
            "object": "batch",
            "endpoint": b.endpoint,
            "errors": None,
            "input_file_id": b.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id,
            "created_at": int(b.created),
            "in_progress_at": int(b.created),
            "expires_at": int(b.created + b.window_s),
            "finalizing_at": int(b.ended) if b.ended else None,
            "completed_at": int(b.ended) if b.final == "completed" and b.ended else None,
            "failed_at": None,
            "expired_at": int(b.ended) if b.final == "expired" and b.ended else None,
            "cancelling_at": int(b.cancel_at) if b.cancel_at else None,
            "cancelled_at": int(b.ended) if b.final == "cancelled" and b.ended else None,
            "request_counts": counts,
            "usage": usage,
            "metadata": b.metadata,
        }

    def anthropic_obj(self, b: _Batch, root: str) -> dict[str, Any]:
        kinds = [r["kind"] for r in b.results.values()]
        counts = {
            "processing": len(b.lines) - len(kinds),
            "succeeded": kinds.count("succeeded"),
            "errored": kinds.count("errored"),
            "canceled": kinds.count("canceled"),
            "expired": kinds.count("expired"),
        }
        status = "ended" if b.final else ("canceling" if b.cancel_at is not None else "in_progress")
        return {
            "id": b.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _iso(b.created),
            "expires_at": _iso(b.created + b.window_s),
            "ended_at": _iso(b.ended) if b.final else None,
            "cancel_initiated_at": _iso(b.cancel_at),
            "archived_at": None,
            "results_url": f"{root}/v1/messages/batches/{b.id}/results" if b.final else None,
        }

    def gemini_obj(self, b: _Batch) -> dict[str, Any]:
        """A Gemini batch as ``batches.get`` answers it (an operation with the batch as metadata)."""
        state = {
            "completed": "BATCH_STATE_SUCCEEDED",
            "expired": "BATCH_STATE_EXPIRED",
            "cancelled": "BATCH_STATE_CANCELLED",
        }.get(b.final or "", "BATCH_STATE_RUNNING")
        meta: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": b.endpoint,
            "displayName": (b.metadata or {}).get("display_name"),
            "state": state,
            "createTime": _iso(b.created),
            "updateTime": _iso(b.ended or time.time()),
        }
        if b.final:
            meta["endTime"] = _iso(b.ended)
            out: list[dict[str, Any]] = []
            for cid, r in b.results.items():
                if r["kind"] == "succeeded":
                    out.append({"response": r["body"], "metadata": {"key": cid}})
                else:
                    code = {"expired": 4, "canceled": 1}.get(r["kind"], 13)
                    message = (r["body"] or {}).get("message") if r["kind"] == "errored" else r["kind"]
                    out.append({"error": {"code": code, "message": str(message)}, "metadata": {"key": cid}})
            meta["output"] = {"inlinedResponses": {"inlinedResponses": out}}
        return {"name": f"batches/{b.id}", "metadata": meta, "done": b.final is not None}

    def anthropic_results(self, b: _Batch) -> bytes:
        out: list[str] = []
        for cid, r in b.results.items():
            kind = r["kind"]
            result: dict[str, Any]
            if kind == "succeeded":
                result = {"type": "succeeded", "message": r["body"]}
            elif kind == "errored":
                err = r["body"] or {}
                inner = err.get("error", err) if isinstance(err, dict) else {}
                result = {
                    "type": "errored",
                    "error": {"type": "error", "error": inner, "request_id": None},
                }
            else:
                result = {"type": kind}
            out.append(json.dumps({"custom_id": cid, "result": result}))
        return ("\n".join(out) + "\n").encode()


# ---------------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------------


def _err(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


def _multipart(content_type: str, data: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name -> (filename, bytes) (no extra dependency)."""
    boundary = ""
    for part in content_type.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("multipart body without a boundary")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in data.split(b"--" + boundary.encode()):
        chunk = chunk.strip(b"\r\n")
        if not chunk or chunk == b"--":
            continue
        head, _, body = chunk.partition(b"\r\n\r\n")
        name: str | None = None
        filename: str | None = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition"):
                for item in line.split(";"):
                    k, _, v = item.strip().partition("=")
                    if k == "name":
                        name = v.strip('"')
                    elif k == "filename":
                        filename = v.strip('"')
        if name is not None:
            fields[name] = (filename, body)
    return fields


async def gemini_batch_create(
    batches: SimBatches, request: Request, model: str, authorised: Callable[[Request, str], bool]
) -> Response:
    """``POST /v1beta/models/{model}:batchGenerateContent`` with inline requests."""
    if not authorised(request, "google"):
        return JSONResponse(
            {"error": {"code": 403, "message": "API key missing", "status": "PERMISSION_DENIED"}}, 403
        )
    body = json.loads(await request.body())
    batch = body.get("batch") or {}
    reqs = (((batch.get("inputConfig") or {}).get("requests") or {}).get("requests")) or []
    lines: list[tuple[str, dict[str, Any]]] = []
    for i, r in enumerate(reqs):
        key = str(((r.get("metadata") or {}).get("key")) or i)
        inner = dict(r.get("request") or {})
        inner.setdefault("model", model)
        lines.append((key, inner))
    if not lines:
        return JSONResponse(
            {"error": {"code": 400, "message": "no requests", "status": "INVALID_ARGUMENT"}}, 400
        )
    meta = {"display_name": batch.get("displayName")}
    b, lose = batches.create("google", f"models/{model.removeprefix('models/')}", lines, metadata=meta)
    if lose:
        raise ConnectionAbortedError("sim fault: batch created, answer lost")
    return JSONResponse(batches.gemini_obj(b))


def batch_routes(batches: SimBatches, authorised: Callable[[Request, str], bool]) -> list[Route]:
    """The OpenAI and Anthropic batch routes over ``batches``."""

    async def upload(request: Request) -> Response:
        if not authorised(request, "openai"):
            return _err(401, "Incorrect API key provided.", "invalid_request_error")
        try:
            fields = _multipart(request.headers.get("content-type", ""), await request.body())
        except ValueError as exc:
            return _err(400, str(exc))
        purpose = fields.get("purpose", (None, b""))[1].decode()
        got = fields.get("file")
        if got is None:
            return _err(400, "missing 'file'")
        return JSONResponse(batches.add_file(got[0] or "upload.jsonl", purpose, got[1]))

    async def file_content(request: Request) -> Response:
        data = batches.file_content(request.path_params["file_id"])
        if data is None:
            return _err(404, "No such File object", "invalid_request_error")
        return Response(data, media_type="application/octet-stream")

    async def openai_create(request: Request) -> Response:
        if not authorised(request, "openai"):
            return _err(401, "Incorrect API key provided.", "invalid_request_error")
        body = json.loads(await request.body())
        fid = body.get("input_file_id")
        endpoint = body.get("endpoint")
        data = batches.file_content(fid) if isinstance(fid, str) else None
        if data is None:
            return _err(400, f"Invalid 'input_file_id': {fid!r}")
        if body.get("completion_window") != "24h":
            return _err(400, "completion_window must be '24h'")
        if endpoint != "/v1/chat/completions":
            return _err(400, f"the simulator's batches serve /v1/chat/completions, not {endpoint!r}")
        lines: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for raw in data.decode().splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            cid = line.get("custom_id")
            if not isinstance(cid, str) or cid in seen:
                return _err(400, f"duplicate or missing custom_id {cid!r}")
            if line.get("url") != endpoint:
                return _err(400, f"line {cid}: url {line.get('url')!r} is not the batch's endpoint")
            seen.add(cid)
            lines.append((cid, dict(line.get("body") or {})))
        if not lines or len(lines) > 50_000:
            return _err(400, "a batch holds 1 to 50,000 requests")
        b, lose = batches.create("openai", endpoint, lines, metadata=body.get("metadata"), input_file_id=fid)
        if lose:
            raise ConnectionAbortedError("sim fault: batch created, answer lost")
        return JSONResponse(batches.openai_obj(b))

    async def openai_get(request: Request) -> Response:
        b = batches.get(request.path_params["batch_id"])
        if b is None or b.provider != "openai":
            return _err(404, "No such batch", "invalid_request_error")
        return JSONResponse(batches.openai_obj(b))

    async def openai_cancel(request: Request) -> Response:
        b = batches.cancel(request.path_params["batch_id"])
        if b is None or b.provider != "openai":
            return _err(404, "No such batch", "invalid_request_error")
        return JSONResponse(batches.openai_obj(b))

    async def openai_list(request: Request) -> Response:
        data = [batches.openai_obj(b) for b in batches.list("openai")]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )

    def root(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    async def anthropic_create(request: Request) -> Response:
        if not authorised(request, "anthropic"):
            body = {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            }
            return JSONResponse(body, status_code=401)
        body = json.loads(await request.body())
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not 1 <= len(reqs) <= 100_000:
            return _err(400, "requests: a batch holds 1 to 100,000 requests")
        lines: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for r in reqs:
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or cid in seen:
                return _err(400, f"duplicate or missing custom_id {cid!r}")
            seen.add(cid)
            lines.append((cid, dict(r.get("params") or {})))
        b, lose = batches.create("anthropic", "/v1/messages", lines)
        if lose:
            raise ConnectionAbortedError("sim fault: batch created, answer lost")
        return JSONResponse(batches.anthropic_obj(b, root(request)))

    async def anthropic_get(request: Request) -> Response:
        b = batches.get(request.path_params["batch_id"])
        if b is None or b.provider != "anthropic":
            return JSONResponse(
                {"type": "error", "error": {"type": "not_found_error", "message": "batch not found"}},
                status_code=404,
            )
        return JSONResponse(batches.anthropic_obj(b, root(request)))

    async def anthropic_cancel(request: Request) -> Response:
        b = batches.cancel(request.path_params["batch_id"])
        if b is None or b.provider != "anthropic":
            return JSONResponse(
                {"type": "error", "error": {"type": "not_found_error", "message": "batch not found"}},
                status_code=404,
            )
        return JSONResponse(batches.anthropic_obj(b, root(request)))

    async def anthropic_list(request: Request) -> Response:
        data = [batches.anthropic_obj(b, root(request)) for b in batches.list("anthropic")]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def anthropic_results(request: Request) -> Response:
        b = batches.get(request.path_params["batch_id"])
        if b is None or b.provider != "anthropic" or b.final is None:
            return JSONResponse(
                {"type": "error", "error": {"type": "not_found_error", "message": "results not ready"}},
                status_code=404,
            )
        return Response(batches.anthropic_results(b), media_type="application/binary")

    async def gemini_batch(request: Request) -> Response:
        name = request.path_params["name"]
        cancel = request.method == "POST" and name.endswith(":cancel")
        bid = name.removesuffix(":cancel")
        b = batches.cancel(bid) if cancel else batches.get(bid)
        if b is None or b.provider != "google":
            return JSONResponse({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}, 404)
        return JSONResponse({} if cancel else batches.gemini_obj(b))

    async def gemini_list(request: Request) -> Response:
        return JSONResponse({"operations": [batches.gemini_obj(b) for b in batches.list("google")]})

    async def settings(request: Request) -> Response:
        values = json.loads(await request.body() or b"{}")
        if isinstance(values, dict):
            batches.settings.update(values)
        s = batches.settings
        return JSONResponse(
            {
                "complete_s": s.complete_s,
                "window_s": s.window_s,
                "errored_every": s.errored_every,
                "lose_creates": s.lose_creates,
            }
        )

    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", openai_create, methods=["POST"]),
        Route("/v1/batches", openai_list, methods=["GET"]),
        Route("/v1/batches/{batch_id}", openai_get, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", openai_cancel, methods=["POST"]),
        Route("/v1/messages/batches", anthropic_create, methods=["POST"]),
        Route("/v1/messages/batches", anthropic_list, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", anthropic_get, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/cancel", anthropic_cancel, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", anthropic_results, methods=["GET"]),
        Route("/v1beta/batches", gemini_list, methods=["GET"]),
        Route("/v1beta/batches/{name:path}", gemini_batch, methods=["GET", "POST"]),
        Route("/sim/batch-settings", settings, methods=["POST"]),
    ]
