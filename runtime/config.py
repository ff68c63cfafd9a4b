"""Server configuration from the environment, read the way the reference's envconfig reads it."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.durations import MAX_SECONDS, keep_alive_from_env

log = logging.getLogger("mfc.serve")

DEFAULT_PORT = 11434
DEFAULT_MAX_QUEUE = 512
DEFAULT_MAX_LOADED = 3  # the reference's automatic value on a machine without GPUs
DEFAULT_CONTEXT = 4096  # the reference's default below 24 GiB of VRAM (CPU)
DEFAULT_MAX_BODY = 100 << 20
DEFAULT_GRACE_PERIOD = 30.0  # Kubernetes' terminationGracePeriodSeconds default
#: streams decode together while a step costs at most this many single-stream steps
#: (runtime/admission.py; chosen by bench/serve.py, see README's performance section)
DEFAULT_ITL_BUDGET = 1.5
DEFAULT_LOAD_TIMEOUT = 300.0  # the reference's OLLAMA_LOAD_TIMEOUT default (5m)
LOG_FORMATS = ("text", "json")
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")

#: Origins a browser may call from without OLLAMA_ORIGINS (the reference's defaults).
DEFAULT_ORIGINS = (
    *(
        f"{scheme}://{host}{port}"
        for host in ("localhost", "127.0.0.1", "0.0.0.0")
        for scheme in ("http", "https")
        for port in ("", ":*")
    ),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)


def env_var(env: Mapping[str, str], key: str) -> str:
    """envconfig.Var: surrounding whitespace, then quote characters, trimmed."""
    return env.get(key, "").strip().strip("\"'")


def parse_bool(raw: str) -> bool:
    """Go's strconv.ParseBool, where the reference treats anything unparsable as true."""
    return raw not in ("0", "f", "F", "false", "FALSE", "False")


def parse_uint(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env_var(env, key)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        log.warning("invalid environment variable, using default: %s=%r", key, raw)
        return default
    if value < 0:
        log.warning("invalid environment variable, using default: %s=%r", key, raw)
        return default
    return value


def parse_host(raw: str) -> tuple[str, int]:
    """OLLAMA_HOST (`[scheme://]host[:port][/path]`) to the address to bind.

    `http://` defaults the port to 80 and `https://` to 443; an unparsable port falls back
    to the default, as the reference does.
    """
    s = raw.strip()
    default_port = DEFAULT_PORT
    scheme, sep, hostport = s.partition("://")
    if not sep:
        hostport = s
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    hostport = hostport.split("/", 1)[0]
    host, port_text = _split_host_port(hostport)
    if host is None:
        host, port_text = "127.0.0.1", str(default_port)
        bare = hostport.strip("[]")
        try:
            host = str(ipaddress.ip_address(bare))
        except ValueError:
            if hostport:
                host = hostport
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(port_text)
    except ValueError:
        log.warning("invalid port, using default: %s", port_text)
        port = default_port
    return host, port


def _split_host_port(hostport: str) -> tuple[str | None, str]:
    """Go's net.SplitHostPort: (None, "") when there is no port."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            return None, ""
        return hostport[1:end], hostport[end + 2 :]
    if hostport.count(":") != 1:
        return None, ""
    host, _, port = hostport.partition(":")
    return host, port


@dataclass(frozen=True)
class ServerConfig:
    """Everything `mfc serve` reads from its environment (and the command line)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models_root: Path | None = None  # `--models`; otherwise the store finds its root
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    keep_alive: float = 300.0
    num_parallel: int = 1
    max_loaded_models: int = DEFAULT_MAX_LOADED
    max_queue: int = DEFAULT_MAX_QUEUE
    context_length: int = DEFAULT_CONTEXT
    flash_attention: bool | None = None  # None: llama.cpp decides (the reference's "auto")
    kv_cache_type: str = "f16"
    max_body_bytes: int = DEFAULT_MAX_BODY
    num_threads: int | None = None
    embed_contexts: int | None = None  # MFC_EMBED_CONTEXTS (None: one per thread)
    preload: tuple[str, ...] = ()  # models loaded before /ready says ready (MFC_PRELOAD)
    grace_period: float = DEFAULT_GRACE_PERIOD  # seconds a drain waits for requests
    itl_budget: float = DEFAULT_ITL_BUDGET  # MFC_ITL_BUDGET; 0: every free slot admits
    load_probe: bool = True  # MFC_LOAD_PROBE: prove a model file loads in a child first
    load_timeout: float = DEFAULT_LOAD_TIMEOUT  # OLLAMA_LOAD_TIMEOUT (inf: none)
    log_format: str = "text"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        host = self.host or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        """The configuration the environment asks for (`MFC_HOST` wins over `OLLAMA_HOST`)."""
        env = os.environ if env is None else env
        host, port = parse_host(env_var(env, "MFC_HOST") or env_var(env, "OLLAMA_HOST"))
        origins = tuple(o.strip() for o in env_var(env, "OLLAMA_ORIGINS").split(",") if o.strip())
        flash_raw = env_var(env, "OLLAMA_FLASH_ATTENTION")
        kv_type = env_var(env, "OLLAMA_KV_CACHE_TYPE").lower() or "f16"
        if kv_type not in KV_CACHE_TYPES:
            log.warning("unsupported OLLAMA_KV_CACHE_TYPE %r, using f16", kv_type)
            kv_type = "f16"
        threads = parse_uint(env, "MFC_NUM_THREADS", 0)
        return cls(
            host=host,
            port=port,
            origins=(*origins, *DEFAULT_ORIGINS),
            keep_alive=keep_alive_from_env(env.get("OLLAMA_KEEP_ALIVE")),
            num_parallel=max(parse_uint(env, "OLLAMA_NUM_PARALLEL", 1), 1),
            max_loaded_models=parse_uint(env, "OLLAMA_MAX_LOADED_MODELS", 0) or DEFAULT_MAX_LOADED,
            max_queue=parse_uint(env, "OLLAMA_MAX_QUEUE", DEFAULT_MAX_QUEUE) or DEFAULT_MAX_QUEUE,
            context_length=parse_uint(env, "OLLAMA_CONTEXT_LENGTH", 0) or DEFAULT_CONTEXT,
            flash_attention=parse_bool(flash_raw) if flash_raw else None,
            kv_cache_type=kv_type,
            max_body_bytes=parse_uint(env, "MFC_MAX_REQUEST_BODY", DEFAULT_MAX_BODY)
            or DEFAULT_MAX_BODY,
            num_threads=threads or None,
            embed_contexts=parse_uint(env, "MFC_EMBED_CONTEXTS", 0) or None,
            preload=tuple(env_var(env, "MFC_PRELOAD").replace(",", " ").split()),
            grace_period=parse_seconds(env, "MFC_GRACE_PERIOD", DEFAULT_GRACE_PERIOD),
            itl_budget=itl_budget_from_env(env),
            load_probe=parse_bool(env_var(env, "MFC_LOAD_PROBE") or "1"),
            load_timeout=load_timeout_from_env(env),
            log_format=log_format_from_env(env),
        )


def itl_budget_from_env(env: Mapping[str, str]) -> float:
    """MFC_ITL_BUDGET: a factor of the single-stream step (below 1 means 1), or 0/`off`."""
    raw = env_var(env, "MFC_ITL_BUDGET").lower()
    if raw in ("off", "false", "no"):
        return 0.0
    try:
        value = float(raw) if raw else DEFAULT_ITL_BUDGET
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        log.warning("invalid environment variable, using default: MFC_ITL_BUDGET=%r", raw)
        return DEFAULT_ITL_BUDGET
    return 0.0 if value == 0 else max(value, 1.0)


def load_timeout_from_env(env: Mapping[str, str]) -> float:
    """OLLAMA_LOAD_TIMEOUT: a Go duration or integer seconds; 0 or negative means none."""
    seconds = keep_alive_from_env(env.get("OLLAMA_LOAD_TIMEOUT"), DEFAULT_LOAD_TIMEOUT)
    return seconds if 0 < seconds < MAX_SECONDS else math.inf


def log_format_from_env(env: Mapping[str, str]) -> str:
    raw = env_var(env, "MFC_LOG_FORMAT").lower() or "text"
    if raw not in LOG_FORMATS:
        log.warning("invalid environment variable, using default: MFC_LOG_FORMAT=%r", raw)
        return "text"
    return raw


def parse_seconds(env: Mapping[str, str], key: str, default: float) -> float:
    """A non-negative number of seconds (`30`, `2.5`); the default when unset or invalid."""
    raw = env_var(env, key)
    if not raw:
        return default
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        log.warning("invalid environment variable, using default: %s=%r", key, raw)
        return default
    return value
