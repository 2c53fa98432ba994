"""Credentials in the formats providers issue, the texts that carry them, and ordinary messages.

Shared by ``tests/test_redact_corpus.py``, ``tests/test_redact_property.py`` and
``bench/redact_cost.py``.

* :data:`KEY_FORMATS`: the key formats of the providers livekit has plugins for and of the
  platforms agents call, each a prefix and a body (length, alphabet) as the provider issues
  them. Generated bodies are random over the format's alphabet, with at least two digits and
  both cases where the alphabet has them (a real key of 20 characters or more lacks one of them
  with probability below 10^-4).
* :data:`HEADERS`: the header or parameter names each provider's plugin sends its key in.
* :func:`ordinary_messages`: error messages of livekit, its plugins' providers and their
  transports that carry no credential (request ids, trace ids, model names, URLs, quota
  bodies), many built with the real SDK classes.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
B62 = UPPER + LOWER + DIGITS
B64URL = B62 + "-_"
B64 = B62 + "+/"
HEX = "0123456789abcdef"
B36 = LOWER + DIGITS
#: shortuuid's alphabet (LiveKit API keys)
B57 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BASE32 = UPPER + "234567"


def body(rng: random.Random, alphabet: str, length: int) -> str:
    """``length`` random characters of ``alphabet``, with at least two digits and one of each
    case when the alphabet has them (as a real key of that length has, but for a vanishing
    fraction)."""
    chars = [rng.choice(alphabet) for _ in range(length)]
    needs = []
    if any(c in DIGITS for c in alphabet):
        needs += [DIGITS] * (2 if length >= 8 else 1)
    if any(c in UPPER for c in alphabet):
        needs.append(UPPER)
    if any(c in LOWER for c in alphabet):
        needs.append(LOWER)
    positions = rng.sample(range(length), min(length, len(needs)))
    for at, pool in zip(positions, needs, strict=False):
        chars[at] = rng.choice([c for c in alphabet if c in pool])
    return "".join(chars)


@dataclass(frozen=True)
class KeyFormat:
    """A provider's key: ``make(rng)`` builds one."""

    provider: str
    build: Callable[[random.Random], str]

    def make(self, rng: random.Random) -> str:
        return self.build(rng)


def _fmt(provider: str, prefix: str, alphabet: str, length: int, suffix: str = "") -> KeyFormat:
    return KeyFormat(provider, lambda rng: prefix + body(rng, alphabet, length) + suffix)


def _livekit_api_key(rng: random.Random) -> str:
    # 12 characters of shortuuid: 16 % of them have no digit, so none is forced
    return "API" + "".join(rng.choice(B57) for _ in range(12))


def _openai_project(rng: random.Random) -> str:
    return "sk-proj-" + body(rng, B64URL, 74) + "T3BlbkFJ" + body(rng, B64URL, 74)


def _openai_legacy(rng: random.Random) -> str:
    return "sk-" + body(rng, B62, 20) + "T3BlbkFJ" + body(rng, B62, 20)


def _slack(kind: str) -> Callable[[random.Random], str]:
    def build(rng: random.Random) -> str:
        a = "".join(rng.choice(DIGITS) for _ in range(rng.randint(10, 13)))
        b = "".join(rng.choice(DIGITS) for _ in range(rng.randint(10, 13)))
        return f"{kind}-{a}-{b}-{body(rng, B62, 24)}"

    return build


def _fal(rng: random.Random) -> str:
    return f"{uuid.UUID(int=rng.getrandbits(128), version=4)}:{body(rng, HEX, 32)}"


def _baseten(rng: random.Random) -> str:
    return body(rng, B62, 8) + "." + body(rng, B62, 32)


def _sendgrid(rng: random.Random) -> str:
    return "SG." + body(rng, B64URL, 22) + "." + body(rng, B64URL, 43)


def _jwt(rng: random.Random) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"iss": "API" + body(rng, B57, 12), "sub": body(rng, B62, 10), "exp": 1700000000}
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}.{b64(rng.randbytes(32))}"


def _aws_secret(rng: random.Random) -> str:
    return body(rng, B64, 40)


def _aws_session(rng: random.Random) -> str:
    return "IQoJb3JpZ2luX2VjE" + body(rng, B64, 300)


def _telegram(rng: random.Random) -> str:
    return "".join(rng.choice(DIGITS) for _ in range(10)) + ":AA" + body(rng, B64URL, 33)


def _twilio_key_sid(rng: random.Random) -> str:
    return "SK" + body(rng, HEX, 32)


def _github_fine_grained(rng: random.Random) -> str:
    return "github_pat_" + body(rng, B62, 22) + "_" + body(rng, B62, 59)


def _pypi(rng: random.Random) -> str:
    return "pypi-AgEIcHlwaS5vcmc" + body(rng, B64URL, 60)


def _azure_new(rng: random.Random) -> str:
    return body(rng, B62, 52) + "JQQJ99" + body(rng, B62, 26)


def _gcp_key_id(rng: random.Random) -> str:
    return body(rng, HEX, 40)


#: (provider, format): keys a text may carry with no name in front of them
KEY_FORMATS: tuple[KeyFormat, ...] = (
    # LLM, speech and avatar providers with livekit plugins
    KeyFormat("openai project key", _openai_project),
    KeyFormat("openai legacy key", _openai_legacy),
    _fmt("openai service account key", "sk-svcacct-", B64URL, 120),
    _fmt("anthropic key", "sk-ant-api03-", B64URL, 93, "AA"),
    _fmt("anthropic admin key", "sk-ant-admin01-", B64URL, 93, "AA"),
    _fmt("google api key (gemini)", "AIza", B64URL, 35),
    _fmt("google oauth client secret", "GOCSPX-", B64URL, 28),
    _fmt("google oauth access token", "ya29.", B64URL, 150),
    _fmt("groq key", "gsk_", B62, 52),
    _fmt("xai key", "xai-", B62, 80),
    _fmt("deepgram key", "", HEX, 40),
    _fmt("elevenlabs key", "sk_", HEX, 48),
    _fmt("cartesia key", "sk_car_", B62, 22),
    _fmt("cerebras key", "csk-", B36, 48),
    _fmt("perplexity key", "pplx-", B62, 48),
    _fmt("fireworks key", "fw_", B62, 24),
    _fmt("together key", "tgp_v1_", B64URL, 43),
    _fmt("mistral key", "", B62, 32),
    _fmt("nvidia key", "nvapi-", B64URL, 64),
    _fmt("openrouter key", "sk-or-v1-", HEX, 64),
    _fmt("deepseek key", "sk-", HEX, 32),
    _fmt("hedra key", "sk_hedra_", B64URL, 64),
    KeyFormat("sarvam key", lambda rng: f"sk_{body(rng, B36, 8)}_{body(rng, B62, 24)}"),
    KeyFormat("fal key", _fal),
    KeyFormat("baseten key", _baseten),
    _fmt("hume key", "", B62, 48),
    _fmt("azure openai key (new)", "", B62, 84),
    KeyFormat("azure ai services key", _azure_new),
    _fmt("replicate token", "r8_", B62, 37),
    _fmt("hugging face token", "hf_", UPPER + LOWER, 34),
    # LiveKit
    KeyFormat("livekit api key", _livekit_api_key),
    _fmt("livekit cloud api secret", "", B62, 44),
    _fmt("livekit self-hosted api secret", "", HEX, 64),
    KeyFormat("livekit access token (JWT)", _jwt),
    # clouds
    _fmt("aws access key id", "AKIA", BASE32, 16),
    _fmt("aws temporary access key id", "ASIA", BASE32, 16),
    KeyFormat("aws secret access key", _aws_secret),
    KeyFormat("aws session token", _aws_session),
    KeyFormat("gcp service account key id", _gcp_key_id),
    _fmt("alibaba access key id", "LTAI", B62, 20),
    # platforms agents call
    _fmt("github classic token", "ghp_", B62, 36),
    _fmt("github oauth token", "gho_", B62, 36),
    _fmt("github app token", "ghs_", B62, 36),
    KeyFormat("github fine-grained token", _github_fine_grained),
    _fmt("gitlab personal token", "glpat-", B64URL, 20),
    _fmt("gitlab deploy token", "gldt-", B64URL, 20),
    KeyFormat("slack bot token", _slack("xoxb")),
    KeyFormat("slack user token", _slack("xoxp")),
    _fmt("slack app token", "xapp-1-", B62, 60),
    _fmt("stripe secret key", "sk_live_", B62, 99),
    _fmt("stripe test key", "sk_test_", B62, 24),
    _fmt("stripe restricted key", "rk_live_", B62, 99),
    _fmt("stripe webhook secret", "whsec_", B62, 32),
    KeyFormat("twilio api key sid", _twilio_key_sid),
    KeyFormat("sendgrid key", _sendgrid),
    _fmt("npm token", "npm_", B62, 36),
    KeyFormat("pypi token", _pypi),
    _fmt("shopify access token", "shpat_", HEX, 32),
    _fmt("digitalocean token", "dop_v1_", HEX, 64),
    _fmt("linear key", "lin_api_", B62, 40),
    _fmt("notion token", "ntn_", B62, 46),
    _fmt("sentry token", "sntryu_", HEX, 64),
    _fmt("mailgun key", "key-", HEX, 32),
    _fmt("databricks token", "dapi", HEX, 32),
    _fmt("supabase token", "sbp_", HEX, 40),
    KeyFormat("telegram bot token", _telegram),
    _fmt("langsmith key", "lsv2_pt_", HEX, 42),
    _fmt("pinecone key", "pcsk_", B62, 70),
)

#: keys that only a name in front of them can tell from an id: 32 hex digits, a UUID. They are
#: planted after their header in ``tests/test_redact_corpus.py``, never bare.
CONTEXT_ONLY_FORMATS: tuple[KeyFormat, ...] = (
    _fmt("assemblyai key", "", HEX, 32),
    _fmt("azure speech key", "", HEX, 32),
    _fmt("twilio auth token", "", HEX, 32),
    _fmt("tavus key", "", HEX, 32),
    KeyFormat("gladia key", lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4))),
)

#: how each provider's plugin sends its key: ``{}`` is the key
HEADERS: tuple[tuple[str, str], ...] = (
    ("openai, groq, xai, together, fireworks, mistral, perplexity", "Authorization: Bearer {}"),
    ("anthropic", "x-api-key: {}"),
    ("google", "x-goog-api-key: {}"),
    ("google (query)", "https://generativelanguage.googleapis.com/v1beta/models?key={}"),
    ("deepgram", "Authorization: Token {}"),
    ("assemblyai", "authorization: {}"),
    ("elevenlabs", "xi-api-key: {}"),
    ("cartesia", "X-API-Key: {}"),
    ("azure speech", "Ocp-Apim-Subscription-Key: {}"),
    ("azure openai", "api-key: {}"),
    ("aws", "X-Amz-Security-Token: {}"),
    ("speechmatics", "Authorization: Bearer {}"),
    ("rime", "Authorization: Bearer {}"),
    ("hume", "X-Hume-Api-Key: {}"),
    ("fal", "Authorization: Key {}"),
    ("baseten", "Authorization: Api-Key {}"),
    ("lmnt", "X-API-Key: {}"),
    ("neuphonic", "X-API-KEY: {}"),
    ("resemble", "Authorization: Token token={}"),
    ("gladia", "x-gladia-key: {}"),
    ("soniox", '{{"api_key": "{}", "model": "stt-rt-preview"}}'),
    ("inworld", "Authorization: Basic {}"),
    ("sarvam", "api-subscription-key: {}"),
    ("tavus", "x-api-key: {}"),
    ("simli", '{{"apiKey": "{}", "faceId": "tmp9i8bbq7c"}}'),
    ("hedra", "X-API-Key: {}"),
    ("anam", "Authorization: Bearer {}"),
    ("bey", "x-api-key: {}"),
    ("livekit", "LIVEKIT_API_SECRET={}"),
    ("livekit worker", "X-LiveKit-Worker-Token: {}"),
    ("twilio", "https://AC{}@api.twilio.com/2010-04-01"),
    ("stripe", "curl -u {}: https://api.stripe.com/v1/charges"),
)

# --- ordinary messages ----------------------------------------------------------------------------

REQUEST_IDS = (
    "req_011CSHoEeqs5C35K2UUqR7Fy",
    "req_5d6a4e0f5b7e4a3f9c2b1a0e9d8c7b6a",
    "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "msg_01XFDUDYJgAACzvnptvVoYEL",
    "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452e3a",
    "0af7651916cd43dd8448eb211c80319c",
    "b7ad6b7169203331",
    "550e8400-e29b-41d4-a716-446655440000",
    "RM_sw3ZJbD3F7i3",
    "AJ_Ct5aDo3yDkmp",
    "tts_session_fake_1",
)
MODELS = (
    "gpt-4o-mini",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4o-realtime-preview-2024-12-17",
    "claude-3-5-sonnet-20241022",
    "claude-sonnet-4-20250514",
    "gemini-2.0-flash-exp",
    "llama-3.3-70b-versatile",
    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "accounts/fireworks/models/llama-v3p1-70b-instruct",
    "mistral-large-latest",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "nova-3",
    "deepgram/nova-3-general",
    "eleven_multilingual_v2",
    "eleven_flash_v2_5",
    "sonic-2-2025-03-07",
    "aura-2-thalia-en",
    "cartesia/sonic-3",
    "Llama-4-Maverick-17B-128E-Instruct-FP8",
    "whisper-large-v3-turbo",
)
URLS = (
    "https://api.openai.com/v1/chat/completions",
    "https://agent-gateway.livekit.cloud/v1/chat/completions",
    "wss://agent-gateway.livekit.cloud/v1/stt?model=deepgram/nova-3&language=en",
    "wss://api.deepgram.com/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000",
    "https://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream",
    "wss://api.cartesia.ai/tts/websocket?cartesia_version=2024-06-10",
    "https://eastus.tts.speech.microsoft.com/cognitiveservices/v1",
    "https://api.anthropic.com/v1/messages",
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
    "https://polly.us-east-1.amazonaws.com/v1/speech",
    "https://my-project-abc123.livekit.cloud",
    "http://127.0.0.1:4318/v1/traces",
)


def _openai_errors() -> list[str]:
    from scripted import openai_status_error

    bodies = [
        (
            429,
            {
                "error": {
                    "message": f"Rate limit reached for {model} in organization "
                    "org-Hx7kQm2Lp9Rt on tokens per min (TPM): Limit 30000, Used 29527, "
                    "Requested 1217. Please try again in 1.488s. Visit "
                    "https://platform.openai.com/account/rate-limits to learn more.",
                    "type": "tokens",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
        )
        for model in MODELS[:4]
    ] + [
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens. However, "
                    "your messages resulted in 131072 tokens. Please reduce the length of the "
                    "messages.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        ),
        (
            404,
            {
                "error": {
                    "message": "The model `gpt-5-turbo` does not exist or you do not have access "
                    "to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
        ),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and "
                    "billing details.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
        ),
        (500, {"error": {"message": "The server had an error while processing your request."}}),
        (503, {"error": {"message": "The engine is currently overloaded, please try again."}}),
        (
            429,
            {
                "type": "inference_quota_exceeded",
                "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
                "quota_type": "llm",
                "category": "MaxGatewayCredits",
                "hint": "Add credits to your project at https://cloud.livekit.io",
                "remaining_limit": "0",
            },
        ),
        (
            429,
            {
                "type": "inference_quota_exceeded",
                "error": "concurrent LLM requests exceeded, category: MaxConcurrentGatewayLLMRpm",
                "quota_type": "llm",
                "category": "MaxConcurrentGatewayLLMRpm",
                "hint": "Reduce concurrent LLM requests or upgrade your plan.",
                "remaining_limit": "0",
            },
        ),
    ]
    return [str(openai_status_error(status, b)) for status, b in bodies]


def _anthropic_errors() -> list[str]:
    import anthropic
    import httpx2

    client = anthropic.Anthropic(api_key="unused", base_url="https://api.anthropic.com")
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    out = []
    for status, kind, message in (
        (529, "overloaded_error", "Overloaded"),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate "
            "limit (https://docs.anthropic.com/en/api/rate-limits)",
        ),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic "
            "API. Please go to Plans & Billing to upgrade or purchase credits.",
        ),
        (404, "not_found_error", "model: claude-3-5-sonnet-20240620x"),
        (500, "api_error", "Internal server error"),
    ):
        response = httpx2.Response(
            status,
            json={
                "type": "error",
                "error": {"type": kind, "message": message},
                "request_id": REQUEST_IDS[0],
            },
            request=request,
            headers={"request-id": REQUEST_IDS[0]},
        )
        out.append(str(client._make_status_error_from_response(response)))
    return out


def _livekit_errors() -> list[str]:
    from livekit.agents import APIConnectionError, APIStatusError, APITimeoutError

    out = [
        str(APIConnectionError()),
        str(APIConnectionError("failed to generate LLM completion after 3 attempts")),
        str(APITimeoutError()),
        str(
            APIStatusError(
                "LiveKit Inference returned an error",
                status_code=429,
                request_id=REQUEST_IDS[1],
                body={"type": "inference_quota_exceeded", "category": "MaxGatewayCredits"},
            )
        ),
        str(
            APIStatusError(
                "Cartesia returned an error",
                status_code=400,
                request_id=REQUEST_IDS[7],
                body={
                    "error": "voice not found",
                    "voice_id": "a0e99841-438c-4a64-b679-ae501e7d6091",
                },
            )
        ),
    ]
    out += [
        "failed to connect to LiveKit Inference STT",
        "failed to connect to LiveKit Inference TTS",
        "LiveKit Inference STT connection timed out.",
        'LiveKit Inference TTS returned error: {"type": "error", "code": 429, "message": '
        '"TTS rate limit exceeded, category: MaxConcurrentGatewayTTS, remaining limit: 0", '
        '"session_id": "tts_session_fake_1"}',
        "failed to recognize speech after 3 attempts",
        "failed to synthesize speech after 3 attempts",
        "AgentSession is closing, cannot use generate_reply()",
        "no TTS available, cannot speak",
        "decision request timed out",
    ]
    return out


def _transport_errors() -> list[str]:
    return [
        "Connection error.",
        "Request timed out.",
        "Server disconnected without sending a response.",
        "Server disconnected",
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
        "certificate (_ssl.c:1006)",
        "Cannot connect to host api.openai.com:443 ssl:default [Connection reset by peer]",
        "Cannot connect to host agent-gateway.livekit.cloud:443 ssl:True "
        "[SSLCertVerificationError: (1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
        "failed: self-signed certificate in certificate chain (_ssl.c:1006)')]",
        "[Errno 111] Connection refused",
        "[Errno -3] Temporary failure in name resolution",
        "peer closed connection without sending complete message body (incomplete chunked read)",
        "<ConnectionTerminated error_code:ErrorCodes.NO_ERROR, last_stream_id:1999, "
        "additional_data:None>",
        "429, message='Invalid response status', "
        "url='wss://agent-gateway.livekit.cloud/v1/stt?model=deepgram/nova-3&language=en'",
        "WSServerHandshakeError: 401, message='Invalid response status', "
        "url='wss://api.deepgram.com/v1/listen?model=nova-3'",
        "cannot reuse already awaited coroutine",
        "Event loop is closed",
        "Task was destroyed but it is pending!",
        "Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL",
    ]


def _provider_bodies() -> list[str]:
    return [
        '{"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", '
        '"request_id": "3c4d7a5e-9d6b-4c1f-8f0e-6b1a2d3c4e5f"}',
        '{"detail": {"status": "quota_exceeded", "message": "This request exceeds your quota '
        "of 10000. You have 12 credits remaining, while 131 credits are required for this "
        'request."}}',
        '{"detail": {"status": "voice_not_found", "message": "A voice with the voice_id '
        '21m00Tcm4TlvDq8ikWAM was not found."}}',
        '{"error": "Invalid model: sonic-9", "request_id": "b8f1a2c3-d4e5-4f60-8a9b-0c1d2e3f4a5b"}',
        '{"error": "Transcription failed: audio file is empty", "status": "error"}',
        "Speech synthesis canceled: CancellationReason.Error, error details: WebSocket upgrade "
        "failed: Authentication error (401). Please check subscription information and region "
        "name. USP state: Sending. Received audio size: 0 bytes.",
        "An error occurred (ThrottlingException) when calling the SynthesizeSpeech operation "
        "(reached max retries: 4): Rate exceeded",
        "An error occurred (UnrecognizedClientException) when calling the StartStreamTranscription "
        "operation: The security token included in the request is invalid.",
        "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
        "<RequestId>4442587FB7D0A2F9</RequestId></Error>",
        "400 Request contains an invalid argument. [reason: API_KEY_INVALID, domain: "
        "googleapis.com, metadata: service=generativelanguage.googleapis.com]",
        "503 UNAVAILABLE. {'error': {'code': 503, 'message': 'The model is overloaded. Please "
        "try again later.', 'status': 'UNAVAILABLE'}}",
        '{"type": "error", "error": {"type": "authentication_error", '
        '"message": "invalid x-api-key"}}',
        "Error code: 401 - {'error': {'message': 'Invalid API Key', 'type': "
        "'invalid_request_error', 'code': 'invalid_api_key'}}",
        "Deepgram connection closed unexpectedly (code 1011): NET-0001 - no audio received",
        "speechmatics: {'message': 'Error', 'type': 'invalid_model', 'reason': 'model not found'}",
    ]


def _credential_words() -> list[str]:
    """Messages that talk about keys, tokens and passwords without carrying one."""
    return [
        "Incorrect API key provided: sk-proj-********************abcd. You can find your API "
        "key at https://platform.openai.com/account/api-keys.",
        "The api_key client option must be set either by passing api_key to the client or by "
        "setting the OPENAI_API_KEY environment variable",
        "Missing required parameter: 'api_key'.",
        "max_tokens is too large: 9000. This model supports at most 4096 completion tokens",
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0",
        "token limit exceeded: 4097 > 4096",
        "This model's maximum context length is 8192 tokens",
        "auth failed: status 401",
        "Authentication failed: invalid credentials",
        "Unauthorized: access token is missing or invalid",
        'password authentication failed for user "agents"',
        "KeyError: 'choices'",
        "Could not find key 'voice_id' in the response",
        "the token expired; token limit reached; basic auth failed",
        "Basic authentication is not supported for this endpoint",
        "Bearer token required",
        "invalid x-api-key",
        "API key not valid. Please pass a valid API key.",
        "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set",
        "api_key is required, either as argument or set LIVEKIT_API_KEY environmental variable",
        "Deepgram API key is required",
        "ELEVEN_API_KEY must be set",
        "Your API key does not have access to model sonic-2",
        "The security token included in the request is expired",
        "signature verification failed",
        "cookie jar is empty",
        "x-api-key header is missing",
        "Invalid authorization header",
        "no key provided",
        "key: null",
        "token: None",
        "api_key=None",
        "session_id=tts_session_fake_1 closed",
        "prompt_tokens: 12, completion_tokens: 3, total_tokens=15",
        "usage: {'input_tokens': 1024, 'output_tokens': 12, 'cache_read_input_tokens': 0}",
        "keyword: value, monkey: business",
        "APIConnectionError, APIStatusError, APITimeoutError",
    ]


def _templated(rng: random.Random) -> list[str]:
    out = []
    for url in URLS:
        out.append(f"POST {url} failed with status 503")
    for model in MODELS:
        out.append(f"model {model!r} is overloaded, retry in 2s")
    for rid in REQUEST_IDS:
        out.append(f"upstream error (request_id={rid}, trace_id=0af7651916cd43dd8448eb211c80319c)")
    for _ in range(20):
        out.append(
            f"span {rng.getrandbits(64):016x} of trace {rng.getrandbits(128):032x}: "
            f"session {uuid.UUID(int=rng.getrandbits(128), version=4)} closed"
        )
    return out


def ordinary_messages() -> list[str]:
    """Credential-free error messages: what the false-positive budget is measured on."""
    rng = random.Random(20240607)
    return [
        *_openai_errors(),
        *_anthropic_errors(),
        *_livekit_errors(),
        *_transport_errors(),
        *_provider_bodies(),
        *_credential_words(),
        *_templated(rng),
    ]
