"""Security headers on every answer of the HTTP services (ASGI middleware).

Content-Security-Policy, X-Frame-Options, X-Content-Type-Options and Referrer-Policy; a route
that serves a page sets its own Content-Security-Policy, which is kept (the dashboard's).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# For answers that are not pages (JSON, images): nothing may load, nothing may frame them.
STRICT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    """Adds each security header the response does not carry already."""

    def __init__(self, app: ASGIApp, csp: str = STRICT_CSP) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in self.headers if h[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
