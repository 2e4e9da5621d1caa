"""Intercom's error.list bodies and the exception the request handlers raise."""

from __future__ import annotations

import json
import uuid
from typing import Any


class ApiError(Exception):
    """An HTTP error answered with Intercom's ``error.list`` body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field


def error_body(code: str, message: str | None, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"type": "error.list", "request_id": str(uuid.uuid4()), "errors": [error]}


def error_bytes(err: ApiError) -> bytes:
    return json.dumps(error_body(err.code, err.message, err.field)).encode()


NOT_FOUND = ("not_found", "Resource Not Found")
UNAUTHORIZED = ("unauthorized", "Access Token Invalid")
VERSION_UNAVAILABLE = "Requested resource is not available in current API version."
SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: ("server_error", "Server Error"),
    502: ("bad_gateway", "Bad Gateway"),
    503: ("service_unavailable", "Sorry, the API service is temporarily unavailable"),
}
HTML_5XX = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
