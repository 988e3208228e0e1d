"""Fake HTTP transports for replaying scripted exchanges through the real Python azure-core.

Shared by ``azure_oracle.py`` (next to this file: replays the conformance scenario table) and
``../tokens/python_tokens.py`` (makes and resumes continuation tokens). Both build a real
``azure.core.PipelineClient`` or ``AsyncPipelineClient`` over a fake transport that answers from a
:class:`Script`: the scripted initial response, then the scripted polls in order, each matched to
the request's URL by name (:data:`URLS`). Nothing goes over the network and nothing really sleeps.

Depends on the standard library, azure-core and azure-mgmt-core only. Importing this module raises
``ImportError`` when those are missing; the scripts turn that into their usage error (exit code 2).
"""

from __future__ import annotations

import http.client
import json
import platform
import threading

try:
    from importlib.metadata import version as _dist_version
except ImportError:  # pragma: no cover - Python < 3.8
    _dist_version = None

from azure.core import AsyncPipelineClient, PipelineClient
from azure.core.exceptions import DecodeError
from azure.core.pipeline.policies import RequestIdPolicy
from azure.core.pipeline.transport import AsyncHttpTransport, HttpTransport
from azure.core.polling import AsyncNoPolling, NoPolling
from azure.core.polling.async_base_polling import AsyncLROBasePolling
from azure.core.polling.base_polling import LROBasePolling
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl
from azure.core.utils import case_insensitive_dict
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.core.polling.async_arm_polling import AsyncARMPolling

BASE_URL = "http://host"
ORIGINAL_URL = BASE_URL + "/resource"

#: Scripted ``match`` names and the URLs they stand for.
URLS = {
    "operation-location": BASE_URL + "/op",
    "location": BASE_URL + "/loc",
    "location-2": BASE_URL + "/loc2",
    "azure-async-operation": BASE_URL + "/async",
    "resource-location": BASE_URL + "/resloc",
    "original-uri": ORIGINAL_URL,
}
NAMES = {url: name for name, url in URLS.items()}

#: How long one replay may take before it is declared hung (nothing really sleeps).
REPLAY_TIMEOUT = 60.0


class ScriptError(Exception):
    """A request off the script (wrong URL or method, or after the script ended)."""


def url_name(url, names=NAMES):
    """The ``match`` name of ``url`` in ``names`` (URL to name), else ``unknown:URL``."""
    return names.get(url, "unknown:" + url)


def body_bytes(entry, ensure_ascii=True):
    """The body of a scripted response: ``raw_body`` text as UTF-8, else the JSON ``body`` in
    compact form (non-ASCII text ``\\u``-escaped unless ``ensure_ascii`` is false, then UTF-8),
    else empty."""
    if entry.get("raw_body") is not None:
        return entry["raw_body"].encode("utf-8")
    if entry.get("body") is None:
        return b""
    return json.dumps(entry["body"], separators=(",", ":"), ensure_ascii=ensure_ascii).encode("utf-8")


class Script:
    """The scripted exchange served by :class:`FakeTransport` and :class:`AsyncFakeTransport`.

    When ``initial`` is given, the first request must be the initial request (``initial_method``
    to :data:`ORIGINAL_URL`) and gets that response; without it the script starts with the polls.
    Every later request must be a GET to the URL named by the next entry of ``polls`` (its
    ``match``) and gets that entry's ``status``, ``headers`` and body (:func:`body_bytes`). What
    each of those requests was is kept in ``requests`` (see :meth:`poll_record`), sleeps in
    ``sleeps``; a request off the script is described in ``problems`` and raises
    :class:`ScriptError`. Thread-safe: the sync poller polls from a thread.

    Subclasses may change :attr:`names`, :attr:`ensure_ascii`, :meth:`poll_record` and
    :meth:`serve_poll`.
    """

    #: URL to ``match`` name (:func:`url_name`).
    names = NAMES
    #: Passed to :func:`body_bytes`.
    ensure_ascii = True

    def __init__(self, initial_method=None, initial=None, polls=()):
        self.initial_method = initial_method
        self.initial = initial
        self.initial_sent = initial is None
        self.pending = list(polls)
        self.requests = []  # poll_record() of every request after the initial one
        self.sleeps = []
        self.problems = []
        self._lock = threading.Lock()

    def respond(self, request):
        """Returns ``(status, headers, body bytes)`` for ``request`` or raises."""
        with self._lock:
            if not self.initial_sent:
                self.initial_sent = True
                if request.method != self.initial_method or request.url != ORIGINAL_URL:
                    self._problem(
                        "initial request was {} {}, expected {} {}".format(
                            request.method, request.url, self.initial_method, ORIGINAL_URL
                        )
                    )
                return self.response(self.initial)
            name = url_name(request.url, self.names)
            self.requests.append(self.poll_record(request, name))
            if request.method != "GET":
                self._problem("request #{} is {} {}, not a GET".format(len(self.requests), request.method, name))
            if not self.pending:
                self._problem(
                    "unexpected request #{} to {} after the scripted polls were used up".format(len(self.requests), name)
                )
            entry = self.pending.pop(0)
            if entry["match"] != name:
                self._problem(
                    "request #{} went to {}, the script expected {}".format(len(self.requests), name, entry["match"])
                )
            return self.serve_poll(entry, name)

    def poll_record(self, request, name):
        """What ``requests`` keeps of a request after the initial one (called under the lock):
        ``(match name, x-ms-client-request-id)``. May raise instead, to refuse the request."""
        return name, request.headers.get("x-ms-client-request-id")

    def serve_poll(self, entry, name):
        """The response to a request that matched the poll ``entry`` (called under the lock)."""
        return self.response(entry)

    def response(self, entry):
        """``(status, headers, body bytes)`` of a scripted response."""
        return entry["status"], dict(entry.get("headers") or {}), body_bytes(entry, self.ensure_ascii)

    def _problem(self, text):
        self.problems.append(text)
        raise ScriptError(text)

    def record_sleep(self, seconds):
        """Records a sleep the poller asked the transport for, instead of sleeping."""
        with self._lock:
            self.sleeps.append(seconds)

    def leftovers(self):
        """The ``match`` names of the polls not requested yet."""
        return [entry["match"] for entry in self.pending]


class _ClosedInternal:
    def close(self):
        pass


class _AsyncClosedInternal:
    async def close(self):
        pass


def _response_kwargs(request, status, headers, internal):
    headers = case_insensitive_dict(headers)
    return dict(
        request=request,
        internal_response=internal,
        status_code=status,
        reason=http.client.responses.get(status, ""),
        content_type=headers.get("content-type"),
        headers=headers,
        stream_download_generator=None,
    )


class FakeResponse(HttpResponseImpl):
    """An azure.core.rest.HttpResponse with its body already in memory."""

    def __init__(self, request, status, headers, content):
        super().__init__(**_response_kwargs(request, status, headers, _ClosedInternal()))
        self._content = content


class AsyncFakeResponse(AsyncHttpResponseImpl):
    """An azure.core.rest.AsyncHttpResponse with its body already in memory."""

    def __init__(self, request, status, headers, content):
        super().__init__(**_response_kwargs(request, status, headers, _AsyncClosedInternal()))
        self._content = content


class FakeTransport(HttpTransport):
    """Sync transport serving a :class:`Script`; sleep() is recorded, not slept."""

    def __init__(self, script):
        self.script = script

    def send(self, request, **kwargs):
        status, headers, content = self.script.respond(request)
        return FakeResponse(request, status, headers, content)

    def open(self):
        pass

    def close(self):
        pass

    def __exit__(self, *args):
        self.close()

    def sleep(self, duration):
        self.script.record_sleep(duration)


class AsyncFakeTransport(AsyncHttpTransport):
    """Async transport serving a :class:`Script`; sleep() is recorded, not slept."""

    def __init__(self, script):
        self.script = script

    async def send(self, request, **kwargs):
        status, headers, content = self.script.respond(request)
        return AsyncFakeResponse(request, status, headers, content)

    async def open(self):
        pass

    async def close(self):
        pass

    async def __aexit__(self, *args):
        await self.close()

    async def sleep(self, duration):
        self.script.record_sleep(duration)


def make_client(script, is_async):
    """A pipeline client for :data:`BASE_URL` over a fake transport serving ``script``.

    ``RequestIdPolicy`` only: it gives a request without an x-ms-client-request-id one (which
    polls re-use). No retry policy (a network error must not be retried), no ContentDecodePolicy.
    """
    if is_async:
        return AsyncPipelineClient(BASE_URL, transport=AsyncFakeTransport(script), policies=[RequestIdPolicy()])
    return PipelineClient(BASE_URL, transport=FakeTransport(script), policies=[RequestIdPolicy()])


def deserialize(pipeline_response):
    """The deserialization callback: the body parsed as JSON (azure-core does not call it for an
    empty body, except NoPolling, which gets None here too)."""
    response = pipeline_response.http_response
    text = response.text()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise DecodeError("Impossible to deserialize", response=response, error=error) from error


def no_polling(is_async):
    """azure-core's ``NoPolling`` or ``AsyncNoPolling``."""
    return AsyncNoPolling() if is_async else NoPolling()


def polling_method(flavour, is_async, interval, final_state_via=None, **kwargs):
    """A new polling method: ``flavour`` ``"base"`` (``LROBasePolling``) or ``"arm"``
    (``ARMPolling``), sync or async, with ``lro_options={"final-state-via": final_state_via}``
    unless that is None, and ``kwargs``. Raises ValueError for another flavour."""
    classes = {
        ("base", False): LROBasePolling,
        ("base", True): AsyncLROBasePolling,
        ("arm", False): ARMPolling,
        ("arm", True): AsyncARMPolling,
    }
    if (flavour, is_async) not in classes:
        raise ValueError("unknown flavour {!r}".format(flavour))
    if final_state_via is not None:
        kwargs["lro_options"] = {"final-state-via": final_state_via}
    return classes[(flavour, is_async)](interval, **kwargs)


def dist_version(name):
    """The installed version of the distribution ``name``, or None."""
    if _dist_version is None:
        return None
    try:
        return _dist_version(name)
    except Exception:  # pylint: disable=broad-except
        return None


def versions():
    """The versions in use, for the scripts' first line: Python, azure-core, azure-mgmt-core."""
    return {
        "python": platform.python_version(),
        "azure-core": dist_version("azure-core"),
        "azure-mgmt-core": dist_version("azure-mgmt-core"),
    }
