#!/usr/bin/env python3
"""Replays the conformance scenario table through the real Python azure-core.

Usage: python azure_oracle.py SCENARIOS_JSON [--report OUT_JSON] [--only NAME_SUBSTRING]

Every scenario is replayed twice, through the sync ``LROPoller`` (``.result()``) and through the
``AsyncLROPoller`` (``await poller.result()``), against fake transports that serve the scenario's
scripted responses in order. The sync observations are compared with ``expect``; the async ones
with ``expect_async`` merged over ``expect`` (and served ``polls_async`` instead of ``polls`` when
the scenario has it). The keys compared are those present in the expectation; in addition every
replay must consume exactly the scripted requests. Any ``rust`` key is ignored.

Prints one line per scenario (``ok NAME`` or one ``MISMATCH NAME: FIELD expected X got Y`` line
per difference) and ends with ``oracle: N passed, M failed``. Exits 0 when every selected scenario
matches in both modes, 1 otherwise (also when ``--only`` selects nothing), 2 on bad usage.

Depends on the standard library, azure-core and azure-mgmt-core only (the versions the table was
verified against are azure-core 1.41.0 and azure-mgmt-core 1.6.0; the versions used are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
from urllib.parse import urlsplit
import os
import platform
import sys
import threading
import traceback

try:
    from importlib.metadata import version as _dist_version
except ImportError:  # pragma: no cover - Python < 3.8
    _dist_version = None

try:
    from azure.core import AsyncPipelineClient, PipelineClient
    from azure.core.exceptions import DecodeError, HttpResponseError, ServiceRequestError
    from azure.core.pipeline.policies import RequestIdPolicy
    from azure.core.pipeline.transport import AsyncHttpTransport, HttpTransport
    from azure.core.polling import AsyncLROPoller, AsyncNoPolling, LROPoller, NoPolling
    from azure.core.polling.async_base_polling import AsyncLROBasePolling
    from azure.core.polling.base_polling import LROBasePolling
    from azure.core.rest import HttpRequest
    from azure.core.rest._http_response_impl import HttpResponseImpl
    from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl
    from azure.core.utils import case_insensitive_dict
    from azure.mgmt.core.polling.arm_polling import ARMPolling
    from azure.mgmt.core.polling.async_arm_polling import AsyncARMPolling
except ImportError as _import_error:  # pragma: no cover - environment problem
    sys.stderr.write(
        "azure_oracle.py: cannot import azure-core / azure-mgmt-core ({}).\n"
        "Install them first: pip install azure-core==1.41.0 azure-mgmt-core==1.6.0\n".format(_import_error)
    )
    sys.exit(2)

BASE_URL = "http://host"
ORIGINAL_URL = BASE_URL + "/resource"

#: Scenario ``match`` names and the URLs they stand for.
URLS = {
    "operation-location": BASE_URL + "/op",
    "location": BASE_URL + "/loc",
    "location-2": BASE_URL + "/loc2",
    "azure-async-operation": BASE_URL + "/async",
    "resource-location": BASE_URL + "/resloc",
    "original-uri": ORIGINAL_URL,
    "other-origin": "http://other.example/op",
}
NAMES = {url: name for name, url in URLS.items()}

#: Expectation keys this oracle knows how to observe.
EXPECT_KEYS = (
    "outcome",
    "error_kind",
    "status_string",
    "resource",
    "final_get",
    "request_sequence",
    "sleeps",
    "poll_request_ids",
    "error_raised_at",
    "error_message",
    "continuation_token_on_error",
)

#: The internal exception types of azure.core.polling.base_polling, reported by name.
POLLING_ERRORS = ("BadStatus", "BadResponse", "OperationFailed")

#: The versions the table was verified against (others only get a warning).
VERIFIED_VERSIONS = {"azure-core": "1.41.0", "azure-mgmt-core": "1.6.0"}

#: How long one replay may take before it is declared hung (nothing really sleeps).
REPLAY_TIMEOUT = 60.0


class ScriptError(Exception):
    """A request the scenario did not script (wrong URL or method, or after the script ended)."""


def url_name(url):
    return NAMES.get(url, "unknown:" + url)


def body_bytes(entry):
    """The body of a scripted response: ``raw_body`` text, else compact JSON, else empty."""
    if entry.get("raw_body") is not None:
        return entry["raw_body"].encode("utf-8")
    if entry.get("body") is None:
        return b""
    return json.dumps(entry["body"], separators=(",", ":")).encode("utf-8")


class Script:
    """The scripted exchange shared by the sync and async fake transports.

    The first request must be the initial request (scenario method, original URI); the following
    requests are served from ``polls`` in order. Every request is recorded.
    """

    def __init__(self, method, initial, polls):
        self.initial_method = method
        self.initial = initial
        self.pending = list(polls)
        self.initial_sent = False
        self.requests = []  # (match name, x-ms-client-request-id, is final GET) after the initial one
        self.sleeps = []
        self.problems = []
        self.polling_method = None  # set once the polling method exists: tells a final GET apart
        self._lock = threading.Lock()

    def respond(self, request):
        """Returns ``(status, headers, body bytes)`` for ``request`` or raises."""
        with self._lock:
            name = url_name(request.url)
            if not self.initial_sent:
                self.initial_sent = True
                if request.method != self.initial_method or request.url != ORIGINAL_URL:
                    self.problems.append(
                        "initial request was {} {}, expected {} {}".format(
                            request.method, request.url, self.initial_method, ORIGINAL_URL
                        )
                    )
                    raise ScriptError(self.problems[-1])
                entry = self.initial
                return entry["status"], dict(entry.get("headers") or {}), body_bytes(entry)
            if not urlsplit(request.url).scheme:
                # A real transport cannot send a URL without scheme and host (requests raises
                # MissingSchema, which azure-core turns into ServiceRequestError): do the same.
                raise ServiceRequestError("cannot send a request to the relative URL {!r}".format(request.url))
            self.requests.append((name, request.headers.get("x-ms-client-request-id"), self._in_final_get()))
            if request.method != "GET":
                self.problems.append("request #{} is {} {}, not a GET".format(len(self.requests), request.method, name))
                raise ScriptError(self.problems[-1])
            if not self.pending:
                self.problems.append(
                    "unexpected request #{} to {} after the scripted polls were used up".format(len(self.requests), name)
                )
                raise ScriptError(self.problems[-1])
            entry = self.pending.pop(0)
            if entry["match"] != name:
                self.problems.append(
                    "request #{} went to {}, the script expected {}".format(len(self.requests), name, entry["match"])
                )
                raise ScriptError(self.problems[-1])
            if entry.get("network_error"):
                raise ServiceRequestError("scripted network error for {}".format(name))
            return entry["status"], dict(entry.get("headers") or {}), body_bytes(entry)

    def _in_final_get(self):
        # Status polls are only sent while the status is not terminal; the final GET is sent
        # once it is (azure-core's _poll loop), so the method's status tells them apart.
        method = self.polling_method
        if method is None:
            return False
        try:
            return bool(method.finished())
        except Exception:  # pylint: disable=broad-except
            return False

    def record_sleep(self, seconds):
        with self._lock:
            self.sleeps.append(seconds)

    def leftovers(self):
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


def _check_rest(request):
    if not isinstance(request, HttpRequest):
        raise ScriptError("the fake transport only serves azure.core.rest.HttpRequest, got {!r}".format(request))


class FakeTransport(HttpTransport):
    """Sync transport serving a Script; sleep() is recorded, not slept."""

    def __init__(self, script):
        self.script = script

    def send(self, request, **kwargs):
        _check_rest(request)
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
    """Async transport serving a Script; sleep() is recorded, not slept."""

    def __init__(self, script):
        self.script = script

    async def send(self, request, **kwargs):
        _check_rest(request)
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


def make_polling_method(options, is_async):
    """The polling method the scenario's options describe."""
    known = {"flavour", "final_state_via", "polling_interval", "polling", "request_id", "resume_from_continuation_token"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError("unknown option(s): {}".format(", ".join(unknown)))
    if options.get("polling") is False:
        return AsyncNoPolling() if is_async else NoPolling()
    flavour = options.get("flavour")
    classes = {
        ("base", False): LROBasePolling,
        ("base", True): AsyncLROBasePolling,
        ("arm", False): ARMPolling,
        ("arm", True): AsyncARMPolling,
    }
    if (flavour, is_async) not in classes:
        raise ValueError("unknown flavour {!r}".format(flavour))
    kwargs = {}
    if options.get("final_state_via") is not None:
        kwargs["lro_options"] = {"final-state-via": options["final_state_via"]}
    if options.get("request_id") is not None:
        kwargs["request_id"] = options["request_id"]
    return classes[(flavour, is_async)](options.get("polling_interval", 30), **kwargs)


def make_client(transport, is_async):
    # RequestIdPolicy only: it gives the initial request the x-ms-client-request-id that polls
    # re-use. No retry policy (a network error must not be retried), no ContentDecodePolicy.
    client_class = AsyncPipelineClient if is_async else PipelineClient
    return client_class(BASE_URL, transport=transport, policies=[RequestIdPolicy()])


def error_kind(error):
    if error is None:
        return None
    inner = getattr(error, "inner_exception", None)
    if isinstance(error, HttpResponseError) and type(inner).__name__ in POLLING_ERRORS:
        return type(inner).__name__
    if isinstance(error, DecodeError):
        return "DecodeError"
    if isinstance(error, ServiceRequestError):
        return "TransportError"
    if isinstance(error, ValueError):
        return "ValueError"
    return "Other:" + type(error).__name__


def status_of(polling_method):
    try:
        return polling_method.status()
    except Exception:  # pylint: disable=broad-except
        return None


class Replay:
    """What one replay observed."""

    def __init__(self, script):
        self.script = script
        self.polling_method = None
        self.error = None
        self.error_raised_at = None
        self.resource = None
        self.harness_problem = None

    def fail_at(self, place, error):
        self.error = error
        self.error_raised_at = place

    def observed(self):
        error = self.error
        kind = error_kind(error)
        status = status_of(self.polling_method) if self.polling_method is not None else None
        lowered = str(status).lower() if status is not None else None
        if error is None:
            if lowered in ("succeeded", "failed", "canceled"):
                outcome = lowered
            else:
                outcome = "unfinished:{}".format(status)
        elif kind == "OperationFailed" and lowered in ("failed", "canceled"):
            outcome = lowered
        else:
            outcome = "error"
        finals = [name for name, _, final in self.script.requests if final]
        return {
            "outcome": outcome,
            "error_kind": kind,
            "status_string": status,
            "resource": self.resource if error is None else None,
            "final_get": finals[-1] if finals else None,
            "request_sequence": [name for name, _, _ in self.script.requests],
            "sleeps": list(self.script.sleeps),
            "poll_request_ids": [request_id for _, request_id, _ in self.script.requests],
            "error_raised_at": self.error_raised_at,
            "error_message": None if error is None else str(error),
            "continuation_token_on_error": bool(getattr(error, "continuation_token", None)) if error else False,
        }


def replay_sync(scenario, polls):
    script = Script(scenario["method"], scenario["initial"], polls)
    replay = Replay(script)
    options = scenario["options"]
    client = make_client(FakeTransport(script), is_async=False)
    initial = client.send_request(
        HttpRequest(scenario["method"], ORIGINAL_URL), _return_pipeline_response=True, stream=False
    )
    method = make_polling_method(options, is_async=False)
    replay.polling_method = script.polling_method = method
    try:
        if options.get("resume_from_continuation_token"):
            # Initialize a first method, take its token, then rebuild the poller from the token with
            # a fresh method: no polling thread exists before the rebuild, so nothing can race.
            method.initialize(client, initial, deserialize)
            token = method.get_continuation_token()
            method = make_polling_method(options, is_async=False)
            replay.polling_method = script.polling_method = method
            poller = LROPoller.from_continuation_token(
                polling_method=method, continuation_token=token, client=client, deserialization_callback=deserialize
            )
        else:
            poller = LROPoller(client, initial, deserialize, method)
    except Exception as error:  # pylint: disable=broad-except
        replay.fail_at("constructor", error)
        return replay
    try:
        replay.resource = poller.result(timeout=REPLAY_TIMEOUT)
    except Exception as error:  # pylint: disable=broad-except
        replay.fail_at("result", error)
    if not poller.done():
        replay.harness_problem = "the sync poller was still running after {}s".format(REPLAY_TIMEOUT)
    return replay


async def _replay_async(scenario, polls):
    script = Script(scenario["method"], scenario["initial"], polls)
    replay = Replay(script)
    options = scenario["options"]
    client = make_client(AsyncFakeTransport(script), is_async=True)
    initial = await client.send_request(
        HttpRequest(scenario["method"], ORIGINAL_URL), _return_pipeline_response=True, stream=False
    )
    method = make_polling_method(options, is_async=True)
    replay.polling_method = script.polling_method = method
    try:
        poller = AsyncLROPoller(client, initial, deserialize, method)
        if options.get("resume_from_continuation_token"):
            token = poller.continuation_token()
            method = make_polling_method(options, is_async=True)
            replay.polling_method = script.polling_method = method
            poller = AsyncLROPoller.from_continuation_token(
                polling_method=method, continuation_token=token, client=client, deserialization_callback=deserialize
            )
    except Exception as error:  # pylint: disable=broad-except
        replay.fail_at("constructor", error)
        return replay
    try:
        replay.resource = await asyncio.wait_for(poller.result(), REPLAY_TIMEOUT)
    except asyncio.TimeoutError:
        replay.harness_problem = "the async poller was still running after {}s".format(REPLAY_TIMEOUT)
    except Exception as error:  # pylint: disable=broad-except
        replay.fail_at("result", error)
    return replay


def replay_async(scenario, polls):
    return asyncio.run(_replay_async(scenario, polls))


def show(value):
    return json.dumps(value, sort_keys=True)


def values_equal(expected, got):
    # == already treats 5 and 5.0 as equal, also inside lists and dicts; bool is no number here.
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    return expected == got


def compare(expect, observed):
    """Mismatches as (field, expected, got) for the keys present in ``expect``."""
    mismatches = []
    for key, expected in expect.items():
        if key not in EXPECT_KEYS:
            mismatches.append((key, expected, "<not observable by the oracle>"))
            continue
        got = observed[key]
        if key == "error_message":
            if got is None or expected is None or expected not in got:
                if not (expected is None and got is None):
                    mismatches.append((key, expected, got))
        elif not values_equal(expected, got):
            mismatches.append((key, expected, got))
    return mismatches


def check_replay(expect, replay):
    """All mismatches of one replay: expectations, script consumption, harness problems."""
    observed = replay.observed()
    mismatches = compare(expect, observed)
    script = replay.script
    for problem in script.problems:
        mismatches.append(("script", "only scripted requests", problem))
    if not script.initial_sent:
        mismatches.append(("script", "the initial request", "no request at all"))
    leftovers = script.leftovers()
    if leftovers:
        mismatches.append(("script", "every scripted poll consumed", "left over: " + show(leftovers)))
    if replay.harness_problem:
        mismatches.append(("harness", "the replay to finish", replay.harness_problem))
    return observed, mismatches


def run_mode(scenario, mode):
    if mode == "sync":
        expect = scenario["expect"]
        polls = scenario["polls"]
        runner = replay_sync
    else:
        expect = dict(scenario["expect"])
        expect.update(scenario.get("expect_async") or {})
        polls = scenario["polls_async"] if "polls_async" in scenario else scenario["polls"]
        runner = replay_async
    try:
        replay = runner(scenario, polls)
    except Exception:  # pylint: disable=broad-except
        return None, [("harness", "a replay", "crashed: " + traceback.format_exc().strip().splitlines()[-1])], (
            traceback.format_exc()
        )
    observed, mismatches = check_replay(expect, replay)
    return observed, mismatches, None


def dist_version(name):
    if _dist_version is None:
        return None
    try:
        return _dist_version(name)
    except Exception:  # pylint: disable=broad-except
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Replay the conformance scenarios through the real Python azure-core (sync and async pollers)."
    )
    parser.add_argument("scenarios", metavar="SCENARIOS_JSON")
    parser.add_argument("--report", metavar="OUT_JSON", help="write every observation to this JSON file")
    parser.add_argument("--only", metavar="NAME_SUBSTRING", help="replay only scenarios whose name contains this")
    args = parser.parse_args(argv)

    with open(args.scenarios, encoding="utf-8") as file:
        scenarios = json.load(file)
    if args.only is not None:
        scenarios = [scenario for scenario in scenarios if args.only in scenario["name"]]

    versions = {
        "python": platform.python_version(),
        "azure-core": dist_version("azure-core"),
        "azure-mgmt-core": dist_version("azure-mgmt-core"),
    }
    # Only the final summary line starts with "oracle:", for CI output parsers.
    print(
        "azure_oracle: replaying {} scenario(s) from {} (sync and async pollers); {}".format(
            len(scenarios), args.scenarios, ", ".join("{} {}".format(k, v) for k, v in versions.items())
        )
    )
    for dist, pinned in VERIFIED_VERSIONS.items():
        if versions[dist] != pinned:
            print("azure_oracle: warning: {} {} is not {}, the version the table was verified against".format(
                dist, versions[dist], pinned
            ))
    sys.stdout.flush()

    passed = failed = 0
    results = []
    for scenario in scenarios:
        name = scenario["name"]
        entry = {"name": name}
        lines = []
        for mode in ("sync", "async"):
            observed, mismatches, crash = run_mode(scenario, mode)
            entry[mode] = {
                "ok": not mismatches,
                "observed": observed,
                "mismatches": [{"field": f, "expected": e, "got": g} for f, e, g in mismatches],
            }
            if crash:
                entry[mode]["traceback"] = crash
            for field, expected, got in mismatches:
                lines.append("MISMATCH {}: {}.{} expected {} got {}".format(name, mode, field, show(expected), show(got)))
        entry["ok"] = not lines
        results.append(entry)
        if lines:
            failed += 1
            for line in lines:
                print(line)
        else:
            passed += 1
            print("ok {}".format(name))
        sys.stdout.flush()

    if args.report:
        directory = os.path.dirname(os.path.abspath(args.report))
        os.makedirs(directory, exist_ok=True)
        report = {
            "scenarios_file": args.scenarios,
            "only": args.only,
            "versions": versions,
            "passed": passed,
            "failed": failed,
            "results": results,
        }
        with open(args.report, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
            file.write("\n")

    if not scenarios:
        print("azure_oracle: no scenario selected (--only {!r}): that is a failure".format(args.only))
    print("oracle: {} passed, {} failed".format(passed, failed))
    return 0 if scenarios and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
