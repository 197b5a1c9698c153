"""``tether guard serve``: the rails in front of a model as an OpenAI-compatible HTTP API (FastAPI).

Endpoints: ``POST /v1/chat/completions`` (streaming included; :mod:`tether.guard.completions`),
``POST /v1/check`` (rails without generating), ``GET /v1/models``, ``GET /metrics`` (Prometheus),
``GET /healthz`` (no key), and behind an admin key ``/admin/interactions`` (list, one, review) and
``/admin/keys``. Every other endpoint needs ``Authorization: Bearer <key>``; keys are stored hashed.

Each interaction is committed to the store before its answer is sent (for a stream: before ``[DONE]``),
so an acknowledged request is never lost. Bad requests are 4xx with ``{"error": {"message": ...}}``; an
upstream that fails is 502, one that times out 504.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether.guard import review_page
from tether.guard.api import ChatRequest, CheckRequest, KeyRequest, ReviewRequest, error_body
from tether.guard.completions import chat_completion
from tether.guard.config import GuardConfig
from tether.guard.service import Guard, build_guard
from tether.guard.store import ApiKey

CONFIG_ENV = "TETHER_GUARD_CONFIG"
"""A worker process reads its resolved config (JSON) from the file this names (`--workers N`)."""


class BodyLimit:
    """ASGI middleware: a body longer than ``limit`` bytes is answered 413 before the app reads it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, send)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send: Any) -> None:
    body = json.dumps(error_body(f"the request body is larger than {limit} bytes", code="body_too_large")).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def create_app(guard: Guard) -> FastAPI:
    app = FastAPI(title="tether guard", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.guard = guard
    app.add_middleware(BodyLimit, limit=guard.config.max_body_bytes)  # type: ignore[arg-type]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), _kind(exc.status_code)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return JSONResponse(error_body(message, code="invalid_request"), status_code=400)

    def api_key(request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401, "missing API key: send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
            )
        key = guard.store.verify_key(token.strip())
        if key is None:
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        if guard.monitor.limited(key.id):
            seconds = int(guard.config.monitor.probe_seconds)
            raise HTTPException(
                429,
                f"too many blocked requests from this key; try again in up to {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        return key

    def admin_key(key: ApiKey = Depends(api_key)) -> ApiKey:  # noqa: B008
        if not key.admin:
            raise HTTPException(403, "this endpoint needs an admin key")
        return key

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema(_key: ApiKey = Depends(api_key)) -> dict[str, Any]:  # noqa: B008
        return app.openapi()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics(_key: ApiKey = Depends(api_key)) -> Response:  # noqa: B008
        return PlainTextResponse(guard.metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    def models(_key: ApiKey = Depends(api_key)) -> dict[str, Any]:  # noqa: B008
        return {"object": "list", "data": [{"id": guard.upstream.name, "object": "model", "owned_by": "tether"}]}

    @app.post("/v1/check")
    def check(body: CheckRequest, key: ApiKey = Depends(api_key)) -> dict[str, Any]:  # noqa: B008
        if not body.has_something():
            raise HTTPException(400, "give messages, input or output to check")
        start = time.perf_counter()
        seconds: dict[str, float] = {}
        messages = [{"role": m.role, "content": m.text()} for m in body.messages or []]
        if body.input is not None:
            messages.append({"role": "user", "content": body.input})
        decisions = []
        if messages:
            decisions.append(guard.pipeline.check_input(messages))
            seconds["input_rails"] = decisions[-1].seconds
        if body.output is not None:
            prompt = body.prompt or next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
            flagged = bool(decisions and decisions[0].flagged)
            decisions.append(guard.pipeline.check_output(body.output, prompt=prompt, input_flagged=flagged))
            seconds["output_rails"] = decisions[-1].seconds
        seconds["total"] = time.perf_counter() - start
        interaction = guard.save(
            key=key,
            endpoint="check",
            messages=messages,
            answer=body.output,
            outcome="checked",
            decisions=decisions,
            seconds=seconds,
        )
        return {
            "interaction_id": interaction,
            **{d.side: d.to_dict() for d in decisions},
            "blocked": any(d.blocked for d in decisions),
        }

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatRequest, key: ApiKey = Depends(api_key)) -> Any:  # noqa: B008
        return chat_completion(guard, key, body)

    @app.get("/admin/interactions")
    def list_interactions(
        flagged: bool | None = None,
        outcome: str | None = None,
        reviewed: bool | None = None,
        limit: int = 100,
        offset: int = 0,
        _key: ApiKey = Depends(admin_key),  # noqa: B008
    ) -> dict[str, Any]:
        if not 1 <= limit <= 1000 or offset < 0:
            raise HTTPException(400, "limit must be 1-1000 and offset at least 0")
        rows = guard.store.query(flagged=flagged, outcome=outcome, reviewed=reviewed, limit=limit, offset=offset)
        return {"data": [_public(r) for r in rows]}

    @app.get("/admin/interactions/{interaction_id}")
    def one_interaction(interaction_id: str, _key: ApiKey = Depends(admin_key)) -> dict[str, Any]:  # noqa: B008
        row = guard.store.get(interaction_id)
        if row is None:
            raise HTTPException(404, f"no interaction {interaction_id}")
        return _public(row)

    @app.post("/admin/interactions/{interaction_id}/review")
    def review(interaction_id: str, body: ReviewRequest, key: ApiKey = Depends(admin_key)) -> dict[str, Any]:  # noqa: B008
        if body.label == "corrected" and not (body.response or "").strip():
            raise HTTPException(400, "label corrected needs the corrected response")
        if not guard.store.review(
            interaction_id, label=body.label, reviewer=key.id, response=body.response, note=body.note
        ):
            raise HTTPException(404, f"no interaction {interaction_id}")
        return {"id": interaction_id, "review_label": body.label}

    def page_admin(request: Request) -> ApiKey | None:
        token = request.cookies.get(review_page.COOKIE) or ""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        key = guard.store.verify_key(token) if token else None
        return key if key is not None and key.admin else None

    @app.get("/review", response_class=HTMLResponse)
    def review_queue(
        request: Request, flagged: str = "true", reviewed: str = "false", outcome: str = "", message: str = ""
    ) -> HTMLResponse:
        if page_admin(request) is None:
            return HTMLResponse(review_page.login_page(), status_code=401)
        filters = {"flagged": flagged, "reviewed": reviewed, "outcome": outcome}
        flags = {"true": True, "false": False}
        if flagged not in ("", *flags) or reviewed not in ("", *flags) or len(outcome) > 32:
            raise HTTPException(400, "filters: flagged and reviewed are true, false or empty")
        rows = guard.store.query(
            flagged=flags.get(flagged), reviewed=flags.get(reviewed), outcome=outcome or None, limit=200
        )
        return HTMLResponse(review_page.queue_page(rows, filters, message=message[:200]))

    @app.post("/review/login", response_class=HTMLResponse)
    async def review_login(request: Request) -> Response:
        key = review_page.parse_form(await request.body()).get("key", "").strip()
        record = guard.store.verify_key(key) if key else None
        if record is None or not record.admin:
            return HTMLResponse(review_page.login_page("That is not an admin key."), status_code=401)
        response = RedirectResponse("/review", status_code=303)
        response.set_cookie(review_page.COOKIE, key, httponly=True, samesite="strict", max_age=8 * 3600)
        return response

    @app.post("/review/logout")
    def review_logout() -> Response:
        response = RedirectResponse("/review", status_code=303)
        response.delete_cookie(review_page.COOKIE)
        return response

    @app.post("/review/{interaction_id}", response_class=HTMLResponse)
    async def review_form(interaction_id: str, request: Request) -> Response:
        reviewer = page_admin(request)
        if reviewer is None:
            return HTMLResponse(review_page.login_page("Sign in again."), status_code=401)
        form = review_page.parse_form(await request.body())
        label, correction = form.get("label", ""), form.get("response", "").strip() or None
        if label not in {value for value, _ in review_page.LABELS}:
            raise HTTPException(400, f"label must be one of {', '.join(v for v, _ in review_page.LABELS)}")
        if label == "corrected" and not correction:
            raise HTTPException(400, "label corrected needs the corrected response")
        if not guard.store.review(interaction_id, label=label, reviewer=reviewer.id, response=correction):
            raise HTTPException(404, f"no interaction {interaction_id}")
        back = {k: v for k, v in request.query_params.items() if k in ("flagged", "reviewed", "outcome")}
        back["message"] = f"marked {label}"
        return RedirectResponse("/review?" + urlencode(back), status_code=303)

    @app.get("/admin/alerts")
    def alerts(_key: ApiKey = Depends(admin_key)) -> dict[str, Any]:  # noqa: B008
        """This worker's recent alerts (every worker logs its own and counts them in /metrics)."""
        return {"data": [a.to_dict() for a in guard.monitor.alerts]}

    @app.get("/admin/keys")
    def keys(_key: ApiKey = Depends(admin_key)) -> dict[str, Any]:  # noqa: B008
        return {"data": [k.__dict__ for k in guard.store.list_keys()]}

    @app.post("/admin/keys")
    def create_key(body: KeyRequest, _key: ApiKey = Depends(admin_key)) -> dict[str, Any]:  # noqa: B008
        secret, record = guard.store.create_key(body.name, admin=body.admin)
        return {"key": secret, **record.__dict__}

    @app.delete("/admin/keys/{key_id}")
    def revoke_key(key_id: str, _key: ApiKey = Depends(admin_key)) -> dict[str, Any]:  # noqa: B008
        if not guard.store.revoke_key(key_id):
            raise HTTPException(404, f"no active key {key_id}")
        return {"revoked": key_id}

    return app


def _kind(status: int) -> str:
    return {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        413: "invalid_request_error",
        502: "upstream_error",
        504: "upstream_timeout",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("request", "verdicts"):
        with contextlib.suppress(TypeError, ValueError):
            out[name] = json.loads(out[name])
    return out


def app_from_environment() -> FastAPI:
    """The app of one worker process (uvicorn in factory mode), from the config file ``$TETHER_GUARD_CONFIG``."""
    from tether.guard.config import GuardServeConfig

    with open(os.environ[CONFIG_ENV], encoding="utf-8") as handle:
        config = GuardServeConfig.model_validate(json.load(handle))
    return create_app(build_guard(config, migrate_schema=False))


def serve(config: GuardConfig, *, console: Any = None) -> None:
    """Migrate the store once, then run uvicorn: in this process, or ``workers`` processes sharing the store."""
    import tempfile
    import warnings

    import sqlalchemy as sa
    import uvicorn

    from tether.atomic import atomic_write_text
    from tether.guard.store import migrate

    migrate(config.database)
    if config.workers > 1 and sa.make_url(config.database).get_backend_name() == "sqlite":
        warnings.warn(
            "several workers on one SQLite file work on one host but serialise every write; use PostgreSQL "
            "(database: postgresql+psycopg://...) for more workers or more hosts",
            stacklevel=2,
        )
    if console is not None:
        where = config.upstream_endpoint or config.upstream_model
        console.print(
            f"tether guard: http://{config.host}:{config.port}/v1 in front of {where}, store {config.database}"
        )
    if config.workers == 1:
        uvicorn.run(
            create_app(build_guard(config, migrate_schema=False)),
            host=config.host,
            port=config.port,
            log_level="warning",
        )
        return
    folder = tempfile.mkdtemp(prefix="tether-guard-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    path = os.path.join(folder, "config.json")
    atomic_write_text(path, config.model_dump_json())
    os.environ[CONFIG_ENV] = path
    uvicorn.run(
        "tether.guard.server:app_from_environment",
        factory=True,
        workers=config.workers,
        host=config.host,
        port=config.port,
        log_level="warning",
    )
