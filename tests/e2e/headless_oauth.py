"""A headless OAuth user agent for the Python MCP SDK's `OAuthClientProvider`.

The SDK asks its application to send the user to an authorization URL
(`redirect_handler`) and to hand back what arrived at the redirect URI
(`callback_handler`). Here a plain HTTP client plays the browser: it follows the
authorization server's redirects through the development sign-in of
tests/e2e/authserver (which signs in the user named by `login_hint` and consents without
a form) until a redirect points at the client's redirect URI, and keeps the `code`,
`state` and `iss` from it. Nothing listens on the redirect URI.

The module also counts what the SDK did (authorizations, tokens) so tests can assert on
the flow, and keeps tokens and registrations in memory only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

MAX_REDIRECTS = 20
HTTP_TIMEOUT_S = 10.0
# Nothing listens here: the user agent stops at the redirect and reads the query.
REDIRECT_URI = "http://127.0.0.1:9/callback"


class MemoryStorage:
    """The SDK's TokenStorage, in memory; the current token is readable by tests."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class HeadlessUserAgent:
    """Follows authorization redirects for `user`; records each authorization URL."""

    user: str
    redirect_uri: str = REDIRECT_URI
    authorization_urls: list[str] = field(default_factory=list)
    _result: AuthorizationCodeResult | None = None

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorization_urls.append(authorization_url)
        self._result = None
        url = with_query(authorization_url, login_hint=self.user)
        # A fresh cookie jar per authorization: every sign-in is a new browser session.
        async with httpx2.AsyncClient(follow_redirects=False, timeout=HTTP_TIMEOUT_S) as browser:
            for _ in range(MAX_REDIRECTS):
                response = await browser.get(url)
                if response.status_code not in (302, 303, 307):
                    raise RuntimeError(
                        f"authorization stopped at {urlsplit(url).path} with HTTP "
                        f"{response.status_code}: {response.text[:500]}"
                    )
                url = urljoin(url, response.headers["location"])
                if url.startswith(self.redirect_uri):
                    self._result = callback_result(url)
                    return
        raise RuntimeError(f"more than {MAX_REDIRECTS} redirects during authorization")

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self._result is None:
            raise RuntimeError("no authorization response was captured")
        return self._result

    @property
    def authorizations(self) -> int:
        return len(self.authorization_urls)

    def requested_scopes(self, index: int = -1) -> set[str]:
        query = parse_qs(urlsplit(self.authorization_urls[index]).query)
        return set(query.get("scope", [""])[0].split())


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))


def callback_result(url: str) -> AuthorizationCodeResult:
    query = parse_qs(urlsplit(url).query)
    if "error" in query:
        raise RuntimeError(f"authorization failed: {query['error'][0]}: "
                           f"{query.get('error_description', [''])[0]}")
    return AuthorizationCodeResult(
        code=query["code"][0],
        state=query.get("state", [None])[0],
        iss=query.get("iss", [None])[0],
    )


@dataclass
class OAuthClient:
    """Everything one MCP client needs to start from a bare URL: the SDK's provider, its
    storage and the user agent that signs `user` in."""

    server_url: str
    user: str = "alice"
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    agent: HeadlessUserAgent = field(init=False)
    provider: OAuthClientProvider = field(init=False)

    def __post_init__(self) -> None:
        self.agent = HeadlessUserAgent(self.user)
        self.provider = OAuthClientProvider(
            server_url=self.server_url,
            client_metadata=OAuthClientMetadata(
                client_name=f"drawbridge e2e ({self.user})",
                redirect_uris=[self.agent.redirect_uri],
            ),
            storage=self.storage,
            redirect_handler=self.agent.redirect_handler,
            callback_handler=self.agent.callback_handler,
        )

    @property
    def access_token(self) -> str:
        assert self.storage.tokens is not None, "no token yet"
        return self.storage.tokens.access_token

    def http_client(self) -> httpx2.AsyncClient:
        """An httpx2 client with the SDK's MCP timeouts that authenticates as this client."""
        return create_mcp_http_client(auth=self.provider)
