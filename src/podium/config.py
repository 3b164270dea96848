"""Settings, built once at the edge (CLI, server, test) from an injected environment.

Nothing in Podium reads ``os.environ`` except :meth:`Settings.from_env`, and nothing keeps
configuration in module globals: a ``Settings`` object is passed explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from podium.errors import ConfigError

SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

PROVIDER_KEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "azure": ("AZURE_OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "cohere": ("COHERE_API_KEY", "CO_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "together": ("TOGETHER_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "bedrock": ("AWS_ACCESS_KEY_ID",),
}
"""Where each provider's API key is read from (first one set wins). Bedrock also reads
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and ``AWS_REGION`` (see ``provider_keys``)."""

_AWS_EXTRA = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")


class Settings(BaseModel):
    """Podium's settings. Every field maps to an environment variable ``PODIUM_<FIELD>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(default=Path(".podium"))
    """Directory for the embedded database and local state."""

    database_url: str | None = None
    """SQLAlchemy URL of the store. ``None`` means SQLite at ``<home>/podium.db``;
    ``memory://`` keeps runs in memory (nothing survives the process);
    ``postgresql+psycopg://…`` for shared deployments."""

    sqlite_synchronous: SqliteSynchronous = "NORMAL"
    """SQLite's ``PRAGMA synchronous`` in WAL mode. ``NORMAL`` (default) survives any process
    crash (SIGKILL) but may lose the last acknowledged steps on a power cut or kernel panic;
    ``FULL`` fsyncs every commit and survives power loss too, at a higher cost per step."""

    max_concurrency: int = Field(default=64, ge=1)
    """Default bound on concurrently running branches of one parallel block."""

    thread_pool_size: int = Field(default=32, ge=1)
    """Threads available to synchronous step functions."""

    gateway_config: Path | None = None
    """The gateway's configuration file (model groups, routing, cache, limits, budgets, keys;
    see ``docs/gateway.md``). ``None``: the embedded defaults — every catalog model callable by
    name, in-memory cache, no limits or budgets."""

    provider_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """API key per hosted provider (``openai``, ``anthropic``, …), from the providers' usual
    variables (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, …). Never logged or shown."""

    provider_urls: dict[str, str] = Field(default_factory=dict)
    """Base-URL overrides per provider (``PODIUM_PROVIDER_URL_OPENAI=http://…``): a proxy, a
    self-hosted server, or a local simulator in tests."""

    @property
    def store_url(self) -> str:
        """The effective store URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'podium.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``PODIUM_*`` variables (pass ``os.environ`` at the edge)."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"PODIUM_{name.upper()}"
            if key in env:
                values[name] = env[key]
        keys: dict[str, str] = {}
        for provider, names in PROVIDER_KEY_VARIABLES.items():
            for var in names:
                if env.get(var):
                    keys[provider] = env[var]
                    break
        for var in _AWS_EXTRA:  # Bedrock's signing material travels with its key
            if env.get(var):
                keys[f"bedrock:{var.lower()}"] = env[var]
        values["provider_keys"] = keys
        prefix = "PODIUM_PROVIDER_URL_"
        values["provider_urls"] = {
            k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix) and v
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"PODIUM_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None
