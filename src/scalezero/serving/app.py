"""HTTP front of the gateway: OpenAI routes, proxying, health, metrics and state."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scalezero import __version__
from scalezero.serving.budget import MemoryBudget, memory_meter
from scalezero.serving.events import EventLog
from scalezero.serving.launcher import InstanceSpec, with_sleep_timer
from scalezero.serving.pool import Lease, Pool, PoolError, PoolLimits
from scalezero.serving.prom import GatewayMetrics
from scalezero.serving.schemas import (
    UNSUPPORTED,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    GatewayState,
    Health,
    ModelList,
)
from scalezero.serving.strategies.base import Policy
from scalezero.serving.upstream import UpstreamClient, UpstreamError

OPEN_PATHS = frozenset({"/healthz"})
#: Status counted for a request whose client went away before the answer (nginx's code).
CLIENT_CLOSED = 499
#: Longest engine error message passed on to the client.
MAX_ENGINE_MESSAGE_CHARS = 1000

logger = logging.getLogger("scalezero.serving")

RouteHandler = Callable[[Scope, Receive, str], Awaitable[Response]]
RequestModel = type[CompletionRequest] | type[ChatCompletionRequest]


@dataclasses.dataclass
class GatewayConfig:
    """What the app runs with; built by ``GatewaySettings.gateway_config``, where the
    defaults are."""

    deployment: str
    spec: InstanceSpec
    policy: Policy
    limits: PoolLimits
    events_path: Path | None
    api_key: str | None
    max_body_bytes: int
    #: Largest max_tokens accepted; None: the instance's context size.
    max_tokens_limit: int | None
    #: Token ids at or above this are rejected in logit_bias (the model's vocabulary size).
    vocab_size: int | None
    upstream_timeout_s: float
    #: Deployments beside the first (``deployment``), each with its own model and policy.
    extra: tuple[DeploymentConfig, ...]
    #: The memory budget all deployments share; None: unlimited.
    budget: BudgetConfig | None


@dataclasses.dataclass
class DeploymentConfig:
    """One more deployment; built by ``GatewaySettings.extra_deployments``."""

    name: str
    spec: InstanceSpec
    policy: Policy
    vocab_size: int | None = None


@dataclasses.dataclass
class BudgetConfig:
    """The shared memory budget; built by ``GatewaySettings.budget_config``."""

    budget_mib: float
    eviction: str
    wait_s: float
    #: "cuda" counts GPU memory, "cpu" resident host memory.
    device: str
    #: Memory one instance of each deployment is expected to hold, by deployment name.
    estimates_mib: dict[str, float]


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

    def response(self, request_id: str | None = None) -> JSONResponse:
        headers = dict(self.headers)
        message = self.message
        if request_id is not None:
            headers["x-request-id"] = request_id
            if self.status_code >= 500:
                # Whoever reads only the body can still quote the id to the operator.
                message = f"{message} (request id {request_id})"
                logger.error("request %s: %d %s: %s", request_id, self.status_code,
                             self.error_type, self.message)
        return JSONResponse(
            error_body(message, self.error_type, self.param, self.code),
            status_code=self.status_code,
            headers=headers,
        )


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def internal_error_response(exc: BaseException, request_id: str) -> JSONResponse:
    """A bug in the gateway, not the client's fault; still answered in the OpenAI shape."""
    logger.error("request %s: internal error", request_id, exc_info=exc)
    return JSONResponse(
        error_body(
            f"internal gateway error: {type(exc).__name__} (request id {request_id})",
            "server_error",
        ),
        status_code=500,
        headers={"x-request-id": request_id},
    )


def _deployment_spec(deployment: DeploymentConfig, instance_concurrency: int) -> InstanceSpec:
    """The spec a deployment's pool starts instances with. llama-server serves as many
    requests at once as it has slots (as many as the pool sends to one instance), and
    under a policy with a runtime-warm tier it unloads its model on its own idle timer,
    which is set to the policy's loaded TTL (it cannot be told to sleep)."""
    spec = dataclasses.replace(deployment.spec, parallel=instance_concurrency)
    policy = deployment.policy
    if policy.runtime_warm_ttl_s(0.0) != 0:
        spec = with_sleep_timer(spec, policy.idle_ttl_s(0.0))
    return spec


class Gateway:
    """The app's state: pools, upstream client, metrics."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.events = EventLog(config.events_path)
        self.metrics = GatewayMetrics(lambda: self.pools.values())
        deployments = (DeploymentConfig(config.deployment, config.spec, config.policy,
                                        config.vocab_size), *config.extra)
        self.pools: dict[str, Pool] = {}
        #: Per deployment: largest max_tokens accepted and the vocabulary size.
        self.limits: dict[str, tuple[int, int | None]] = {}
        for deployment in deployments:
            if deployment.name in self.pools:
                raise ValueError(f"deployment name {deployment.name!r} is used twice")
            self.pools[deployment.name] = Pool(
                deployment.name,
                # llama-server serves as many requests at once as it has slots: as many as
                # the pool sends to one instance.
                _deployment_spec(deployment, config.limits.instance_concurrency),
                deployment.policy,
                config.limits,
                self.events,
                on_cold_start=self._cold_start_observer(deployment.name),
                # One events log for all: instance ids must tell deployments apart.
                id_prefix=f"{deployment.name}-" if config.extra else "",
            )
            self.limits[deployment.name] = (
                config.max_tokens_limit or deployment.spec.n_ctx, deployment.vocab_size)
        self.budget: MemoryBudget | None = None
        if config.budget is not None:
            budget = config.budget
            self.budget = MemoryBudget(budget.budget_mib, budget.eviction, wait_s=budget.wait_s,
                                       meter=memory_meter(budget.device))
            for name, pool in self.pools.items():
                self.budget.add(pool, budget.estimates_mib[name])
        self.upstream = UpstreamClient(read_timeout_s=config.upstream_timeout_s)
        self.max_tokens_limit = config.max_tokens_limit or config.spec.n_ctx

    def _cold_start_observer(self, name: str) -> Callable[[float], None]:
        return lambda s: self.metrics.observe_cold_start(name, s)

    async def start(self) -> None:
        for pool in self.pools.values():
            await pool.start()

    async def stop(self) -> None:
        for pool in self.pools.values():
            await pool.shutdown()
        await self.upstream.aclose()
        self.events.close()

    def pool_for(self, model: str | None) -> Pool:
        if model is None:
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


# ------------------------------------------------------------- request bodies


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"request body larger than {max_bytes} bytes", code="body_too_large")


async def _read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The request body, read straight from the ASGI channel (the fast path's own reader)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > max_bytes:
                raise _too_large(max_bytes)
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _param_path(loc: list[Any]) -> str:
    """OpenAI's way of naming a nested field: ``messages[2].content``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors(include_url=False)[0]
    loc = list(first.get("loc", ()))
    if first["type"] == "json_invalid":
        detail = str(first.get("msg", "")).removeprefix("Invalid JSON: ")
        return ApiError(400, f"request body is not valid JSON: {detail}", code="invalid_json")
    if first["type"] == "model_type" and not loc:
        return ApiError(400, "request body must be a JSON object", code="invalid_json")
    field = (first.get("ctx") or {}).get("field")
    if field:
        loc.append(field)
    param = _param_path(loc) or None
    kind = first["type"]
    detail = str(first.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    if kind == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'", param=param,
                        code="missing_required_parameter")
    if kind == UNSUPPORTED:
        return ApiError(400, f"Unsupported parameter '{param}': {detail}", param=param,
                        code="unsupported_parameter")
    return ApiError(400, f"Invalid value for '{param}': {detail}", param=param,
                    code="invalid_value")


def _cold_headers(lease: Lease, deployment: str, request_id: str) -> dict[str, str]:
    return {
        "x-request-id": request_id,
        "x-scalezero-cold": "true" if lease.cold else "false",
        "x-scalezero-start-tier": lease.start_tier,
        "x-scalezero-queue-wait-ms": f"{lease.queue_wait_s * 1000:.3f}",
        "x-scalezero-instance": lease.instance.instance_id,
        "x-scalezero-deployment": deployment,
    }


# --------------------------------------------------------------- middleware


class _GuardMiddleware:
    """API-key check, request counting and the completion routes' fast path, as plain ASGI.

    It sits in front of the whole FastAPI app (see ``GatewayApp``). Starlette's
    ``BaseHTTPMiddleware`` would relay every streamed chunk through an extra queue; this
    costs nothing per chunk. The completion routes (``fast_routes``) are served from here
    directly, skipping FastAPI's per-request checks, its router and its middleware stack:
    they are what the gateway's latency overhead is measured on. They stay registered
    with the app too, for the OpenAPI schema and for methods other than POST.
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
                401, "invalid or missing API key", "authentication_error", code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            ).response()
            await response(scope, receive, send)
            # Label by known route only: arbitrary paths must not grow the label set.
            known = any(getattr(route, "path", None) == path for route in self.routes)
            label = path if known else "unmatched"
            self.gateway.metrics.count_request(label, 401)
            return
        handler = self.fast_routes.get(path) if scope["method"] == "POST" else None
        if handler is not None:
            await self._fast(handler, path, scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before it starts a response

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            label = getattr(scope.get("route"), "path", "unmatched")
            self.gateway.metrics.count_request(label, status)

    async def _fast(
        self, handler: RouteHandler, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request_id = new_request_id()
        status = 500
        try:
            try:
                response = await handler(scope, receive, request_id)
            except ApiError as exc:
                response = exc.response(request_id)
            except ClientDisconnect:
                status = CLIENT_CLOSED
                return
            except Exception as exc:
                response = internal_error_response(exc, request_id)
            status = response.status_code
            try:
                await response(scope, receive, send)
            except Exception:
                # The answer had started: nothing can be sent any more, but say why.
                logger.exception("request %s: failed while sending the answer", request_id)
                raise
        finally:
            self.gateway.metrics.count_request(path, status)


# ---------------------------------------------------------------- streaming


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


_EVENT_END = re.compile(rb"\r?\n\r?\n")


class _UsageTap:
    """Adds OpenAI's usage chunk (``stream_options.include_usage``) to a relayed stream.

    Engines put the usage on their last chunk (llama-cpp-python through
    ``scalezero.serving.instance``; llama-server too); OpenAI's clients expect it in a chunk of
    its own, with no choices, just before ``[DONE]``. Events pass through unchanged;
    only those that mention usage are parsed. Used only when a client asks, so the
    per-token path of other requests stays as it is.
    """

    def __init__(self, request_id: str, chat: bool) -> None:
        self.request_id = request_id
        self.default_object = "chat.completion.chunk" if chat else "text_completion"
        self.pending = b""
        self.usage: dict[str, Any] | None = None
        self.meta: dict[str, Any] = {}
        self.engine_sent_usage_chunk = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete events of ``chunk`` (with what was pending), plus the usage chunk."""
        data = self.pending + chunk
        end = 0
        for match in _EVENT_END.finditer(data):
            end = match.end()
        self.pending = data[end:]
        complete = data[:end]
        if not complete:
            return []
        done = complete.find(b"data: [DONE]")
        if done < 0:
            if b'"usage"' in complete:
                self._scan(complete)
            return [complete]
        before, after = complete[:done], complete[done:]
        if b'"usage"' in before:
            self._scan(before)
        separator = b"\r\n\r\n" if b"\r\n" in after else b"\n\n"
        return [piece for piece in (before, self._usage_event(separator), after) if piece]

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        return rest

    def _scan(self, events: bytes) -> None:
        for event in _EVENT_END.split(events):
            for line in event.splitlines():
                if not line.startswith(b"data:") or b'"usage"' not in line:
                    continue
                try:
                    payload = json.loads(line[5:])
                except ValueError:
                    continue
                if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                    self.usage = payload["usage"]
                    self.meta = payload
                    if payload.get("choices") == []:
                        self.engine_sent_usage_chunk = True

    def _usage_event(self, separator: bytes) -> bytes:
        if self.engine_sent_usage_chunk:
            return b""
        if self.usage is None:
            logger.warning("request %s: the engine reported no token usage; no usage chunk",
                           self.request_id)
            return b""
        chunk = {
            "id": self.meta.get("id"),
            "object": self.meta.get("object", self.default_object),
            "created": self.meta.get("created"),
            "model": self.meta.get("model"),
            "choices": [],
            "usage": self.usage,
        }
        return b"data: " + json.dumps(chunk).encode() + separator


# ---------------------------------------------------------------------- app


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Invalid request: a field is malformed, out of range or not supported (named "
             "in `param`)",
        401: "Missing or wrong API key (only when the gateway has one)",
        404: "No such model (deployment)",
        413: "Request body too large",
        429: "Too many requests waiting for an instance; see Retry-After",
        500: "Internal gateway error (logged with its traceback under the request id)",
        502: "The instance failed or broke off its answer",
        503: "No instance could be started, or the gateway is shutting down",
        504: "Waited too long for an instance",
    }
    return {
        status: {"model": ErrorResponse, "description": descriptions[status]}
        for status in statuses
    }


_STREAM_SCHEMA = {
    # Before OpenAPI 3.2, the schema of an event stream describes one event.
    "type": "object",
    "description": "One server-sent event: `data` is a chunk as JSON; the last event's data "
    "is `[DONE]`; an instance failing mid-stream ends the stream with an event whose data "
    "is an error body.",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}
_RESPONSE_HEADERS = {
    "x-request-id": "Request id; quote it to find the request in the gateway's log",
    "x-scalezero-cold": "`true` if the request waited for an instance to start",
    "x-scalezero-start-tier": "`loaded` if the instance was ready when the request "
    "arrived, else the tier of the start it waited for: `host_cached` or `disk_cold` (a "
    "process start, weights in the page cache or read from disk) or `runtime_warm` (a "
    "runtime-warm instance reloading its model)",
    "x-scalezero-queue-wait-ms": "Time the request waited for an instance",
    "x-scalezero-instance": "Instance that served the request",
    "x-scalezero-deployment": "Deployment that served the request",
}


def _completion_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    ok = {
        "description": "The completion (JSON), or its chunks as server-sent events when "
        "`stream` is true",
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
            "text/event-stream": {"schema": _STREAM_SCHEMA},
        },
        "headers": {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in _RESPONSE_HEADERS.items()
        },
    }
    responses: dict[int | str, dict[str, Any]] = {200: ok}
    responses.update(_error_responses(400, 401, 404, 413, 429, 500, 502, 503, 504))
    responses[429]["headers"] = {
        "retry-after": {"description": "Seconds to wait before retrying",
                        "schema": {"type": "string"}},
    }
    return responses


def _below(limit: int) -> str:
    """A regex matching the decimal numbers 0 .. limit-1 written without leading zeros."""
    top = str(limit - 1)
    alternatives = ["0"] if limit > 0 else []
    for length in range(1, len(top)):  # shorter numbers: any, first digit not zero
        alternatives.append("[1-9]" + ("[0-9]" * (length - 1)))
    if len(top) > 1:
        for index, digit in enumerate(top):  # same length, below top at this digit
            low = "1" if index == 0 else "0"
            if int(digit) > int(low):
                rest = "[0-9]" * (len(top) - index - 1)
                alternatives.append(f"{top[:index]}[{low}-{int(digit) - 1}]{rest}")
        alternatives.append(top)
    elif top != "0":
        alternatives.append(f"[1-{top}]")
    return "^(" + "|".join(dict.fromkeys(alternatives)) + ")$"


def build_openapi(app: FastAPI, gateway: Gateway) -> dict[str, Any]:
    """FastAPI's document, plus what it cannot know: request bodies parsed by hand,
    the deployments, the limits of this gateway's model, and the API key scheme."""
    document = get_openapi(title=app.title, version=app.version, description=app.description,
                           routes=app.routes)
    _, definitions = models_json_schema(
        [(CompletionRequest, "validation"), (ChatCompletionRequest, "validation"),
         (CompletionResponse, "serialization"), (ChatCompletionResponse, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    names = sorted(gateway.pools)
    for request in ("CompletionRequest", "ChatCompletionRequest"):
        properties = schemas[request]["properties"]
        properties["model"] = {
            "anyOf": [{"enum": names}, {"type": "null"}],
            "description": "Deployment to use; unset: the first deployment "
            f"({names[0]}).",
        }
        for limit_field in ("max_tokens", "max_completion_tokens"):
            properties[limit_field]["anyOf"][0]["maximum"] = gateway.max_tokens_limit
        bias = properties["logit_bias"]["anyOf"][0]
        vocab = gateway.config.vocab_size
        bias["propertyNames"] = {
            "pattern": _below(vocab) if vocab else r"^(0|[1-9][0-9]{0,8})$"
        }
        bias["maxProperties"] = 1024
        bias["additionalProperties"] = {"type": "number", "minimum": -100, "maximum": 100}
    if gateway.config.api_key:
        schemas_security = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        document["components"]["securitySchemes"] = schemas_security
        document["security"] = [{"bearer": []}, {"apiKey": []}]
        document["paths"]["/healthz"]["get"]["security"] = []
    else:
        for operations in document["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("401", None)
    return document


class GatewayApp(FastAPI):
    """FastAPI with the guard in front of it, not inside its middleware stack."""

    guard: _GuardMiddleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.guard(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def call_inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(config: GatewayConfig) -> GatewayApp:
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = GatewayApp(
        title="scalezero gateway",
        version=__version__,
        lifespan=lifespan,
        description="OpenAI-compatible gateway that scales llama.cpp instances per policy. "
        "Which request fields are honoured and which are refused: docs/api.md.",
        # The gateway has its own Prometheus metrics; FastAPI's OpenTelemetry hooks would
        # cost a check per request even with no provider configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = gateway
    fast_routes: dict[str, RouteHandler] = {}
    app.guard = _GuardMiddleware(app.call_inner, gateway, app.routes, fast_routes)

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
        return internal_error_response(exc, new_request_id())

    @app.exception_handler(RequestValidationError)
    async def request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        return JSONResponse(
            error_body(str(first.get("msg", "invalid request")), "invalid_request_error"),
            status_code=400,
        )

    @app.get("/healthz", summary="Liveness: the gateway answers (instances may be at zero)",
             response_model=Health, responses=_error_responses(500))
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/models", summary="Deployments served by this gateway",
             response_model=ModelList, responses=_error_responses(401, 500))
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "scalezero"}
                for name in gateway.pools
            ],
        }

    @app.get(
        "/metrics", summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={
            200: {"description": "Prometheus text exposition",
                  "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_error_responses(401, 500),
        },
    )
    async def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/state", summary="Pools, instances, queue depth, as JSON",
             response_model=GatewayState, responses=_error_responses(401, 500))
    async def state() -> dict[str, Any]:
        answer: dict[str, Any] = {
            "t_s": time.monotonic(),
            "deployments": {name: pool.snapshot() for name, pool in gateway.pools.items()},
        }
        if gateway.budget is not None:
            answer["memory"] = gateway.budget.snapshot()
        return answer

    async def handle(
        scope: Scope, receive: Receive, request_id: str, model: RequestModel, path: str
    ) -> Response:
        raw = await _read_body(scope, receive, config.max_body_bytes)
        if not raw.strip():
            raise ApiError(400, "request body is empty; expected a JSON object",
                           code="invalid_json")
        try:
            # Parsed and validated in one pass (pydantic's JSON parser): the cheapest way
            # there, and on the path of every request.
            body = model.model_validate_json(raw)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        pool = gateway.pool_for(body.model)
        max_tokens, vocab_size = gateway.limits[pool.deployment]
        limit = body.output_limit
        if limit is not None and limit[1] > max_tokens:
            raise ApiError(
                400,
                f"Invalid value for '{limit[0]}': at most {max_tokens} (the "
                "context size)",
                param=limit[0],
                code="invalid_value",
            )
        if body.logit_bias and vocab_size is not None:
            bad = [key for key in body.logit_bias if int(key) >= vocab_size]
            if bad:
                raise ApiError(
                    400,
                    f"Invalid value for 'logit_bias': token id {bad[0]} is outside the "
                    f"vocabulary (size {vocab_size})",
                    param="logit_bias",
                    code="invalid_value",
                )
        if pool.spec.native:
            _refuse_for_llama_server(body)
        content = json.dumps(body.to_engine(pool.deployment)).encode()
        try:
            lease = await pool.acquire()
        except PoolError as exc:
            headers = {}
            if exc.retry_after_s is not None:
                headers["retry-after"] = str(int(exc.retry_after_s))
            raise ApiError(
                exc.status_code, exc.message, exc.error_type, headers=headers
            ) from None
        tap = _UsageTap(request_id, chat=model is ChatCompletionRequest) if (
            body.include_usage) else None
        return await _proxy(gateway, pool, lease, path, content, bool(body.stream), request_id,
                            tap)

    def documented_body(model: type[BaseModel]) -> dict[str, Any]:
        # Bodies are parsed by hand (to control size, errors and forwarding) but documented
        # all the same; build_openapi puts the schemas in the components.
        return {
            "requestBody": {
                "required": True,
                "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
            }
        }

    async def completions_fast(scope: Scope, receive: Receive, request_id: str) -> Response:
        return await handle(scope, receive, request_id, CompletionRequest, "/v1/completions")

    async def chat_fast(scope: Scope, receive: Receive, request_id: str) -> Response:
        return await handle(scope, receive, request_id, ChatCompletionRequest,
                            "/v1/chat/completions")

    @app.post(
        "/v1/completions",
        summary="Text completion (OpenAI-compatible), streaming or not",
        openapi_extra=documented_body(CompletionRequest),
        responses=_completion_responses(CompletionResponse),
    )
    async def completions(request: Request) -> Response:
        return await completions_fast(request.scope, request.receive, new_request_id())

    @app.post(
        "/v1/chat/completions",
        summary="Chat completion (OpenAI-compatible), streaming or not",
        openapi_extra=documented_body(ChatCompletionRequest),
        responses=_completion_responses(ChatCompletionResponse),
    )
    async def chat_completions(request: Request) -> Response:
        return await chat_fast(request.scope, request.receive, new_request_id())

    fast_routes["/v1/completions"] = completions_fast
    fast_routes["/v1/chat/completions"] = chat_fast

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, gateway)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# ----------------------------------------------------------------- proxying


#: What llama-server (the ``llama_server`` engine) does not do as the API says, refused
#: up front instead of answered differently: field -> why.
_LLAMA_SERVER_REFUSALS = {
    "echo": "llama-server does not echo the prompt",
    "logprobs": "llama-server answers completions' logprobs in the chat format, not the "
                "completions format",
    "tools": "llama-server does not follow a forced tool_choice",
}


def _refuse_for_llama_server(body: CompletionRequest | ChatCompletionRequest) -> None:
    """Raise a 400 for a field llama-server would silently answer otherwise."""
    chat = isinstance(body, ChatCompletionRequest)
    used = {
        "echo": not chat and bool(getattr(body, "echo", None)),
        "logprobs": not chat and getattr(body, "logprobs", None) is not None,
        "tools": chat and bool(getattr(body, "tools", None))
        and getattr(body, "tool_choice", None) != "none",
    }
    for name, reason in _LLAMA_SERVER_REFUSALS.items():
        if used[name]:
            raise ApiError(400, f"'{name}' is not supported by this deployment's engine: "
                           f"{reason}", param=name, code="unsupported_parameter")


def _engine_message(data: bytes) -> tuple[str, str | None, str | None]:
    """An instance's error answer: its message, param and code, as far as it has them."""
    try:
        body = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace").strip()[:MAX_ENGINE_MESSAGE_CHARS], None, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        param, code = error.get("param"), error.get("code")
        if error.get("type") == "exceed_context_size_error":  # llama-server's name for it
            code = "context_length_exceeded"
        return (str(error.get("message") or "")[:MAX_ENGINE_MESSAGE_CHARS],
                param if isinstance(param, str) else None, code if isinstance(code, str) else None)
    if isinstance(body, dict) and "detail" in body:  # FastAPI's validation answer
        return json.dumps(body["detail"])[:MAX_ENGINE_MESSAGE_CHARS], None, None
    return json.dumps(body)[:MAX_ENGINE_MESSAGE_CHARS], None, None


def _engine_error(status: int, data: bytes, instance_id: str, headers: dict[str, str]) -> ApiError:
    """An instance's non-200 answer, as the gateway's: a client error stays a 400, anything
    else is the instance's failure (502), never passed on as a bare 5xx."""
    message, param, code = _engine_message(data)
    if 400 <= status < 500:
        return ApiError(400, f"the engine refused the request: {message or f'HTTP {status}'}",
                        param=param, code=code or "engine_rejected", headers=headers)
    return ApiError(502, f"instance {instance_id} answered HTTP {status}: "
                    f"{message or 'no message'}", "upstream_error", headers=headers)


async def _proxy(
    gateway: Gateway, pool: Pool, lease: Lease, path: str, content: bytes, stream: bool,
    request_id: str, tap: _UsageTap | None,
) -> Response:
    """Send the request to the leased instance; pass the answer through unbuffered."""
    headers = _cold_headers(lease, pool.deployment, request_id)
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
        if upstream.status_code != 200:
            raise _engine_error(upstream.status_code, data, instance_id, headers)
        media_type = upstream.headers.get("content-type", "application/json")
        return Response(data, status_code=200, headers=headers, media_type=media_type)

    async def relay() -> AsyncGenerator[bytes, None]:
        first = True
        try:
            async for chunk in upstream.aiter_bytes():
                if first:
                    first = False
                    pool.first_token(lease, time.monotonic())
                if tap is None:
                    yield chunk
                else:
                    for piece in tap.feed(chunk):
                        yield piece
            if tap is not None and (rest := tap.flush()):
                yield rest
        except UpstreamError as exc:
            await pool.request_failed(lease)
            # Headers are gone already; tell the client in-band, as OpenAI streams do.
            message = f"instance {instance_id} failed mid-stream: {exc}"
            logger.error("request %s: %s", request_id, message)
            body = error_body(f"{message} (request id {request_id})", "upstream_error")
            yield b"data: " + json.dumps(body).encode() + b"\n\n"
        finally:
            await upstream.aclose()
            release()

    return _StreamRelay(relay(), headers)
