"""A minimal OpenAI-compatible chat-completions server for tests (standard library only).

``reply(messages) -> str`` scripts the chat answers (or returns a text and its first token's top log-probabilities,
sent as ``choices[0].logprobs`` when the request asks for ``logprobs``); raising ``RuntimeError`` makes the
request fail with HTTP 500; returning :data:`GARBAGE` answers HTTP 200 with a body that is not JSON. A request with
``"stream": true`` gets the answer as server-sent events, ``chunk`` characters at a time.
``complete(prompt)`` scripts ``/completions`` (a text, or a text and the first token's top log-probabilities);
without it that path answers 404. Records every request it receives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GARBAGE = "\x00garbage\x00"


def _chat_logprobs(text: str, top: dict[str, float]) -> dict:
    """Chat-completions ``logprobs``: the answer as one token, with ``top`` as its top log-probabilities."""
    alternatives = [{"token": token, "logprob": logprob, "bytes": None} for token, logprob in top.items()]
    return {"content": [{"token": text, "logprob": top.get(text, 0.0), "bytes": None, "top_logprobs": alternatives}]}


@contextmanager
def openai_stub(
    reply: Callable[[list[dict]], str | tuple[str, dict[str, float]]],
    *,
    api_key: str | None = None,
    complete: Callable[[str], str | tuple[str, dict[str, float]]] | None = None,
    chunk: int = 4,
) -> Iterator[tuple[str, list[dict]]]:
    """Yields (base_url, requests)."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if api_key is not None and self.headers.get("Authorization") != f"Bearer {api_key}":
                self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
                return
            if self.path.endswith("/v1/completions") and complete is not None:
                self._complete(body)
                return
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            try:
                answer = reply(body["messages"])
            except RuntimeError as err:
                self._send(500, {"error": {"message": str(err), "type": "server_error"}})
                return
            text, top = answer if isinstance(answer, tuple) else (answer, None)
            if text == GARBAGE:
                data = b"<html>this is not json"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if body.get("stream"):
                self._stream(text, body)
                return
            self._send(
                200,
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "stub"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                            **(
                                {"logprobs": _chat_logprobs(text, top)}
                                if top is not None and body.get("logprobs")
                                else {}
                            ),
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

        def _stream(self, text: str, body: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [text[i : i + chunk] for i in range(0, len(text), chunk)]
            for i, piece in enumerate([*pieces, None]):
                delta = {"content": piece} if piece is not None else {}
                event = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None if piece is not None else "stop"}],
                }
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                if i % 8 == 0:
                    self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _complete(self, body: dict) -> None:
            try:
                answer = complete(body["prompt"])  # type: ignore[misc]
            except RuntimeError as err:
                self._send(500, {"error": {"message": str(err), "type": "server_error"}})
                return
            text, top = answer if isinstance(answer, tuple) else (answer, None)
            logprobs = None
            if top is not None and body.get("logprobs"):
                logprobs = {
                    "tokens": [text],
                    "token_logprobs": [top.get(text)],
                    "top_logprobs": [top],
                    "text_offset": [0],
                }
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": "stop"}
            self._send(
                200,
                {
                    "id": "cmpl-test",
                    "object": "text_completion",
                    "created": 0,
                    "model": body.get("model", "stub"),
                    "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the load tests connect 32 at a time
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()
