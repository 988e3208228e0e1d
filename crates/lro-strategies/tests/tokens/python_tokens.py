#!/usr/bin/env python3
"""Continuation-token interoperability with Python azure-core, in both directions.

Usage:
    python python_tokens.py make CASES_JSON OUT_JSON
    python python_tokens.py resume CASES_JSON TOKENS_JSON

``make``: for every case of CASES_JSON, sends the case's initial request through a real
``azure.core.PipelineClient`` (``RequestIdPolicy`` only, over a fake transport that answers with the
case's ``initial`` response; the transports are ``tests/conformance/fake_azure.py``'s, shared with
``tests/conformance/azure_oracle.py``), initializes the case's
polling method (``LROBasePolling``, ``ARMPolling`` with ``lro_options={"final-state-via": ...}``, or
``NoPolling``) with that response, takes ``get_continuation_token()`` and writes OUT_JSON, a JSON
list of ``{"name", "token"}``. Every token is base64-decoded (and so is the response content inside
it) and searched for the words ``secret`` and ``Bearer``, which the cases put in an
``Authorization`` request header and a ``Set-Cookie`` response header: a token holding either is a
failure. ``cargo test -p lro-strategies --test tokens`` resumes these tokens in Rust.

``resume``: for every ``{"name", "token"}`` of TOKENS_JSON (tokens made by Rust, written by the
``tokens`` test when ``LRO_WRITE_RUST_TOKENS`` names a file), resumes the operation in azure-core with
``LROPoller.from_continuation_token(polling_method=..., continuation_token=..., client=<client over a
fake transport serving the case's polls>, deserialization_callback=<JSON>)``, and the same with
``AsyncLROPoller``. Checks that ``result()`` equals the case's ``expect_resource``, that every
scripted poll was requested, in order, and nothing else, and that every poll repeats the case's
``x-ms-client-request-id``.

A case may list ``known_differences`` (``direction`` ``python-to-rust`` or ``rust-to-python``,
``python_error``, ``python_error_contains``, ``reason``): in that direction azure-core must fail with
that error (type name, and text in its message), and the case is reported as ``known``, not as
passed. If azure-core no longer fails that way, the case fails, so that the table stays true.

Prints one line per case (``ok``, ``known`` or ``FAILED``) and ends with
``python tokens: N passed, M failed`` (``resume``) or ``python tokens made: N, M failed`` (``make``,
which writes OUT_JSON only when nothing failed). Exits 0 when nothing failed, 1 otherwise, 2 on bad
usage.

Depends on the standard library, azure-core, azure-mgmt-core and ``../conformance/fake_azure.py``
only (the pinned versions are azure-core 1.41.0 and azure-mgmt-core 1.6.0, as for the conformance
oracle).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
from pathlib import Path
import sys
import traceback

# The shared fake transports live in tests/conformance/fake_azure.py; keep its bytecode out of
# the source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
sys.dont_write_bytecode = True

try:
    from azure.core.polling import AsyncLROPoller, LROPoller
    from azure.core.rest import HttpRequest

    import fake_azure
    from fake_azure import ORIGINAL_URL, REPLAY_TIMEOUT, ScriptError, deserialize, make_client
except ImportError as _import_error:  # pragma: no cover - environment problem
    sys.stderr.write(
        "python_tokens.py: cannot import azure-core / azure-mgmt-core ({}).\n"
        "Install them first: pip install azure-core==1.41.0 azure-mgmt-core==1.6.0\n".format(_import_error)
    )
    sys.exit(2)

#: Words that must never appear in a token (the cases put them in credentials).
FORBIDDEN = ("secret", "Bearer")

PYTHON_TO_RUST = "python-to-rust"
RUST_TO_PYTHON = "rust-to-python"


class Script(fake_azure.Script):
    """What the fake transports serve: the initial response to the initial request (``make``), or
    the case's polls in order (``resume``); see ``fake_azure.Script``. JSON bodies are UTF-8, not
    ASCII-escaped, so that non-ASCII text reaches the token as multi-byte UTF-8."""

    ensure_ascii = False


def make_polling_method(case, is_async):
    """The case's polling method (``flavour`` ``none``, ``base`` or ``arm``), polling interval 0."""
    flavour = case["flavour"]
    if flavour == "none":
        return fake_azure.no_polling(is_async)
    return fake_azure.polling_method(flavour, is_async, 0, case.get("final_state_via"))


def known_difference(case, direction):
    for entry in case.get("known_differences") or []:
        if entry["direction"] not in (PYTHON_TO_RUST, RUST_TO_PYTHON):
            raise ValueError("{}: unknown direction {!r}".format(case["name"], entry["direction"]))
        if entry["direction"] == direction:
            return entry
    return None


def describe(error):
    return "{}: {}".format(type(error).__name__, error)


def is_the_known_error(error, known):
    return type(error).__name__ == known["python_error"] and known.get("python_error_contains", "") in str(error)


def leaks(token):
    """The forbidden words found in a token: in its decoded JSON, or in the response content."""
    try:
        text = base64.b64decode(token, validate=True).decode("utf-8")
        data = json.loads(text)["data"]
        content = base64.b64decode(data["response"]["content"]).decode("utf-8", errors="replace")
    except Exception as error:  # pylint: disable=broad-except
        return ["<undecodable token: {}>".format(describe(error))]
    return [word for word in FORBIDDEN if word in text or word in content]


def python_token(case):
    """azure-core's token for the case's operation, taken right after the initial response."""
    script = Script(case["method"], case["initial"])
    client = make_client(script, is_async=False)
    request = HttpRequest(case["method"], ORIGINAL_URL, headers=dict(case.get("request_headers") or {}))
    initial = client.send_request(request, _return_pipeline_response=True, stream=False)
    method = make_polling_method(case, is_async=False)
    # No poller: LROPoller would start polling; the token only needs the initialized method.
    method.initialize(client, initial, deserialize)
    token = method.get_continuation_token()
    if script.problems or script.requests:
        raise ScriptError("the initial exchange went wrong: {}".format(script.problems or script.requests))
    return token


def make(cases, out):
    tokens = []
    failed = known = 0
    for case in cases:
        name = case["name"]
        expected = known_difference(case, PYTHON_TO_RUST)
        try:
            token = python_token(case)
        except Exception as error:  # pylint: disable=broad-except
            if expected and is_the_known_error(error, expected):
                known += 1
                print("known {}: azure-core raised {}; no token for Rust ({})".format(name, describe(error), expected["reason"]))
            else:
                failed += 1
                print("FAILED {}: azure-core raised {}".format(name, describe(error)))
                traceback.print_exc(file=sys.stdout)
            continue
        if expected:
            failed += 1
            print(
                "FAILED {}: cases.json expects azure-core to fail with {} here, but it made a token; "
                "update the case".format(name, expected["python_error"])
            )
            continue
        found = leaks(token)
        if found:
            failed += 1
            print("FAILED {}: THE TOKEN CONTAINS {} (credentials leaked into a continuation token)".format(name, found))
            continue
        tokens.append({"name": name, "token": token})
        print("ok {}: token of {} characters, no credentials in it".format(name, len(token)))
    if failed == 0:
        directory = os.path.dirname(os.path.abspath(out))
        os.makedirs(directory, exist_ok=True)
        with open(out, "w", encoding="utf-8") as file:
            json.dump(tokens, file, indent=2)
            file.write("\n")
        print("python_tokens: wrote {} token(s) to {}; {} case(s) without a token (known above)".format(len(tokens), out, known))
    else:
        print("python_tokens: {} not written because of the failures above".format(out))
    print("python tokens made: {}, {} failed".format(len(tokens), failed))
    return 0 if failed == 0 else 1


def resume_sync(case, token, callback):
    script = Script(polls=case["polls"])
    client = make_client(script, is_async=False)
    poller = LROPoller.from_continuation_token(
        polling_method=make_polling_method(case, is_async=False),
        continuation_token=token,
        client=client,
        deserialization_callback=callback,
    )
    resource = poller.result(timeout=REPLAY_TIMEOUT)
    if not poller.done():
        raise RuntimeError("the poller was still running after {}s".format(REPLAY_TIMEOUT))
    return script, resource


async def _resume_async(case, token, callback):
    script = Script(polls=case["polls"])
    client = make_client(script, is_async=True)
    poller = AsyncLROPoller.from_continuation_token(
        polling_method=make_polling_method(case, is_async=True),
        continuation_token=token,
        client=client,
        deserialization_callback=callback,
    )
    resource = await asyncio.wait_for(poller.result(), REPLAY_TIMEOUT)
    return script, resource


def resume_async(case, token, callback):
    return asyncio.run(_resume_async(case, token, callback))


def check_resumed(case, script, resource):
    """The problems of one successful resume: result, requests, request ids."""
    problems = list(script.problems)
    if resource != case["expect_resource"]:
        problems.append("result {} != expect_resource {}".format(json.dumps(resource), json.dumps(case["expect_resource"])))
    leftovers = script.leftovers()
    if leftovers:
        problems.append("scripted polls never requested: {}".format(leftovers))
    request_id = (case.get("request_headers") or {}).get("x-ms-client-request-id")
    if request_id is not None:
        wrong = [(name, seen) for name, seen in script.requests if seen != request_id]
        if wrong:
            problems.append("polls without the x-ms-client-request-id {!r}: {}".format(request_id, wrong))
    return problems


def resume_one(case, token, mode):
    """``(problems, known_error)`` of resuming ``token`` in one mode."""
    runner = resume_sync if mode == "sync" else resume_async
    try:
        script, resource = runner(case, token, deserialize)
    except Exception as error:  # pylint: disable=broad-except
        return [], error
    return check_resumed(case, script, resource), None


def no_polling_workaround(case, token, mode):
    """A NoPolling token resumed with a callback that reads the decoded token data: the result is
    there, the standard callback just cannot read it."""
    runner = resume_sync if mode == "sync" else resume_async
    try:
        script, resource = runner(case, token, lambda data: data["context"]["deserialized_data"])
    except Exception as error:  # pylint: disable=broad-except
        return ["with a callback reading data['context']['deserialized_data']: " + describe(error)]
    return check_resumed(case, script, resource)


def resume(cases, tokens):
    by_name = {case["name"]: case for case in cases}
    passed = failed = known = 0
    seen = set()
    for entry in tokens:
        name = entry.get("name")
        case = by_name.get(name)
        if case is None or name in seen:
            failed += 1
            print("FAILED {}: {}".format(name, "no such case in the cases file" if case is None else "a second token"))
            continue
        seen.add(name)
        token = entry["token"]
        problems = ["THE TOKEN CONTAINS {}".format(found)] if (found := leaks(token)) else []
        expected = known_difference(case, RUST_TO_PYTHON)
        notes = []
        for mode in ("sync", "async"):
            mode_problems, error = resume_one(case, token, mode)
            if error is not None:
                if expected and is_the_known_error(error, expected):
                    notes.append("{}: {}".format(mode, describe(error)))
                    if case["flavour"] == "none":
                        mode_problems = no_polling_workaround(case, token, mode)
                else:
                    mode_problems = ["raised " + describe(error)]
            elif expected:
                mode_problems.append(
                    "cases.json expects azure-core to fail with {} here, but it resumed; update the case".format(
                        expected["python_error"]
                    )
                )
            problems.extend("{}: {}".format(mode, problem) for problem in mode_problems)
        if problems:
            failed += 1
            print("FAILED {}: {}".format(name, "; ".join(problems)))
        elif expected:
            known += 1
            print("known {}: {} ({})".format(name, "; ".join(notes), expected["reason"]))
        else:
            passed += 1
            print("ok {}: sync and async result as expected, {} poll(s) each".format(name, len(case["polls"])))
        sys.stdout.flush()
    missing = sorted(set(by_name) - seen)
    if missing:
        failed += len(missing)
        for name in missing:
            print("FAILED {}: no token for this case in the tokens file".format(name))
    print("python_tokens: {} known difference(s) behaved as cases.json records (not counted as passed)".format(known))
    print("python tokens: {} passed, {} failed".format(passed, failed))
    return 0 if failed == 0 else 1


def load(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Continuation-token interoperability with Python azure-core.")
    commands = parser.add_subparsers(dest="command", required=True)
    make_parser = commands.add_parser("make", help="make azure-core tokens for every case")
    make_parser.add_argument("cases", metavar="CASES_JSON")
    make_parser.add_argument("out", metavar="OUT_JSON")
    resume_parser = commands.add_parser("resume", help="resume tokens made by Rust in azure-core")
    resume_parser.add_argument("cases", metavar="CASES_JSON")
    resume_parser.add_argument("tokens", metavar="TOKENS_JSON")
    args = parser.parse_args(argv)

    cases = load(args.cases)
    versions = ", ".join("{} {}".format(name, value) for name, value in fake_azure.versions().items())
    if args.command == "make":
        print("python_tokens: making azure-core tokens for {} case(s) from {}; {}".format(len(cases), args.cases, versions))
        sys.stdout.flush()
        return make(cases, args.out)
    tokens = load(args.tokens)
    print("python_tokens: resuming {} Rust token(s) from {} in azure-core (sync and async pollers); {}".format(
        len(tokens), args.tokens, versions
    ))
    sys.stdout.flush()
    return resume(cases, tokens)


if __name__ == "__main__":
    sys.exit(main())
