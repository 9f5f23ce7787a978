"""HTTP front of the gateway: OpenAI routes, proxying, health, metrics and state."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scalezero import __version__
from scalezero.gateway.events import EventLog
from scalezero.gateway.launcher import InstanceSpec
from scalezero.gateway.pool import Lease, Pool, PoolError, PoolLimits
from scalezero.gateway.prom import GatewayMetrics
from scalezero.gateway.schemas import ChatCompletionRequest, CompletionRequest
from scalezero.gateway.upstream import UpstreamClient, UpstreamError
from scalezero.strategies.base import Policy

OPEN_PATHS = frozenset({"/healthz"})
#: Status counted for a request whose client went away before the answer (nginx's code).
CLIENT_CLOSED = 499

logger = logging.getLogger("scalezero.gateway")

RouteHandler = Callable[[Request], Awaitable[Response]]


@dataclasses.dataclass
class GatewayConfig:
    deployment: str
    spec: InstanceSpec
    policy: Policy
    limits: PoolLimits = dataclasses.field(default_factory=PoolLimits)
    events_path: Path | None = None
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    #: Largest max_tokens accepted; defaults to the instance's context size.
    max_tokens_limit: int | None = None
    #: Token ids at or above this are rejected in logit_bias (the model's vocabulary size).
    vocab_size: int | None = None
    upstream_timeout_s: float = 600.0


class ApiError(Exception):
    """An error answered in the OpenAI error body shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            error_body(self.message, self.error_type, self.param, self.code),
            status_code=self.status_code,
            headers=self.headers,
        )


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def internal_error_response(exc: Exception) -> JSONResponse:
    """A bug in the gateway, not the client's fault; still answered in the OpenAI shape."""
    logger.error("unexpected error", exc_info=exc)
    return JSONResponse(
        error_body(f"internal gateway error: {type(exc).__name__}", "server_error"),
        status_code=500,
    )


def _openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    # Bodies are parsed by hand (to control size, errors and forwarding) but documented
    # in the OpenAPI schema all the same.
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


class Gateway:
    """The app's state: pools, upstream client, metrics."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.events = EventLog(config.events_path)
        self.metrics = GatewayMetrics(lambda: self.pools.values())
        pool = Pool(
            config.deployment,
            config.spec,
            config.policy,
            config.limits,
            self.events,
            on_cold_start=lambda s: self.metrics.observe_cold_start(config.deployment, s),
        )
        self.pools: dict[str, Pool] = {config.deployment: pool}
        self.upstream = UpstreamClient(read_timeout_s=config.upstream_timeout_s)
        self.max_tokens_limit = config.max_tokens_limit or config.spec.n_ctx

    async def start(self) -> None:
        for pool in self.pools.values():
            await pool.start()

    async def stop(self) -> None:
        for pool in self.pools.values():
            await pool.shutdown()
        await self.upstream.aclose()
        self.events.close()

    def pool_for(self, model: str | None) -> Pool:
        if model is None or model == "":
            return next(iter(self.pools.values()))
        try:
            return self.pools[model]
        except KeyError:
            raise ApiError(
                404,
                f"The model `{model}` does not exist (available: {', '.join(self.pools)})",
                param="model",
                code="model_not_found",
            ) from None


def _reject_constant(name: str) -> float:
    # Python's json accepts NaN and Infinity; JSON does not, and an instance may choke on them.
    raise ValueError(f"{name} is not valid JSON")


async def _read_json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body larger than {max_bytes} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(
                413, f"request body larger than {max_bytes} bytes", code="body_too_large"
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "request body is empty; expected a JSON object")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return ApiError(400, message, param=param, code="invalid_value")


def _cold_headers(lease: Lease, deployment: str) -> dict[str, str]:
    return {
        "x-scalezero-cold": "true" if lease.cold else "false",
        "x-scalezero-queue-wait-ms": f"{lease.queue_wait_s * 1000:.3f}",
        "x-scalezero-instance": lease.instance.instance_id,
        "x-scalezero-deployment": deployment,
    }


class _GuardMiddleware:
    """API-key check, request counting and the completion routes' fast path, as plain ASGI.

    Starlette's ``BaseHTTPMiddleware`` would relay every streamed chunk through an extra
    queue; this costs nothing per chunk. The completion routes (``fast_routes``) are
    served from here directly, skipping the router and its middleware stack: they are
    what the gateway's latency overhead is measured on. They stay registered with the
    app too, for the OpenAPI schema and for methods other than POST.
    """

    def __init__(
        self, app: ASGIApp, gateway: Gateway, routes: list[Any],
        fast_routes: dict[str, RouteHandler],
    ) -> None:
        self.app = app
        self.gateway = gateway
        self.api_key = (gateway.config.api_key or "").encode()
        self.routes = routes  # the app's route list, read when needed
        self.fast_routes = fast_routes  # filled by create_app once its handlers exist

    def _authorized(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or ())
        supplied = headers.get(b"authorization", b"")
        token = supplied[7:].strip() if supplied[:7].lower() == b"bearer " else b""
        if not token:
            token = headers.get(b"x-api-key", b"")
        return hmac.compare_digest(token, self.api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.api_key and path not in OPEN_PATHS and not self._authorized(scope):
            response = ApiError(
                401, "invalid or missing API key", "authentication_error", code="invalid_api_key"
            ).response()
            await response(scope, receive, send)
            # Label by known route only: arbitrary paths must not grow the label set.
            known = any(getattr(route, "path", None) == path for route in self.routes)
            label = path if known else "unmatched"
            self.gateway.metrics.requests.labels(label, "401").inc()
            return
        status = 500  # what the client gets if the app fails before it starts a response

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        handler = self.fast_routes.get(path) if scope["method"] == "POST" else None
        if handler is not None:
            try:
                try:
                    response = await handler(Request(scope, receive))
                except ApiError as exc:
                    response = exc.response()
                except ClientDisconnect:
                    status = CLIENT_CLOSED
                    return
                except Exception as exc:
                    response = internal_error_response(exc)
                await response(scope, receive, send_counting)
            finally:
                self.gateway.metrics.requests.labels(path, str(status)).inc()
            return
        try:
            await self.app(scope, receive, send_counting)
        finally:
            label = getattr(scope.get("route"), "path", "unmatched")
            self.gateway.metrics.requests.labels(label, str(status)).inc()


class _StreamRelay(Response):
    """An SSE answer relayed chunk by chunk, with no buffering.

    Leaner than Starlette's ``StreamingResponse`` (no task group per request): a client
    that goes away is noticed at the next chunk, and the relay then stops, which closes
    the connection to the instance so that it stops generating too.
    """

    def __init__(self, chunks: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
        self.chunks = chunks
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background = None
        self.init_headers({"cache-control": "no-cache", **headers})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wait_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        # Watched from the first chunk on: starting the watch earlier would put its cost
        # on the first token's path.
        disconnected: asyncio.Future[None] | None = None
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if disconnected is None:
                    disconnected = asyncio.ensure_future(wait_disconnect())
                elif disconnected.done():
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if disconnected is not None:
                disconnected.cancel()
            await self.chunks.aclose()


def create_app(config: GatewayConfig) -> FastAPI:
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(
        title="scalezero gateway",
        version=__version__,
        lifespan=lifespan,
        description="OpenAI-compatible gateway that scales llama.cpp instances per policy.",
    )
    app.state.gateway = gateway
    fast_routes: dict[str, RouteHandler] = {}
    app.add_middleware(
        _GuardMiddleware, gateway=gateway, routes=app.routes, fast_routes=fast_routes
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return JSONResponse(
            error_body(message, "invalid_request_error", code=kinds.get(exc.status_code)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return internal_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        return JSONResponse(
            error_body(str(first.get("msg", "invalid request")), "invalid_request_error"),
            status_code=400,
        )

    @app.get("/healthz", summary="Liveness: the gateway answers (instances may be at zero)")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/models", summary="Deployments served by this gateway")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "scalezero"}
                for name in gateway.pools
            ],
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/state", summary="Pools, instances, queue depth, as JSON")
    async def state() -> dict[str, Any]:
        return {
            "t_s": time.monotonic(),
            "deployments": {name: pool.snapshot() for name, pool in gateway.pools.items()},
        }

    async def handle(
        request: Request, model: type[CompletionRequest | ChatCompletionRequest], path: str
    ) -> Response:
        raw = await _read_json_body(request, config.max_body_bytes)
        try:
            body = model.model_validate(raw)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        if body.max_tokens is not None and body.max_tokens > gateway.max_tokens_limit:
            raise ApiError(
                400,
                f"max_tokens must be at most {gateway.max_tokens_limit} (the context size)",
                param="max_tokens",
                code="invalid_value",
            )
        if body.logit_bias and config.vocab_size is not None:
            bad = [key for key in body.logit_bias if int(key) >= config.vocab_size]
            if bad:
                raise ApiError(
                    400,
                    f"logit_bias token id {bad[0]} is outside the vocabulary "
                    f"(size {config.vocab_size})",
                    param="logit_bias",
                )
        pool = gateway.pool_for(body.model)
        payload = body.model_dump(exclude_unset=True, exclude_none=True)
        payload["model"] = pool.deployment
        content = json.dumps(payload).encode()
        try:
            lease = await pool.acquire()
        except PoolError as exc:
            headers = {}
            if exc.retry_after_s is not None:
                headers["retry-after"] = str(int(exc.retry_after_s))
            raise ApiError(
                exc.status_code, exc.message, exc.error_type, headers=headers
            ) from None
        return await _proxy(gateway, pool, lease, path, content, stream=body.stream)

    @app.post(
        "/v1/completions",
        summary="Text completion (OpenAI-compatible), streaming or not",
        openapi_extra=_openapi_body(CompletionRequest),
    )
    async def completions(request: Request) -> Response:
        return await handle(request, CompletionRequest, "/v1/completions")

    @app.post(
        "/v1/chat/completions",
        summary="Chat completion (OpenAI-compatible), streaming or not",
        openapi_extra=_openapi_body(ChatCompletionRequest),
    )
    async def chat_completions(request: Request) -> Response:
        return await handle(request, ChatCompletionRequest, "/v1/chat/completions")

    fast_routes["/v1/completions"] = completions
    fast_routes["/v1/chat/completions"] = chat_completions

    return app


async def _proxy(
    gateway: Gateway, pool: Pool, lease: Lease, path: str, content: bytes, stream: bool
) -> Response:
    """Send the request to the leased instance; pass the answer through unbuffered."""
    headers = _cold_headers(lease, pool.deployment)
    process = lease.instance.process
    instance_id = lease.instance.instance_id
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            pool.release(lease)

    try:
        upstream = await gateway.upstream.post(process.spec.host, process.port, path, content)
    except UpstreamError as exc:
        try:
            await pool.request_failed(lease)
        finally:
            release()
        raise ApiError(
            502, f"instance {instance_id} failed: {exc}", "upstream_error", headers=headers
        ) from None
    except BaseException:
        release()
        raise

    if not stream or upstream.status_code != 200:
        try:
            data = await upstream.aread()
            if upstream.status_code == 200:
                pool.first_token(lease, time.monotonic())
        except UpstreamError as exc:
            await pool.request_failed(lease)
            raise ApiError(
                502, f"instance {instance_id} failed mid-request: {exc}", "upstream_error",
                headers=headers,
            ) from None
        finally:
            await upstream.aclose()
            release()
        media_type = upstream.headers.get("content-type", "application/json")
        return Response(data, status_code=upstream.status_code, headers=headers,
                        media_type=media_type)

    async def relay() -> AsyncGenerator[bytes, None]:
        first = True
        try:
            async for chunk in upstream.aiter_bytes():
                if first:
                    first = False
                    pool.first_token(lease, time.monotonic())
                yield chunk
        except UpstreamError as exc:
            await pool.request_failed(lease)
            # Headers are gone already; tell the client in-band, as OpenAI streams do.
            message = f"instance {instance_id} failed mid-stream: {exc}"
            yield b"data: " + json.dumps(error_body(message, "upstream_error")).encode() + b"\n\n"
        finally:
            await upstream.aclose()
            release()

    return _StreamRelay(relay(), headers)
