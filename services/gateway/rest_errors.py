"""Every REST error in OpenAI's shape, so OpenAI's client libraries report it as they would OpenAI's own:

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": "..."}}
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error"}
_CODES = {401: "invalid_api_key", 404: "not_found", 413: "payload_too_large", 422: "unprocessable", 429: "overloaded",
          503: "stage_unavailable", 504: "timeout"}


def error_body(status: int, message: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "api_error"), "param": param,
                      "code": _CODES.get(status, "invalid_request" if status < 500 else "stage_error")}}


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(err.status_code, str(err.detail)), err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return JSONResponse(error_body(400, f"{first['msg']} ({param or 'request'})", param), 400)
