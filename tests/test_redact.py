"""``otel_agents._export.redact``: secrets are removed, then messages are cut to 256 chars.

Every planted secret is checked at every position of the 256-char cut: no 8-char piece of it
may survive, whichever part of it the cut would have kept. Generated credentials of every class
and encoding are in ``tests/test_redact_property.py``; provider formats and the false-positive
figure in ``tests/test_redact_corpus.py``.
"""

from __future__ import annotations

import base64

import pytest

from otel_agents._export import redact as redact_module
from otel_agents._export.redact import (
    MAX_MESSAGE_CHARS,
    REDACTED,
    WINDOW_CHARS,
    clean_message,
    redact,
    truncate,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJhZ2VudC0xMjMiLCJ2aWRlbyI6eyJyb29tSm9pbiI6dHJ1ZX0sImV4cCI6MTcwMDAwMDAwMH0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
OPENAI_KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4"
OPENAI_PROJECT_KEY = "sk-proj-" + "Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7" * 2
ANTHROPIC_KEY = "sk-ant-api03-" + "Ab3_De6-Gh9Jk2Mn5Pq8St1Vw4Yz7" * 3 + "-AAAAAAAA"
OPAQUE_TOKEN = "tok_8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c"
BASIC = base64.b64encode(b"deploy-bot:hunter2-Xy9!").decode()

# (template, secret): the template's {} is where the secret goes
CASES = [
    pytest.param("Authorization: Bearer {}", OPAQUE_TOKEN, id="bearer"),
    pytest.param("authorization: bearer {}", JWT, id="bearer-jwt"),
    pytest.param("headers={{'Authorization': 'Bearer {}'}}", OPENAI_KEY, id="bearer-in-repr"),
    pytest.param("Authorization: Basic {}", BASIC, id="basic"),
    pytest.param("Authorization: Token {}", OPAQUE_TOKEN, id="token-scheme"),
    pytest.param("Incorrect API key provided: {}.", OPENAI_KEY, id="sk"),
    pytest.param("invalid x-api-key {} for project", OPENAI_PROJECT_KEY, id="sk-proj"),
    pytest.param("anthropic key {}", ANTHROPIC_KEY, id="sk-ant"),
    pytest.param("participant token {} rejected", JWT, id="jwt"),
    pytest.param(
        "POST https://api.example.com/v1/tts?api_key={}&voice=a", OPAQUE_TOKEN, id="api_key="
    ),
    pytest.param(
        "wss://agent-gateway.livekit.cloud/rtc?token={}&auto=1", OPAQUE_TOKEN, id="token="
    ),
    pytest.param("wss://gateway/stt?access_token={}", JWT, id="access_token="),
    pytest.param('{{"api_key": "{}", "model": "x"}}', OPAQUE_TOKEN, id="json-api_key"),
    pytest.param("{{'api_key': '{}', 'model': 'x'}}", OPAQUE_TOKEN, id="repr-api_key"),
    pytest.param('{{"password": "{}"}}', "correct horse battery staple", id="json-spaces"),
    pytest.param("X-Api-Key: {}", OPAQUE_TOKEN, id="x-api-key"),
    pytest.param("client_secret={}", "s3cr3t-Value-With-Dashes", id="client_secret"),
    pytest.param(
        "connect https://{}@db.example.com:5432/x", "admin:S3cr3tPassw0rd", id="url-user-pass"
    ),
    pytest.param("connect wss://{}@agent.livekit.cloud/rtc", OPAQUE_TOKEN, id="url-token"),
    pytest.param("proxy=http://{}@proxy:3128", "svc:pa55w0rd!xyz", id="url-proxy"),
    # secret names with a prefix, and key ids (found by tests/test_secret_audit.py)
    pytest.param("LIVEKIT_API_SECRET={} is set", "Zq8wLm2Xc7Vb4Nn1Pq6Rt", id="env-prefixed"),
    pytest.param("DEEPGRAM_API_KEY: {}", "a1b2c3d4e5f6a7b8c9d0", id="env-prefixed-key"),
    pytest.param('{{"sessionToken": "{}"}}', "FwoGZXIvYXdzEJr-session", id="camel-prefixed"),
    pytest.param("aws_secret_access_key={}", "wJalrXUtnFEMI/K7MDENG/bPxRfi", id="aws-secret"),
    pytest.param("access key {} was denied", "AKIAIOSFODNN7EXAMPLE", id="aws-key-id"),
    pytest.param("LiveKit key {} has no access", "APIx7Kq2LmN9pR4s", id="livekit-key-id"),
]

INNOCENT = [
    "category: MaxGatewayCredits",
    "LLM token credit quota exceeded, category: MaxGatewayCredits, remaining: 0",
    "task-force",
    "risk-free, desk-top, ask-me",
    "Error code: 429",
    "Error code: 429 - {'error': {'message': 'rate limited', 'type': 'tokens', 'code': null}}",
    "https://agent-gateway.livekit.cloud/v1/chat/completions",
    "wss://agent-gateway.livekit.cloud:443",
    "connect to wss://agent-gateway.livekit.cloud:443/stt?model=nova-3&language=en",
    "max_tokens=100 input_tokens: 12 tokens: 5",
    "the token expired; token limit reached; basic auth failed",
    "Bearer",
    "Invalid response status (429 Too Many Requests)",
    "Connection error. (caused by SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] "
    "certificate verify failed: unable to get local issuer certificate (_ssl.c:1006))",
    "cannot reuse already awaited coroutine",
    'LiveKit Inference TTS returned error: {"type": "error", "code": 429}',
    "keyword: value, monkey: business",
    "APIConnectionError, APIStatusError, APITimeoutError",
    "prompt_tokens: 12, completion_tokens: 3, total_tokens=15",
    "",
]


def pieces(secret: str, size: int = 8) -> list[str]:
    """Every ``size``-char substring of ``secret`` (the whole secret when it is shorter)."""
    if len(secret) <= size:
        return [secret]
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_gone(secret: str, text: str) -> None:
    for piece in pieces(secret):
        assert piece not in text, f"{piece!r} of the secret survived in {text!r}"


@pytest.mark.parametrize(("template", "secret"), CASES)
def test_the_secret_is_removed(template: str, secret: str) -> None:
    text = "provider error: " + template.format(secret) + " (request req_1)"
    assert len(text) <= MAX_MESSAGE_CHARS
    cleaned = clean_message(text)
    assert_gone(secret, cleaned)
    assert REDACTED in cleaned
    assert cleaned.startswith("provider error: ")
    assert redact(cleaned) == cleaned  # idempotent


@pytest.mark.parametrize(("template", "secret"), CASES)
def test_the_secret_is_removed_wherever_the_cut_falls(template: str, secret: str) -> None:
    planted = template.format(secret)
    # the cut keeps 0 .. all of the planted text, one position at a time
    for kept in range(len(planted) + 1):
        prefix = ("lorem ipsum dolor sit amet " * 20)[: MAX_MESSAGE_CHARS - 2 - kept] + " "
        text = prefix + planted + " and then some more words after the secret"
        assert truncate(text) == prefix + planted[:kept] + "\u2026"
        cleaned = clean_message(text)
        assert cleaned.startswith(prefix)
        assert_gone(secret, cleaned)


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_text_is_unchanged(text: str) -> None:
    assert clean_message(text) == text
    assert redact(text) == text


def test_innocent_text_at_the_cut_keeps_its_prefix() -> None:
    text = "x " * 200 + "Error code: 429 category: MaxGatewayCredits"
    cleaned = clean_message(text)
    assert cleaned == text[: MAX_MESSAGE_CHARS - 1] + "\u2026"


def test_a_url_without_credentials_stays_readable_up_to_the_cut() -> None:
    # the whole URL is read before the cut: a host cut by the 256-char limit is still a host
    # (this once became "wss://[REDACTED]…": the cut came first, and might have kept a token)
    text = "a" * 200 + " wss://agent-gateway.livekit.cloud/stt?model=nova-3" + " b" * 100
    assert clean_message(text) == text[:255] + "\u2026"
    cut = "a" * 240 + " wss://agent-gatewa" + "y.livekit.cloud/stt"
    assert clean_message(cut) == cut[:255] + "\u2026"
    # cut upstream (``cut=True``) inside an authority: its "@" may have been cut off
    assert clean_message("x wss://agent-gatewa", cut=True) == "x wss://\u2026"


def test_credentials_in_a_url_at_the_cut() -> None:
    # "https://user:password@host" where the 256-char cut falls inside the password or just
    # before the "@": the whole URL was redacted before the cut
    for kept in ("https://admin:S3cr3tP", "https://admin:S3cr3tPassw0rd"):
        text = "x" * (MAX_MESSAGE_CHARS - 1 - len(kept) - 1) + " " + kept + "@db.example.com/x"
        cleaned = clean_message(text)
        assert "S3cr3tP" not in cleaned
        assert "admin" not in cleaned
        assert cleaned.endswith("\u2026")
        assert " https://" + REDACTED + "@db" in cleaned
        # and cut upstream at the same place: the authority goes, whatever it held
        upstream = clean_message(text[: len(text) - len("@db.example.com/x")], cut=True)
        assert upstream.endswith("https://\u2026")
        assert "S3cr3tP" not in upstream
    # a wss://<token>@host cut before the "@"
    text = "x" * 200 + " wss://" + OPAQUE_TOKEN + "@agent.livekit.cloud"
    text = text[: MAX_MESSAGE_CHARS + 5]
    assert_gone(OPAQUE_TOKEN[:20], clean_message(text))
    assert_gone(OPAQUE_TOKEN[:20], clean_message(text, cut=True))


def test_a_jwt_cut_after_its_header() -> None:
    header = JWT.split(".")[0]
    for tail in (".", ".eyJzdWIi", ".eyJzdWIiOiJhZ2VudC0xMjMiLCJ2a"):
        kept = "participant token " + header + tail
        text = (
            "y" * (MAX_MESSAGE_CHARS - 1 - len(kept) - 1) + " " + kept + JWT[len(header + tail) :]
        )
        cleaned = clean_message(text)
        assert_gone(header, cleaned)
        assert cleaned.endswith(REDACTED + "\u2026") or cleaned.endswith(REDACTED)
    # a bare JWT (no "token" word before it), in full
    assert redact(f"jwt={JWT}") == f"jwt={REDACTED}"
    assert redact(f"got {JWT} back") == f"got {REDACTED} back"


def test_several_secrets_in_one_message() -> None:
    text = f"Bearer {OPAQUE_TOKEN} key={OPENAI_KEY} url=https://u:p4ssw0rd-long@h/x {JWT}"
    cleaned = clean_message(text[:MAX_MESSAGE_CHARS])
    for secret in (OPAQUE_TOKEN, OPENAI_KEY, "p4ssw0rd-long", JWT):
        assert_gone(secret, cleaned)


def test_the_secret_parameter_name_is_kept() -> None:
    assert redact("api_key=abc123def456") == f"api_key={REDACTED}"
    assert redact('"api_key": "abc123def456"') == f'"api_key": "{REDACTED}"'
    assert redact("'token': 'abc 123 def'") == f"'token': '{REDACTED}'"
    assert redact("Authorization: Bearer abc.def-ghi") == f"Authorization: Bearer {REDACTED}"
    assert redact("https://user:pw@host/x") == f"https://{REDACTED}@host/x"


def test_truncate() -> None:
    assert truncate("a" * MAX_MESSAGE_CHARS) == "a" * MAX_MESSAGE_CHARS
    cut = truncate("a" * (MAX_MESSAGE_CHARS + 1))
    assert len(cut) == MAX_MESSAGE_CHARS
    assert cut.endswith("\u2026")
    assert truncate("abcdef", limit=4) == "abc\u2026"
    assert truncate("") == ""


def test_only_a_window_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # a 10 MB message full of secret-looking text: only its first WINDOW_CHARS are redacted,
    # the word the window cut is dropped, and the cut is marked
    seen: list[int] = []

    def spy(text: str) -> str:
        seen.append(len(text))
        return redact(text)

    monkeypatch.setattr(redact_module, "redact", spy)
    huge = ("Bearer " + OPAQUE_TOKEN + " api_key=" + OPENAI_KEY + " ") * 200_000
    cleaned = clean_message(huge)
    assert seen
    assert max(seen) <= WINDOW_CHARS
    assert cleaned.endswith("\u2026")
    assert_gone(OPAQUE_TOKEN, cleaned)
    assert_gone(OPENAI_KEY, cleaned)
    assert len(cleaned) <= MAX_MESSAGE_CHARS


def test_a_secret_cut_by_the_window_is_dropped() -> None:
    # keys redact to short markers, so the end of the 1024-character window lands in the
    # 256-character output: the key the window cuts there, whatever part of it was read, goes
    for kept in range(1, len(OPENAI_KEY)):
        count = (WINDOW_CHARS - kept) // (len(OPENAI_KEY) + 1)
        keys = " ".join([OPENAI_KEY] * count)
        text = keys.ljust(WINDOW_CHARS - kept) + OPENAI_KEY + " and more"
        assert len(text[:WINDOW_CHARS].rsplit(" ", 1)[1]) == kept
        cleaned = clean_message(text)
        assert "sk-" not in cleaned
        assert cleaned.startswith(f"{REDACTED} " * 18)
        assert cleaned.endswith("\u2026")
        assert len(cleaned) <= MAX_MESSAGE_CHARS


def test_pathological_inputs_are_cleaned() -> None:
    # no pattern backtracks on these (the cost of each is measured in bench/redact_cost.py)
    for text in (
        "https://" + "a" * 250,
        "https://" + "a:" * 125,
        "token=" + "=" * 250,
        "eyJ" + "a." * 120,
        "Bearer " + "a" * 249,
        '"api_key": "' + "x" * 240,
        "sk-" + "-" * 253,
        "://" * 340,
        "key=" * 250,
        '\\"' * 340,
        "%2F" * 340,
        "-----BEGIN A-----" * 60,
        "<a>" * 340,
        "a" * WINDOW_CHARS * 4,
    ):
        for cut in (False, True):
            cleaned = clean_message(text, cut=cut)
            assert len(cleaned) <= MAX_MESSAGE_CHARS, text[:20]
            assert redact(redact(text[:WINDOW_CHARS])) == redact(text[:WINDOW_CHARS])
