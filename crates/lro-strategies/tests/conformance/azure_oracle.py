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

The fake transports, the client and the JSON deserialization callback are those of
``fake_azure.py`` (next to this file). Depends on the standard library, azure-core and
azure-mgmt-core only (the versions the table was verified against are azure-core 1.41.0 and
azure-mgmt-core 1.6.0; the versions used are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from urllib.parse import urlsplit
import os
from pathlib import Path
import sys
import traceback

# The shared fake transports live next to this script, in fake_azure.py (on the path even under
# python -P); keep its bytecode out of the source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True

try:
    from azure.core.exceptions import DecodeError, HttpResponseError, ServiceRequestError
    from azure.core.polling import AsyncLROPoller, LROPoller
    from azure.core.rest import HttpRequest

    import fake_azure
    from fake_azure import ORIGINAL_URL, REPLAY_TIMEOUT, ScriptError, deserialize, make_client
except ImportError as _import_error:  # pragma: no cover - environment problem
    sys.stderr.write(
        "azure_oracle.py: cannot import azure-core / azure-mgmt-core ({}).\n"
        "Install them first: pip install azure-core==1.41.0 azure-mgmt-core==1.6.0\n".format(_import_error)
    )
    sys.exit(2)

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


class Script(fake_azure.Script):
    """The scenario's exchange (``fake_azure.Script``), failing where a real transport would.

    The first request must be the initial request (scenario method, original URI); the following
    requests are served from ``polls`` in order. Every request is recorded, with whether it is the
    final GET. Besides the shared script's checks: only ``azure.core.rest.HttpRequest`` is served,
    a poll to a relative URL and a poll entry with ``network_error`` raise ``ServiceRequestError``,
    and the scenario's ``match`` names include ``other-origin``.
    """

    #: Scenario ``match`` names and the URLs they stand for: the shared ones and another origin.
    names = {**fake_azure.NAMES, "http://other.example/op": "other-origin"}

    def __init__(self, method, initial, polls):
        super().__init__(method, initial, polls)
        self.polling_method = None  # set once the polling method exists: tells a final GET apart

    def respond(self, request):
        if not isinstance(request, HttpRequest):
            raise ScriptError("the fake transport only serves azure.core.rest.HttpRequest, got {!r}".format(request))
        return super().respond(request)

    def poll_record(self, request, name):
        """``(match name, x-ms-client-request-id, is final GET)``."""
        if not urlsplit(request.url).scheme:
            # A real transport cannot send a URL without scheme and host (requests raises
            # MissingSchema, which azure-core turns into ServiceRequestError): do the same.
            raise ServiceRequestError("cannot send a request to the relative URL {!r}".format(request.url))
        return name, request.headers.get("x-ms-client-request-id"), self._in_final_get()

    def serve_poll(self, entry, name):
        if entry.get("network_error"):
            raise ServiceRequestError("scripted network error for {}".format(name))
        return super().serve_poll(entry, name)

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


def make_polling_method(options, is_async):
    """The polling method the scenario's options describe."""
    known = {"flavour", "final_state_via", "polling_interval", "polling", "request_id", "resume_from_continuation_token"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError("unknown option(s): {}".format(", ".join(unknown)))
    if options.get("polling") is False:
        return fake_azure.no_polling(is_async)
    kwargs = {}
    if options.get("request_id") is not None:
        kwargs["request_id"] = options["request_id"]
    return fake_azure.polling_method(
        options.get("flavour"), is_async, options.get("polling_interval", 30), options.get("final_state_via"), **kwargs
    )


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
    client = make_client(script, is_async=False)
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
    client = make_client(script, is_async=True)
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

    versions = fake_azure.versions()
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
