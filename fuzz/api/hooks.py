"""Schemathesis hooks for `scripts/fuzz-api`.

What a fuzzer cannot make up on its own, given here so that generated requests reach past
the first check: the fuzzing account's sign-in, the id of a track that exists, audio an
upload accepts, and the payment provider's signature on webhook bodies. Everything else is generated from the served
OpenAPI document.
"""

import hashlib
import hmac
import importlib.machinery
import importlib.util
import json
import os
import random
import time
import urllib.request

import schemathesis


def load_probe():
    """`scripts/probe`, for its test material (it is a script, without a .py name)."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "probe")
    loader = importlib.machinery.SourceFileLoader("tonearm_probe", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


PROBE = load_probe()


def sign_in():
    """A new session of the fuzzing account: its tokens."""
    body = json.dumps({
        "email": os.environ["TONEARM_FUZZ_EMAIL"],
        "password": os.environ["TONEARM_FUZZ_PASSWORD"],
    }).encode()
    request = urllib.request.Request(f"{os.environ['TONEARM_FUZZ_URL']}/v1/auth/login", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@schemathesis.auth()
class FuzzingAccount:
    """Signs in as the fuzzing account; again whenever a request gets 401 (signing out,
    which the fuzzer also does, ends the session it was using)."""

    def get(self, case, context):
        return sign_in()["access_token"]

    def set(self, case, token, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"


def operation_of(context):
    operation = getattr(context, "operation", None)
    if operation is None:
        return None, None
    return operation.method.upper(), operation.path


NAMING_TRACKS = {("PUT", "/v1/me/now-playing"), ("POST", "/v1/me/plays"), ("POST", "/v1/playlists/{id}/tracks")}


def name_the_seed_track(body):
    track = os.environ["TONEARM_FUZZ_TRACK"]
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict) and "track_id" in item:
            item["track_id"] = track
            if isinstance(item.get("played_ms"), int):
                item["played_ms"] = min(item["played_ms"], 1000)
        if isinstance(item, dict) and isinstance(item.get("track_ids"), list):
            item["track_ids"] = [track] * len(item["track_ids"])


def is_positive(case):
    """Whether the case is meant to be valid (a negative one must stay invalid)."""
    meta = getattr(case, "_meta", None)
    if meta is None:
        return True
    modes = [meta.generation.mode, *(component.mode for component in meta.components.values())]
    return all(str(getattr(mode, "value", mode)) == "positive" for mode in modes)


@schemathesis.hook
def map_body(context, body):
    """Uploads carry real audio (arbitrary file contents are the tags fuzz target's and the
    probe's concern)."""
    # Only a file that is a string of bytes already: another value (a number, a list) is
    # a case meant to be refused.
    if (
        operation_of(context) == ("POST", "/v1/tracks")
        and isinstance(body, dict)
        and isinstance(body.get("file"), (bytes, bytearray, str))
    ):
        body = {**body, "file": PROBE.make_wav(seconds=0.5)}
    return body


@schemathesis.hook
def before_call(context, case, kwargs):
    method, path = operation_of(context)
    body = case.body
    if is_positive(case) and random.random() < 0.5 and (method, path) in NAMING_TRACKS:
        # Half the valid bodies name the seeded track: generated ids never exist.
        name_the_seed_track(body)
    if (
        (method, path) == ("POST", "/v1/auth/refresh")
        and is_positive(case)
        and isinstance(body, dict)
    ):
        # A refresh token that exists, a new session's: a generated one never does.
        body["refresh_token"] = sign_in()["refresh_token"]
    if (
        (method, path) == ("POST", "/v1/billing/webhook")
        and isinstance(body, (dict, list, str, int, float, bool))
        # A case without the header is meant to be refused for its absence.
        and any(name.lower() == "stripe-signature" for name in (case.headers or {}))
    ):
        # Signed as the payment provider signs: over the exact bytes sent.
        raw = json.dumps(body).encode()
        secret = os.environ["TONEARM_FUZZ_WEBHOOK_SECRET"].encode()
        stamp = str(int(time.time()))
        signature = hmac.new(secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        case.headers = case.headers or {}
        case.headers["Stripe-Signature"] = f"t={stamp},v1={signature}"
        case.headers["Content-Type"] = "application/json"
        kwargs["data"] = raw
        kwargs["json"] = None
