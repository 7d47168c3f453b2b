"""One call through the proxy, from the app's request to its answer: sent upstream, the answer
passed back (a stream event by event as it arrives), and, for the recorded endpoints, recorded
as one audit event before the answer completes (fail-closed) or beside it (fail-open).

Fail-closed, a plain answer is sent once its record is stored, with the receipt in its headers;
a stream's events go through as they come but the one that completes it (`data: [DONE]`, the
Responses API's `response.completed`) waits for the record, preceded by the receipt as an SSE
comment (`: rg-receipt {json}`). A record the trail does not take turns the answer into a 503
(a stream: an SSE `error` event, and no completion) in the OpenAI API's error shape. Fail-open,
the answer goes through at once, with `X-RG-Event-Id` and `X-RG-Status: queued`, and the record
follows (`ProxyRecorder.record_later`).

An upstream that answers an error passes it on unchanged (and the call is recorded as failed);
one that cannot be reached is a 502, one that does not answer in time a 504; a stream cut
midway ends with an SSE `error` event after what arrived (recorded with what arrived)."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import Response

from app.errors import ServiceError, problem_for
from app.ingest.audit_trail import AuditTrail
from app.kafka import KafkaAuditEvent, KafkaClientError
from app.metrics import ServiceMetrics
from app.proxy.assembly import Answer, endpoint_of, parse_json, plain_answer
from app.proxy.call import Call, Outcome, event_of
from app.proxy.recorder import ProxyRecorder, receipt_comment, receipt_headers
from app.proxy.sse import SseRelay
from app.proxy.streamed import PassedThrough, StreamedAnswer
from app.proxy.upstream import Upstream, answer_head, answer_headers, upstream_headers
from app.settings import Settings

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

JSON = "application/json"
ANONYMOUS = "anonymous"


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def openai_error(status: int, message: str, code: str) -> dict[str, Any]:
    """An error in the OpenAI API's shape: its type `upstream_error` when the upstream failed
    (502, 504), else `service_unavailable` (the trail did not take the record)."""
    kind = "upstream_error" if status in (502, 504) else "service_unavailable"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error_response(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps(openai_error(status, message, code)).encode()
    return Response(body, status_code=status, headers=headers, media_type=JSON)


def _sse_error(message: str, code: str, status: int = 503) -> bytes:
    payload = json.dumps(openai_error(status, message, code))
    return f"event: error\ndata: {payload}\n\n".encode()


class OpenAIProxy:
    """The proxy's parts: the upstream's client and the recorder."""

    def __init__(
        self,
        settings: Settings,
        trail: AuditTrail,
        metrics: ServiceMetrics,
        *,
        erasure: bool = False,
    ) -> None:
        self.upstream = Upstream(
            settings.openai_upstream_url,
            connect_timeout_s=settings.proxy_connect_timeout_s,
            read_timeout_s=settings.proxy_read_timeout_s,
        )
        self.recorder = ProxyRecorder(trail, metrics)
        self.fail_open = settings.proxy_mode == "fail-open"
        self._metrics = metrics
        # With erasure on, messages go as text, which erasure seals, and the user is the subject.
        self._structured = not erasure
        self._subject_field = settings.erasure_subject_field if erasure else None
        self._closing: set[asyncio.Task[None]] = set()

    def _event(self, call: Call, answer: Answer) -> KafkaAuditEvent:
        return event_of(
            call, answer, structured=self._structured, subject_field=self._subject_field
        )

    async def close(self, timeout_s: float) -> None:
        """Let fail-open records finish (up to `timeout_s`), then close the pool."""
        await self.recorder.close(timeout_s)
        await self.upstream.close()

    async def serve(
        self,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        user: str | None,
        key_label: str | None,
        caller: str,
        sidecar_key_header: bool,
    ) -> Response:
        """Answer one call to `/openai/v1/{path}`. Its record's user: `user` (the app's
        `X-RG-User`), else the request's `user` or `safety_identifier`, else `key_label`
        (the sidecar key's), else `anonymous`."""
        import httpx  # noqa: PLC0415 - loaded with the upstream's client, on the first call

        endpoint = endpoint_of(method, path)
        sent = upstream_headers(headers, sidecar_key_header=sidecar_key_header)
        started, started_utc = time.perf_counter(), datetime.now(UTC)
        calls: list[Call] = []

        def begin() -> None:
            # The call's record begun (the body parsed, its user found) once the request has
            # left for the upstream, while the upstream works: ~45 µs less between the app's
            # request and the upstream's (and so a stream's first byte), measured in the
            # service between streams, its caches cold.
            if endpoint is not None and not calls:
                request = parse_json(body)
                user_id = (
                    user or _text(request.get("user")) or _text(request.get("safety_identifier"))
                )
                stream = request.get("stream") is True
                user_id = user_id or key_label or ANONYMOUS
                call = Call(endpoint, request, user_id, stream, started_utc=started_utc)
                call._started = started  # the call's times count from its arrival
                calls.append(call)

        try:
            answer = await self.upstream.open(method, path, query, sent, body, on_sent=begin)
        except httpx.TimeoutException:
            begin()
            return await self._unanswered(
                calls[0] if calls else None, caller, 504, ("timeout", "upstream_timeout")
            )
        except httpx.HTTPError as exc:
            begin()
            return await self._unanswered(
                calls[0] if calls else None,
                caller,
                502,
                ("unreachable", "upstream_unreachable"),
                type(exc).__name__,
            )
        begin()
        call = calls[0] if calls else None
        if call is None:
            self._metrics.proxied.labels("other", "passed").inc()
            return PassedThrough(
                answer,
                f"{method} /openai/v1/{path}",
                status_code=answer.status_code,
                headers=answer_headers(answer.headers.multi_items()),
                background=BackgroundTask(answer.aclose),
            )
        call.first_byte()
        call.upstream_request_id = answer.headers.get("x-request-id")
        kind = answer.headers.get("content-type", "")
        if kind.startswith("text/event-stream") and answer.status_code < 400:
            call.stream = True
            return self._stream(call, answer, caller)
        return await self._plain(call, answer, caller)

    async def _unanswered(
        self,
        call: Call | None,
        caller: str,
        status: int,
        why: tuple[Outcome, str],
        detail: str | None = None,
    ) -> Response:
        outcome, code = why
        message = (
            "the upstream API did not answer in time"
            if status == 504
            else "the upstream API could not be reached"
        )
        if call is None:
            self._metrics.proxied.labels("other", "passed").inc()
            return _error_response(status, message, code)
        call.end(outcome, detail or message)
        answer = Answer(status=status, error=openai_error(status, message, code)["error"])
        body = json.dumps(openai_error(status, message, code)).encode()
        return await self._answer_recorded(call, answer, caller, (status, {}, body))

    async def _plain(self, call: Call, answer: "httpx.Response", caller: str) -> Response:
        import httpx  # noqa: PLC0415

        chunks: list[bytes] = []
        outcome: Outcome | None = "upstream_error" if answer.status_code >= 400 else None
        try:
            async for chunk in answer.aiter_bytes():
                chunks.append(chunk)
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.HTTPError:
            outcome = "cut"
        finally:
            await answer.aclose()
        content = b"".join(chunks)
        call.end(outcome)
        said = plain_answer(call.endpoint, answer.status_code, content)
        headers = answer_headers(answer.headers.multi_items())
        if outcome in ("timeout", "cut"):
            # Half a JSON body helps no client: a 502/504 in the API's shape instead.
            status, code = (
                (504, "upstream_timeout") if outcome == "timeout" else (502, "upstream_cut")
            )
            message = f"the upstream API's answer was cut off ({outcome})"
            body = json.dumps(openai_error(status, message, code)).encode()
            return await self._answer_recorded(call, said, caller, (status, {}, body))
        return await self._answer_recorded(
            call, said, caller, (answer.status_code, headers, content)
        )

    async def _answer_recorded(
        self, call: Call, answer: Answer, caller: str, sent: tuple[int, dict[str, str], bytes]
    ) -> Response:
        status, headers, content = sent
        # A plain answer: sent once recorded (fail-closed), or at once (fail-open).
        event = self._event(call, answer)
        if self.fail_open:
            self.recorder.record_later(event, caller)
            self._metrics.proxied.labels(call.endpoint, "queued").inc()
            headers = {**headers, "x-rg-event-id": event.event_id, "x-rg-status": "queued"}
            return Response(content, status_code=status, headers=headers)
        try:
            receipt = await self.recorder.record(event, caller)
        except (ServiceError, KafkaClientError) as exc:
            self._metrics.proxied.labels(call.endpoint, "refused").inc()
            problem = problem_for(exc)
            return _error_response(
                problem.status,
                f"the audit trail did not take this call's record: {problem.message}",
                problem.code,
                {**problem.headers, "x-rg-event-id": event.event_id},
            )
        self._metrics.proxied.labels(call.endpoint, "recorded").inc()
        return Response(
            content, status_code=status, headers={**headers, **receipt_headers(receipt)}
        )

    def _stream(self, call: Call, answer: "httpx.Response", caller: str) -> Response:
        headers: dict[str, str] | list[tuple[bytes, bytes]]
        raw = answer_head(answer.headers.raw)
        if raw is not None:
            raw.append((b"x-rg-event-id", call.event_id.encode()))
            if self.fail_open:
                raw.append((b"x-rg-status", b"queued"))
            headers = raw
        else:
            headers = answer_headers(answer.headers.multi_items())
            headers["x-rg-event-id"] = call.event_id
            if self.fail_open:
                headers["x-rg-status"] = "queued"
        return StreamedAnswer(
            self._relay(call, answer, caller), status_code=answer.status_code, headers=headers
        )

    async def _relay(
        self, call: Call, answer: "httpx.Response", caller: str
    ) -> AsyncIterator[bytes]:
        import httpx  # noqa: PLC0415

        relay = SseRelay(call.endpoint)
        recorded = False
        try:
            outcome: Outcome | None = None
            try:
                async for chunk in answer.aiter_bytes():
                    call.first_byte()
                    out = relay.feed(chunk)
                    if out:
                        yield out  # first: the events' data is read after they went on
                    relay.absorb()
            except httpx.TimeoutException:
                outcome = "timeout"
            except httpx.HTTPError:
                outcome = "cut"
            await answer.aclose()
            call.end(outcome)
            said = relay.assembler.assembled()
            said.status = answer.status_code
            event = self._event(call, said)
            recorded = True
            if self.fail_open:
                self.recorder.record_later(event, caller)
                self._metrics.proxied.labels(call.endpoint, "queued").inc()
                tail = receipt_comment(None, event.event_id)
            else:
                try:
                    receipt = await self.recorder.record(event, caller)
                except (ServiceError, KafkaClientError) as exc:
                    self._metrics.proxied.labels(call.endpoint, "refused").inc()
                    problem = problem_for(exc)
                    yield _sse_error(
                        f"the audit trail did not take this call's record: {problem.message}",
                        problem.code,
                    )
                    return
                self._metrics.proxied.labels(call.endpoint, "recorded").inc()
                tail = receipt_comment(receipt, event.event_id)
            if outcome is None:
                yield tail + relay.rest()
            else:
                message = f"the upstream API's stream was cut off ({outcome})"
                yield tail + _sse_error(message, f"upstream_{outcome}", 502)
        except BaseException:
            # The app went away (the task is cancelled) or the server stops it: what arrived
            # is recorded anyway, in the background; nothing here may await any more.
            if not recorded:
                self._record_gone(call, relay, answer, caller)
            raise

    def _record_gone(
        self, call: Call, relay: SseRelay, answer: "httpx.Response", caller: str
    ) -> None:
        # A stream whose app went away: what it was sent, recorded in the background.
        call.end("client_gone")
        said = relay.assembler.assembled()
        said.status = answer.status_code
        self.recorder.record_later(self._event(call, said), caller)
        closing = asyncio.get_running_loop().create_task(answer.aclose())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
