"""The base of every hosted adapter: the catalog entry, base URL, key, timeout and transport it
is built from, the lazily created httpx client, the missing-key error naming the variables to
set, a repr without secrets, and ``close()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import httpx
from pydantic import SecretStr

from podium.config import PROVIDER_KEY_VARIABLES
from podium.errors import AuthenticationFailed, ConfigError
from podium.models.base import Capability, Model
from podium.models.providers.http import Endpoint, fast_transport, make_client
from podium.models.providers.keepalive import KeepAliveClient

if TYPE_CHECKING:
    from podium.config import Settings
    from podium.models.catalog import ModelInfo


class HostedModel(Model):
    """A model behind an HTTP API. Subclasses set ``provider`` (or assign it before use)."""

    fast_transport: bool = False
    """Send through aiohttp's transport (``httpx-aiohttp``) rather than httpx's own: its C HTTP
    parser takes an outbound call from ~0.97 to ~0.56 ms of CPU on the benchmark machine, with
    the same httpx API, timeouts and errors. On for the OpenAI-compatible adapters (the
    gateway's hot path); off for signed requests (Bedrock's SigV4 signs the exact URL and
    headers httpx sends)."""

    def __init__(
        self,
        info: ModelInfo,
        *,
        base_url: str | None,
        api_key: SecretStr | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Args:
            info: The catalog entry.
            base_url: Where the API lives (already resolved; ``None``: not configured).
            api_key: The key; kept secret, never in a repr.
            timeout: Seconds for connecting and for each read.
            transport: The httpx transport (the test seam; ``None``: real network).
        """
        super().__init__(info.name)
        self.info = info
        self.capabilities = info.capabilities
        self.base_url = base_url
        self._api_key = api_key
        self._timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._fast: KeepAliveClient | None = None

    @classmethod
    def from_settings(cls, info: ModelInfo, settings: Settings) -> Self:
        """The adapter for ``info`` with the key and base URL ``settings`` hold."""
        return cls(
            info,
            base_url=settings.provider_urls.get(cls.provider),
            api_key=settings.provider_keys.get(cls.provider),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.name!r}, base_url={self.base_url!r})"

    def _client(self) -> httpx.AsyncClient:
        """The httpx client, created on first use."""
        if self._http is None:
            if self.base_url is None:
                raise ConfigError(f"{self.provider} has no base URL")
            endpoint = Endpoint(base_url=self.base_url, timeout=self._timeout)
            transport = self._transport
            if transport is None and self.fast_transport:
                transport = fast_transport()
            self._http = make_client(endpoint, transport)
        return self._http

    def _key_variables(self) -> tuple[str, ...]:
        """The environment variables that supply this provider's key."""
        return PROVIDER_KEY_VARIABLES.get(self.provider, (f"{self.provider.upper()}_API_KEY",))

    def _key(self) -> str:
        """The API key, or :class:`AuthenticationFailed` naming the variables to set."""
        if self._api_key is None:
            variables = " or ".join(self._key_variables())
            raise AuthenticationFailed(
                f"no API key for {self.provider}: set {variables}",
                provider=self.provider,
                model=self.name,
            )
        return self._api_key.get_secret_value()

    def _secret(self) -> str | None:
        """The key's value, to redact from error bodies (``None``: no key)."""
        return self._api_key.get_secret_value() if self._api_key else None

    def unavailable(self) -> str | None:
        if self.base_url is None:
            return f"{self.provider} has no base URL"
        if self._api_key is None:
            return f"no API key for {self.provider}: set {' or '.join(self._key_variables())}"
        return None

    def _require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise self._unsupported(capability)

    def _fast_session(self) -> KeepAliveClient | None:
        """The keep-alive client of the fast path (a non-streamed JSON POST), or ``None`` when
        a test transport is injected or the adapter does not use it (then: the httpx client)."""
        if self._transport is not None or not self.fast_transport:
            return None
        if self._fast is None:
            if self.base_url is None:
                self._client()  # raises the adapter's own "no base URL" error
            self._fast = KeepAliveClient(self._timeout)
        return self._fast

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._fast is not None:
            await self._fast.close()
            self._fast = None
