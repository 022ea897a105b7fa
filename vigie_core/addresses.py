"""Host names and URLs in configuration files, checked when the file is loaded: a
malformed address is a configuration error, never a connection retried forever."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, HttpUrl, StringConstraints, TypeAdapter, ValidationError

_HTTP_URL = TypeAdapter(HttpUrl)


def check_host(value: str) -> str:
    """A host name or IP address, alone (no scheme, path or spaces)."""
    if not value:
        raise ValueError("empty: give a host name or an IP address")
    if "://" in value:
        raise ValueError("a host name or address, not a URL (the port is a field of its own)")
    if "/" in value or any(char.isspace() for char in value):
        raise ValueError("not a host name or address (no '/' or spaces)")
    return value


def check_http_url(value: str) -> str:
    """An http:// or https:// URL with a host, kept as written. Never quoted back in
    the reason: a URL may carry a password."""
    if any(char.isspace() for char in value):
        raise ValueError("not a URL (it holds spaces)")
    if not value.startswith(("http://", "https://")):
        raise ValueError("not a URL starting with http:// or https://")
    try:
        _HTTP_URL.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Input should be a valid URL, ")
        raise ValueError(f"not a valid URL ({reason})") from None
    if not urlsplit(value).hostname:  # pydantic reads http:///x as host x
        raise ValueError("not a valid URL (empty host)")
    return value


#: Where to connect, or the address to listen on.
HostName = Annotated[str, StringConstraints(max_length=253), AfterValidator(check_host)]
#: An HTTP(S) service, kept a ``str``; 500 characters at most, as release URLs are.
HttpUrlString = Annotated[str, StringConstraints(max_length=500), AfterValidator(check_http_url)]
