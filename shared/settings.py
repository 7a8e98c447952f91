"""The one settings object of Rerank Fleet: every knob is a `RERANK_`-prefixed environment variable."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.job_settings import JobSettings

SHORT_API_KEY_CHARS = 16  # a key shorter than this is accepted, with a warning at the API's start


class Settings(JobSettings):
    """Configuration shared by the API, the workers and `rerank-fleet up` (the batch-job fields: JobSettings)."""

    model_config = SettingsConfigDict(env_prefix="RERANK_", env_file=None, extra="ignore", populate_by_name=True)

    # --- model -------------------------------------------------------------------------------
    model: str = Field(
        "cross-encoder/ms-marco-MiniLM-L-6-v2",
        description="Hugging Face hub id or local directory of a sequence-classification model "
        "with one logit (safetensors weights).",
    )
    model_id: str | None = Field(
        None,
        description="Id clients use in the `model` field. Default: the hub id, or the directory's name.",
    )
    models: str | None = Field(
        None,
        description="Several models in one fleet: `ID=SOURCE,ID2=SOURCE2` (a SOURCE alone gets the derived id). "
        "The API serves every one, and `rerank-fleet up` starts workers for each; a worker serves RERANK_MODEL "
        "as RERANK_MODEL_ID alone. Unset: RERANK_MODEL is the one model.",
    )
    recipe_file: str | None = Field(  # `model_config` is pydantic's own attribute
        None,
        validation_alias="RERANK_MODEL_CONFIG",
        description="A JSON recipe file (prompt, instruction, special_tokens, score: README, Recipes) for the "
        "worker's model; it wins over the model directory's rerank_config.json and the built-in recipes.",
    )
    model_revision: str | None = Field(
        None,
        description="Hub revision (a commit hash) to load a hub model at, so that a moved branch or tag cannot "
        "change the weights served; ignored for a local directory.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code shipped with the weights to run. Off: only built-in architectures."
    )
    max_seq_len: int | None = Field(
        None,
        ge=8,
        description="Token limit L per (query, passage) pair. Default and upper bound: what the model supports.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where workers run the model: `auto` takes CUDA when a GPU is visible."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights and activations: `auto` is float32 on CPU, bfloat16 (else float16) on CUDA."
    )
    packed_forward: Literal["auto", "on", "off"] = Field(
        "auto",
        description="The forward pass of BERT, RoBERTa and XLM-R models (worker/model/runtime.py: forward_layout): "
        "`auto` on a CPU takes this project's own forward (oneDNN linear layers) over packed tokens, so padding "
        "costs only attention, for models of hidden size 256 or more, and over padded rows below it, where each was "
        "measured faster (ops/BENCHMARKS.md), and on CUDA transformers' padded forward; `on` packed tokens on any "
        "device and size; `off` transformers' padded forward. Other architectures always take transformers' forward.",
    )
    torch_threads: int | None = Field(
        None, ge=1,
        description="Intra-op threads of a CPU worker's engine process (its forward passes). Default: torch's own "
        "choice (the cores), less one for a model whose forward pass costs next to nothing, so that tokenizing and "
        "the API keep a core (worker/engine/threads.py).",
    )
    cpu_workers: int = Field(
        1, ge=1, le=64,
        description="CPU worker processes `rerank-fleet up` starts where no GPU is visible, each with "
        "RERANK_TORCH_THREADS threads or else the cores divided among them; each holds its own copy of the model.",
    )  # fmt: skip

    # --- batching and limits -----------------------------------------------------------------
    max_batch_tokens: int | None = Field(
        None,
        ge=64,
        description="Token budget of one forward pass (padded length x pairs) in the micro-batcher. Default: "
        "16384 on a GPU; 2048 on a CPU, where larger batches of length-sorted pairs pad more for no gain.",
    )
    max_chunks_per_passage: int = Field(
        16, ge=1,
        description="Most windows a request may ask one long passage to be scored as (`max_chunks_per_passage`, "
        "Cohere's `max_chunks_per_doc`; 422 beyond). API.md section 6.",
    )  # fmt: skip
    chunk_overlap_tokens: int = Field(
        32, ge=0, description="Tokens a passage's windows overlap by (at most half a window)."
    )
    max_windows_per_request: int = Field(
        2048, ge=1,
        description="Most windows (pairs after a request's long passages are cut into windows) a worker scores for "
        "one request; beyond it 413. 2048 is four windows for each of 512 passages.",
    )  # fmt: skip
    max_passages: int = Field(512, ge=1, description="Most passages in one request (the NIM's limit is 512).")
    worker_concurrency: int = Field(
        64, ge=1, description="Requests one worker process holds in flight; their pairs share forward passes."
    )
    request_timeout: float = Field(
        60.0, gt=0, description="Seconds the API waits for a worker's answer before replying 504."
    )
    gpu_forward_ms: float = Field(
        8.0,
        ge=0,
        description="On CUDA, interactive forward passes grow from RERANK_MAX_BATCH_TOKENS until one takes about "
        "this long at the measured throughput (at most 8 times that budget), so a small model's pass is long "
        "enough for the host to keep the GPU fed while a request still waits at most one pass. 0: the fixed "
        "token budget. CPU passes always keep the fixed budget.",
    )

    # --- backpressure and input limits -------------------------------------------------------
    max_queued_requests: int = Field(
        512,
        ge=1,
        description="Interactive requests admitted per model at once, over all API processes (queued or being "
        "scored); beyond it the API answers 429 / RESOURCE_EXHAUSTED at once with Retry-After.",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest HTTP request body and gRPC message, in bytes (413 beyond); batch-job uploads have "
        "RERANK_JOB_MAX_UPLOAD_BYTES instead.",
    )
    max_passage_chars: int = Field(
        100_000, ge=1, description="Most characters in the query or in one passage (413 beyond)."
    )
    max_request_chars: int = Field(
        4_000_000, ge=1,
        description="Most characters in one request: the query, the passages, and an `instruction` once per passage "
        "(it is copied into every pair); 413 beyond.",
    )  # fmt: skip
    max_instruction_chars: int = Field(
        2_000, ge=1, description="Most characters in a request's `instruction` (a prompt recipe's task; 413 beyond)."
    )

    embedded_redis_maxmemory_mb: int = Field(
        2048, ge=64,
        description="`maxmemory` (MiB) of the Redis that `rerank-fleet up` embeds, with `noeviction`: past it, "
        "writes (new requests, job uploads) fail and nothing stored is evicted; /metrics reports it.",
    )  # fmt: skip

    # --- connections -------------------------------------------------------------------------
    max_connections: int = Field(
        2048, ge=1, description="Most HTTP connections and requests the API serves at once; beyond it 503."
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's headers before the API closes the connection."
    )
    body_timeout: float = Field(
        30.0, gt=0, description="Seconds the API waits for the next piece of a request body before answering 408."
    )
    body_total_timeout: float = Field(
        60.0, gt=0,
        description="Seconds a whole request body (HTTP, batch-job uploads aside) or gRPC request message may take to "
        "arrive, however steadily it trickles in; 408 (gRPC: DEADLINE_EXCEEDED) beyond.",
    )  # fmt: skip
    job_upload_timeout: float = Field(
        600.0, gt=0, description="Seconds a whole batch-job upload may take to arrive; 408 beyond."
    )
    keepalive_timeout: float = Field(5.0, gt=0, description="Seconds an idle keep-alive connection stays open.")
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Largest request line and headers of an HTTP request, in bytes (431 beyond)."
    )
    grpc_max_connections: int = Field(
        256, ge=1, description="Most gRPC connections the API accepts at once; further ones are refused."
    )
    grpc_max_streams: int = Field(
        100, ge=1,
        description="Most concurrent calls (HTTP/2 streams) on one gRPC connection; a client queues further calls.",
    )  # fmt: skip
    grpc_idle_timeout: float = Field(
        300.0, gt=0, description="Seconds a gRPC connection without calls stays open before the server closes it."
    )
    grpc_max_connection_age: float = Field(
        3600.0, gt=0,
        description="Seconds after which the server asks a gRPC client to reconnect (GOAWAY); calls in flight then "
        "get RERANK_REQUEST_TIMEOUT plus a margin to finish.",
    )  # fmt: skip
    trusted_hosts: str | None = Field(
        None,
        description="Comma-separated host names the HTTP API answers for (the Host header; `*.example.com` matches "
        "subdomains); other hosts get 400. `*`: any. Default: `localhost,127.0.0.1,::1` when RERANK_HOST is a "
        "loopback address, else `*`.",
    )

    # --- services ----------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://localhost:6379/0", description="Redis used as Celery broker, result backend and worker registry."
    )
    data_dir: str | None = Field(
        None,
        description="Directory where `rerank-fleet up`'s embedded Redis keeps its data (append-only file), so that "
        "jobs and results outlive a restart; created mode 0700, and one `up` at a time may use it (a lock file). "
        "Default: $XDG_DATA_HOME/rerank-fleet, else ~/.local/share/rerank-fleet. Unused with RERANK_REDIS_URL.",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API.")
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="Port of the KServe V2 / Triton gRPC API, served by the API process; 0: off."
    )
    api_key: SecretStr | None = Field(
        None,
        description="When set, every route but health requires `Authorization: Bearer <key>`; several keys, "
        "comma-separated, give several callers, each of whom sees only its own batch jobs.",
    )
    api_key_file: Path | None = Field(
        None,
        description="A file whose first line is the API key (e.g. a Docker or Kubernetes secret); "
        "read at start-up, used when RERANK_API_KEY is not set.",
    )
    result_expires: int = Field(
        300, ge=10, description="Seconds a finished request's result stays in Redis for the API to read."
    )
    heartbeat_interval: float = Field(
        5.0, gt=0, description="Seconds between a worker's registrations in Redis (readiness and statistics)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log verbosity.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines of the API and workers: `text` for people, `json` (one object per line, with the "
        "request id) for log collectors.",
    )

    # --- monitoring --------------------------------------------------------------------------
    flower_port: int = Field(
        5555, ge=0, le=65535, description="Port of the Flower dashboard that `rerank-fleet up` starts; 0: no Flower."
    )
    flower_basic_auth: SecretStr | None = Field(
        None,
        description="`user:password` (comma-separated for several) that Flower requires through HTTP basic auth; "
        "unset: `rerank-fleet up` generates credentials and prints them once.",
    )
    flower_db: str | None = Field(
        None,
        description="File in which Flower keeps its task history across restarts; unset: Flower keeps it in memory.",
    )

    @field_validator("models")
    @classmethod
    def _model_list(cls, value: str | None) -> str | None:
        if value:  # empty (as compose passes an unset variable): one model, RERANK_MODEL
            parse_model_list(value)
        return value or None

    @field_validator("api_key", "flower_basic_auth", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _key_from_file(self) -> "Settings":
        source = "RERANK_API_KEY"
        if self.api_key is None and self.api_key_file is not None:
            source = "RERANK_API_KEY_FILE"
            try:
                key = self.api_key_file.read_text().strip().splitlines()
            except OSError as exc:
                raise ValueError(f"cannot read RERANK_API_KEY_FILE: {exc.strerror}") from None
            if not key or not key[0].strip():
                raise ValueError("RERANK_API_KEY_FILE is empty")
            self.api_key = SecretStr(key[0].strip())
        if self.api_key is not None and not self.api_keys:
            raise ValueError(f"{source} holds no key, only commas or spaces: set a key, or unset it for an open API")
        return self

    @property
    def short_api_keys(self) -> int:
        """How many of the API keys are shorter than SHORT_API_KEY_CHARS (the API warns at start-up)."""
        return sum(len(key) < SHORT_API_KEY_CHARS for key in self.api_keys)

    @property
    def api_keys(self) -> list[str]:
        """The configured API keys (none: no authentication)."""
        if self.api_key is None:
            return []
        return [key.strip() for key in self.api_key.get_secret_value().split(",") if key.strip()]

    @property
    def allowed_hosts(self) -> list[str]:
        """The Host names the HTTP API answers for (RERANK_TRUSTED_HOSTS, or its default for RERANK_HOST)."""
        names = self.trusted_hosts if self.trusted_hosts else (LOOPBACK_NAMES if _is_loopback(self.host) else "*")
        return [name.strip().lower() for name in names.split(",") if name.strip()]

    @property
    def served_model_id(self) -> str:
        """The id clients send in `model` for this settings' model."""
        return self.model_id or derive_model_id(self.model)

    @property
    def model_sources(self) -> list[tuple[str, str]]:
        """(id, source) of every model the fleet serves: RERANK_MODELS, else RERANK_MODEL as its id."""
        return parse_model_list(self.models) if self.models else [(self.served_model_id, self.model)]

    @property
    def model_ids(self) -> list[str]:
        """The ids of the fleet's configured models, the default one (for requests that name none) first."""
        return [model_id for model_id, _ in self.model_sources]

    @property
    def worker_ttl(self) -> float:
        """Seconds after its last heartbeat that a worker counts as gone."""
        return 3 * self.heartbeat_interval


LOOPBACK_NAMES = "localhost,127.0.0.1,::1"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def derive_model_id(model: str) -> str:
    """A hub id stays as it is; a local directory is served under its own name.

    Decided by spelling as well as by the disk, so that an API that has no copy of the directory
    derives the same id as the workers that load it.
    """
    if os.path.isdir(model) or model.startswith(("/", "./", "../", "~")):
        return os.path.basename(os.path.normpath(os.path.expanduser(model)))
    return model


def env_name(field: str) -> str:
    """The environment variable of a Settings field (RERANK_<FIELD>, or the field's own alias)."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"RERANK_{field.upper()}"


def parse_model_list(text: str) -> list[tuple[str, str]]:
    """`ID=SOURCE,ID2=SOURCE2` (RERANK_MODELS, repeated `--model`) as (id, source) pairs; ValueError if malformed."""
    models: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        model_id, source = (part.strip() for part in item.split("=", 1)) if "=" in item else (None, item)
        model_id = derive_model_id(source) if model_id is None and source else model_id
        if not source or not model_id:
            raise ValueError(f"{item!r} is not ID=SOURCE (models are ID=SOURCE, comma-separated)")
        if model_id in (known for known, _ in models):
            raise ValueError(f"model id {model_id!r} is given twice")
        models.append((model_id, source))
    return models
def describe_settings_error(error: ValidationError) -> str:
    """One line naming each bad variable and what it accepts, e.g. `RERANK_MAX_PASSAGES must be an integer`."""
    parts = []
    for err in error.errors():
        field = str(err["loc"][0]) if err.get("loc") else ""
        name = env_name(field) if field in Settings.model_fields else "settings"
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        message = message.replace("Input should be", "must be").replace("input should be", "must be")
        if message.startswith("RERANK_"):  # a check across fields names its own variable
            parts.append(message)
            continue
        parts.append(f"{name} {message[0].lower() + message[1:] if message else 'is invalid'}")
    return "; ".join(parts)


def load_settings(**overrides) -> Settings:
    """Settings from the environment (and `overrides`); invalid ones end the process with one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"invalid setting: {describe_settings_error(exc)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment; invalid ones end the process with one line."""
    return load_settings()
