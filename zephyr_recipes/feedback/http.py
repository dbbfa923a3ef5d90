"""A small client for OpenAI-compatible chat endpoints (vLLM, TGI, llama.cpp server, hosted APIs).

Standard library only. Every call has a timeout; 429 and 5xx answers and network errors are retried a bounded
number of times with exponential backoff (honouring Retry-After); other 4xx answers fail at once. The API key
is read from an environment variable at call time and never stored anywhere.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..core.errors import ZephyrError

log = logging.getLogger("zephyr_recipes")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_REPLY_BYTES = 64 * 1024 * 1024  # a chat reply is kilobytes; more is a fault, not an answer to buffer


class EndpointError(RuntimeError):
    """A request that failed after its retries; recorded as a failure by the caller."""


@dataclass
class Endpoint:
    base_url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0
    backoff_max: float = 30.0

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ZephyrError(f"the environment variable {self.api_key_env} is not set",
                                  f"export {self.api_key_env}=... (keys are read from the environment only)")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def chat(self, messages: list[dict], **sampling) -> list[str]:
        """One chat completion request; returns the text of every choice (n = sampling.get('n', 1))."""
        return [c["message"]["content"] or "" for c in self.complete(messages, **sampling)["choices"]]

    def complete(self, messages: list[dict], **sampling) -> dict:
        """One chat completion request; returns the whole reply (choices with their logprobs, if asked for)."""
        url = self.base_url.rstrip("/") + "/chat/completions"
        body = json.dumps({"model": self.model, "messages": messages, **sampling}).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                request = urllib.request.Request(url, data=body, headers=self._headers(), method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read(MAX_REPLY_BYTES + 1)
                    declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > len(raw) and len(raw) <= MAX_REPLY_BYTES:
                    raise ValueError(f"a reply cut short ({len(raw)} of {declared} bytes)")
                return _reply(raw)  # a reply that is not one (not UTF-8, not JSON, too big ...) is retried below
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS or attempt > self.max_retries:
                    detail = exc.read().decode(errors="replace")[:200]
                    raise EndpointError(f"{url} answered {exc.code}: {detail}") from None
                wait = _retry_after(exc) or self._backoff(attempt)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
                if attempt > self.max_retries:
                    raise EndpointError(f"{url} unreachable after {attempt} attempts: {exc}") from None
                wait = self._backoff(attempt)
            except (KeyError, IndexError, TypeError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
                if attempt > self.max_retries:
                    raise EndpointError(f"{url} sent a malformed reply: {exc!r}") from None
                wait = self._backoff(attempt)
            log.debug("retrying %s in %.1fs (attempt %d)", url, wait, attempt)
            time.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def _reply(raw: bytes) -> dict:
    """The JSON object of a chat completion, or ValueError/KeyError/TypeError saying why the bytes are not one."""
    if len(raw) > MAX_REPLY_BYTES:
        raise ValueError(f"a reply over {MAX_REPLY_BYTES} bytes")
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if text.lstrip()[:1] == "<":
        raise ValueError(f"an HTML or XML page, not JSON: {text.strip()[:80]!r}")
    payload = json.loads(text)
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list) or not payload["choices"]:
        raise KeyError("choices")
    if not all(isinstance(c, dict) and isinstance(c.get("message"), dict) and "content" in c["message"]
               and isinstance(c["message"]["content"], (str, type(None))) for c in payload["choices"]):
        raise KeyError("content")
    return payload


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(60.0, float(value))
    except ValueError:
        return None
