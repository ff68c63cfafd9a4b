"""`mfc serve --ray`: the same HTTP API scaled out over a Ray cluster with Ray Serve.

Two deployments. `Engine` replicas each run mfc's own ASGI app (runtime.app) in-process over
their node's store and hold models by name through `serve.multiplexed`, at most
`models_per_replica` at a time (least recently used is unloaded first). `Ingress` is the
HTTP entry: it forwards each request to the engine deployment with the model its body names
as the multiplexed model id, so Ray routes it to a replica that already holds the model
(cold loads go to the replica holding the fewest). Responses stream back chunk by chunk.

If a replica dies before a request produced its first byte, the ingress sends the request
again (Ray replaces the replica); a stream cut after it started ends with an error line in
the stream's own format. This module imports Ray: only `mfc serve --ray` imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ray
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve import Application
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Message

from runtime.api_ollama import merged_options
from runtime.app import create_app
from runtime.config import ServerConfig, parse_seconds, parse_uint
from runtime.errors import ApiError
from runtime.streaming import read_body
from toolchain.errors import MfcError
from toolchain.registry.pull import pull_model
from toolchain.store.names import parse_name_lenient

log = logging.getLogger("ray.serve")  # in replicas: the replica's own log file, tagged

APP_NAME = "mfc"
REPLICA_HEADER = "x-mfc-replica"  # which engine replica answered
REPLICA_PID_HEADER = "x-mfc-replica-pid"
#: Routes whose body names a model: these are routed to replicas holding that model.
MODEL_ROUTES = frozenset({
    "/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show",
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
})  # fmt: skip
#: A replica that died or is unreachable: the request may go to another one.
REPLICA_GONE = (RayActorError, ActorUnavailableError)
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)  # ~20 s: long enough for Ray to notice


@dataclass(frozen=True)
class RaySettings:
    """How the engine deployment scales (MFC_RAY_* environment variables)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: int = 2  # autoscaling aims at this many requests per replica
    max_ongoing_requests: int = 8  # more wait in the ingress's router, not on a replica
    models_per_replica: int = 2  # the serve.multiplexed cap
    replica_cpus: float = 1.0
    replica_memory_mb: int = 0  # 0: no memory reservation
    ingress_cpus: float = 0.0
    upscale_delay_s: float = 30.0  # Ray's defaults
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0  # ongoing requests are averaged over this window
    pull_from: str = ""  # `host/namespace`: models missing from a node's store come from there
    pull_insecure: bool = False  # plain http to that registry

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RaySettings:
        env = os.environ if env is None else env
        lo = max(parse_uint(env, "MFC_RAY_MIN_REPLICAS", 1), 1)
        cpus_raw = env.get("MFC_RAY_REPLICA_CPUS", "").strip()
        return cls(
            min_replicas=lo,
            max_replicas=max(parse_uint(env, "MFC_RAY_MAX_REPLICAS", lo), lo),
            target_ongoing_requests=max(parse_uint(env, "MFC_RAY_TARGET_ONGOING", 2), 1),
            max_ongoing_requests=max(parse_uint(env, "MFC_RAY_MAX_ONGOING", 8), 1),
            models_per_replica=max(parse_uint(env, "MFC_RAY_MODELS_PER_REPLICA", 2), 1),
            replica_cpus=float(cpus_raw) if cpus_raw else 1.0,
            replica_memory_mb=parse_uint(env, "MFC_RAY_REPLICA_MEMORY_MB", 0),
            upscale_delay_s=parse_seconds(env, "MFC_RAY_UPSCALE_DELAY", 30.0),
            downscale_delay_s=parse_seconds(env, "MFC_RAY_DOWNSCALE_DELAY", 600.0),
            pull_from=env.get("MFC_RAY_PULL", "").strip().strip("/"),
            pull_insecure=env.get("MFC_RAY_PULL_INSECURE", "") not in ("", "0", "false"),
        )

    def engine_options(self) -> dict[str, Any]:
        """`serve.deployment` options of the engine: resources, replicas, autoscaling."""
        actor: dict[str, Any] = {"num_cpus": self.replica_cpus}
        if self.replica_memory_mb:
            actor["memory"] = self.replica_memory_mb << 20
        options: dict[str, Any] = {
            "name": "MfcEngine",
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "health_check_period_s": 2,
            "health_check_timeout_s": 30,
        }
        if self.max_replicas == self.min_replicas:
            options["num_replicas"] = self.min_replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "initial_replicas": self.min_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
                "look_back_period_s": self.look_back_period_s,
            }
        return options


def model_id(path: str, body: bytes) -> str:
    """The model a request is for, in one spelling per model (`demo` is `demo:latest`);
    "" when the route names none or the body is not JSON (the replica answers the 400)."""
    if path not in MODEL_ROUTES:
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    name = doc.get("model") or doc.get("name")
    if not isinstance(name, str) or not name.strip():
        return ""
    parsed = parse_name_lenient(name.strip())
    return parsed.display() if parsed.is_valid else name.strip()


class HeldModel:
    """A model a replica holds for Ray's multiplexer; Ray deletes it to unload the model."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.released = False

    def __del__(self) -> None:
        # Ray calls this on eviction (in a worker thread); the garbage collector may call it
        # again later: the unload is scheduled once, on the replica's event loop.
        if self.released:
            return
        self.released = True
        with contextlib.suppress(RuntimeError):  # the loop is gone: so is the replica
            asyncio.run_coroutine_threadsafe(self._unload(), self.loop)

    async def _unload(self) -> None:
        ctx = self.engine.app.state.mfc
        try:
            model = ctx.catalog.get(self.name, "")
        except MfcError:
            return
        await ctx.scheduler.expire_now(model)  # unloads once the model is idle
        log.info("replica %s unloaded %s", self.engine.replica, self.name)


class Engine:
    """An engine replica: mfc's ASGI app over this node's store, models multiplexed by name."""

    def __init__(self, config: ServerConfig, settings: RaySettings) -> None:
        # Ray's cap drives eviction; mfc's own scheduler never needs to evict before it.
        models_per_replica = settings.models_per_replica
        config = dataclasses.replace(config, max_loaded_models=models_per_replica)
        self.settings = settings
        self.app = create_app(config)
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id
        self.pid = str(os.getpid())

        async def hold(name: str) -> HeldModel:  # a function: Ray keeps its cache on it
            return await self._hold(name)

        self.held = serve.multiplexed(max_num_models_per_replica=models_per_replica)(hold)

    async def _hold(self, name: str) -> HeldModel:
        ctx = self.app.state.mfc
        if self.settings.pull_from and not ctx.store.exists(parse_name_lenient(name)):
            try:
                await asyncio.to_thread(self._pull, name)
            except MfcError as exc:
                log.warning("replica %s could not pull %s: %s", self.replica, name, exc)
                raise
        model = ctx.catalog.get(name, f"model '{name}' not found")
        lease = await ctx.scheduler.acquire(model, merged_options(model, None), None)
        lease.release()
        log.info("replica %s loaded %s", self.replica, name)
        return HeldModel(self, name)

    def _pull(self, name: str) -> None:
        """Pull `name` from the registry into this node's store (every blob checked against
        its digest by `pull_model`), then name it as requested."""
        wanted = parse_name_lenient(name)
        source = f"{self.settings.pull_from}/{wanted.model}:{wanted.tag}"
        store = self.app.state.mfc.store
        result = pull_model(source, store=store, insecure=self.settings.pull_insecure)
        store.copy(result.name, wanted)
        log.info("replica %s pulled %s as %s (manifest sha256:%s, %d blobs downloaded)",
                 self.replica, source, name, result.digest, len(result.downloaded))  # fmt: skip

    async def handle(
        self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> AsyncIterator[dict[str, Any] | bytes]:
        """Run one HTTP request through the app: yields the response head, then body chunks."""
        name = serve.get_multiplexed_model_id()
        if name:
            # not in this store or not loadable: the app answers in the reference's words
            with contextlib.suppress(MfcError):
                await self.held(name)
        log.info("replica %s serving %s %s %s", self.replica, method, path, name or "-")
        async for item in self._run_app(method, path, query, headers, body):
            yield item

    async def _run_app(
        self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> AsyncIterator[dict[str, Any] | bytes]:
        messages: asyncio.Queue[Message | None] = asyncio.Queue()
        gone = asyncio.Event()
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            await messages.put(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": ("ray-ingress", 0),
            "server": ("mfc-engine", 0),
        }

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                await messages.put(None)

        task = asyncio.get_running_loop().create_task(run())
        try:
            while (message := await messages.get()) is not None:
                if message["type"] == "http.response.start":
                    raw = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
                    raw += [
                        (REPLICA_HEADER.encode(), self.replica.encode()),
                        (REPLICA_PID_HEADER.encode(), self.pid.encode()),
                    ]
                    yield {"status": message["status"], "headers": raw}
                elif message["type"] == "http.response.body":
                    if message.get("body"):
                        yield bytes(message["body"])
                    if not message.get("more_body", False):
                        break
        finally:
            gone.set()  # the caller went away or the response is over: stop the app
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def stream_error(content_type: str, message: str) -> bytes:
    """The last chunk of a stream cut by a lost replica, in the stream's own format."""
    if "text/event-stream" in content_type:
        err = {"error": {"message": message, "type": "server_error", "code": None}}
        return b"data: " + json.dumps(err).encode() + b"\n\n"
    if "ndjson" in content_type:
        return json.dumps({"error": message}).encode() + b"\n"
    return b""


class Ingress:
    """The HTTP entry: forwards each request to an engine replica chosen by model name."""

    def __init__(self, engine: DeploymentHandle[Any], max_body_bytes: int) -> None:
        self.engine = engine.options(stream=True)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: Request) -> Response:
        try:  # the body is held here until a replica takes it: bounded as `mfc serve` bounds it
            body = await read_body(request, self.max_body_bytes)
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        path = request.url.path
        name = model_id(path, body)
        handle = self.engine.options(multiplexed_model_id=name) if name else self.engine
        query = request.scope.get("query_string", b"")
        headers = [(bytes(k), bytes(v)) for k, v in request.scope["headers"]]
        for delay in (*RETRY_DELAYS, None):
            stream = cast(
                "DeploymentResponseGenerator[Any]",
                handle.handle.remote(request.method, path, query, headers, body),
            )
            try:
                head = await stream.__anext__()
                break
            except REPLICA_GONE as exc:
                if delay is None:
                    return JSONResponse({"error": f"no replica could serve: {exc}"}, 503)
                log.warning("replica lost before %s %s started; retrying", request.method, path)
                await asyncio.sleep(delay)
        else:  # pragma: no cover - the loop always breaks or returns
            raise AssertionError
        # Ray's proxy adds its own x-request-id (the one the engine saw and echoed)
        raw_headers = [(k, v) for k, v in head["headers"] if k != b"x-request-id"]
        content_type = next((v.decode() for k, v in raw_headers if k == b"content-type"), "")
        response = StreamingResponse(self._rest(stream, content_type), status_code=head["status"])
        response.raw_headers = raw_headers
        return response

    @staticmethod
    async def _rest(
        stream: DeploymentResponseGenerator[Any], content_type: str
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk
        except REPLICA_GONE:
            log.warning("replica lost mid-stream; ending the stream with an error")
            yield stream_error(content_type, "the replica serving this request stopped")


def build_app(config: ServerConfig, settings: RaySettings) -> Application:
    """The Serve application: the ingress bound to the engine deployment."""
    # a replica Ray stops (scale-down, redeploy) lets requests finish as `mfc serve` drains
    engine = serve.deployment(
        **settings.engine_options(), graceful_shutdown_timeout_s=config.grace_period
    )(Engine)
    ingress = serve.deployment(
        name="MfcIngress", ray_actor_options={"num_cpus": settings.ingress_cpus}
    )(Ingress)
    return ingress.bind(engine.bind(config, settings), config.max_body_bytes)


def app_from_args(args: dict[str, str]) -> Application:
    """An application builder for `serve run` and KubeRay's RayService (`import_path:
    runtime.ray_serve:app_from_args`): `args` are environment variables (MFC_MODELS,
    OLLAMA_KEEP_ALIVE, MFC_RAY_*...) over the process's own. Ray's proxy binds the address
    (`http_options`), so the engine does no loopback host check."""
    env = {**os.environ, **{k: str(v) for k, v in args.items()}}
    config = dataclasses.replace(ServerConfig.from_env(env), host="0.0.0.0")
    if env.get("MFC_MODELS"):
        config = dataclasses.replace(config, models_root=Path(env["MFC_MODELS"]))
    return build_app(config, RaySettings.from_env(env))


def deploy(
    config: ServerConfig, settings: RaySettings, address: str | None, replica_logs: bool = False
) -> DeploymentHandle[Any]:
    """Connect to (or start) a Ray cluster and run the app; serves on config.host:port.

    `replica_logs` copies the replicas' log lines to this process's stderr.
    """
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=replica_logs)
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": config.host or "0.0.0.0", "port": config.port},
    )
    return serve.run(build_app(config, settings), name=APP_NAME, route_prefix="/")


def shutdown() -> None:
    """Remove the app and disconnect from the cluster (a cluster we started stops)."""
    try:
        serve.delete(APP_NAME)
    finally:
        ray.shutdown()
