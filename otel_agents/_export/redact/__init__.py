"""Redact, then truncate, any foreign text before it leaves the process (pure, no I/O).

Order matters: a secret is recognised whole before anything is cut. Only the first
``WINDOW_CHARS`` of a text are read (that bounds the work on the event loop); when the window or
an upstream cut (``cut=True``) ends inside a word, that partial word is dropped rather than
judged, and the cut is marked with ``ELLIPSIS``. The redacted text is then cut to
``MAX_MESSAGE_CHARS``, never inside a ``[REDACTED]`` marker.

What is a credential, pass by pass (each pass is skipped when a substring test shows it cannot
apply, so ordinary text pays for a few ``in`` tests and one word scan):

1. PEM blocks, ``-----BEGIN ...-----`` to ``-----END ...-----`` (or to the end of the text),
   with their line breaks real, JSON-escaped or URL-encoded.
2. URL userinfo, ``scheme://user:password@host``, up to the last ``@`` before the host (a
   password may hold one), also URL-encoded (``%3A%2F%2F...%40``).
3. XML elements whose name says credential (``<SecretAccessKey>``, ``<SessionToken>``,
   ``<SignatureProvided>``...), also HTML-escaped or URL-encoded.
4. The value of every name that says credential: a header, a query or form parameter, a JSON,
   Python or environment key whose last word (``_NAME_WORDS``, optionally followed by ``id``,
   ``header``, ``value``) is ``key``, ``token``, ``secret``, ``password``, ``auth``,
   ``authorization``, ``credential``, ``signature``, ``cookie``... in any case, the words
   joined by ``_``, ``-``, ``.``, a space, camelCase or their URL encodings; quoted plainly,
   with backslash-escaped quotes (a JSON string inside a JSON string), HTML or URL-encoded
   quotes; assigned by ``=``, ``:``, ``=>``, their URL encodings, or as a ``('name', 'value')``
   pair. A quoted value goes whole; an ``Authorization``/``Cookie``/``Set-Cookie`` value goes
   to the end of its line; a scheme word stays readable (``Authorization: Key [REDACTED]``);
   ``null``, ``None``, ``true``... stay.
5. The credential after a scheme word anywhere (and curl's ``-u user:password``): ``Bearer`` +
   anything but a short word
   ("Bearer token required"); ``Basic``, ``Token``, ``Digest``, ``Key``, ``Api-Key`` + a word
   that looks like a credential (8 characters or more, not all letters of one case: not "token
   expired").
6. The key formats with a dot, a colon or a path in them (``_DOTTED``: SendGrid, Google
   OAuth, Slack and Discord webhook URLs, Doppler; fal ``<uuid>:<hex>``, Telegram bot tokens),
   then JWTs (``eyJ...``, also cut after their header).
7. Words (runs of letters, digits, ``-``, ``_``, split at ``/`` and ``+``) that start with a
   provider's key prefix (``_KEY_PREFIXES``: the LLM, speech and avatar providers livekit has
   plugins for, and the platforms agents call) and are not a plain lower-case identifier, AWS
   access key ids, Twilio API key SIDs, LiveKit API keys (``API`` + letters and digits that
   are not CamelCase words: ``APITimeoutError`` stays); with the key id a dot joins to its
   front (``<id>.<secret>``).
8. High-entropy words (:func:`_random_segment`, :func:`_random_joined`). A run of 24 or more
   letters and digits is a credential when it is all hex from 40 characters with letters and
   digits both (key ids, hex secrets: trace ids, span ids and UUIDs stay readable), or mixes
   classes the way random text does: upper, lower and digits, with the class changing at 25 %
   or more of its positions (random base62: 60 %; CamelCase names: 20-30 %, and they rarely
   hold digits); one case and at least 2 digits and 2 letters; upper and lower case only, when
   less than 70 % of it is in CamelCase parts of 3 letters or more with a vowel (class names
   are words) or its case changes at 45 % of its positions or more. A run of 30 or more
   letters and digits joined by ``-``, ``_``, ``+`` or ``/`` (base64, base64url) goes whole
   when less than 30 % of it is in parts that are words (``Llama``, ``Instruct``, ``speech``:
   model names and paths) and its letters and digits change class at 25 % of their positions.
   Words that begin with a request or object id prefix (``req_``, ``msg_``, ``chatcmpl-``,
   livekit's ``RM_``...) stay readable. What this rule misses in real keys, and what it
   changes in ordinary messages and class names, is measured in ``tests/test_redact_corpus.py``.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from typing import Final

MAX_MESSAGE_CHARS: Final = 256
#: how much of a text is read and redacted before it is cut to ``MAX_MESSAGE_CHARS``
WINDOW_CHARS: Final = 1024
REDACTED: Final = "[REDACTED]"
#: what marks a cut
ELLIPSIS: Final = "\u2026"

# --- shared pieces ----------------------------------------------------------------------------

#: a quote around a name or value: plain, backslash-escaped (to any depth), HTML or URL-encoded
_QUOTE: Final = r"""(?:\\*["']|&quot;|&apos;|&\#3[49];|&\#x2[27];|%(?:25)?2[27]|\\u002[27])"""
_QUOTE_AT: Final = re.compile(r"(?i)" + _QUOTE)
#: scheme words that may precede a credential (``Authorization: <scheme> <credential>``)
_SCHEMES: Final = (
    r"bearer|basic|token|digest|negotiate|ntlm|hoba|mutual|ssws|key|api[-_]?key|sso-key|"
    r"aws4-hmac-sha256|[a-z][a-z0-9]*(?:-[a-z0-9]+)*-(?:auth-key|key|token|auth)"
)
_SCHEME_AT: Final = re.compile(r"(?i)(?:" + _SCHEMES + r")(?:[ \t]+|%20|\+)(?=\S)")
#: values a credential name may have that are not credentials (case-insensitive)
_KEEP: Final = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "true",
        "false",
        "redacted",
        REDACTED.lower(),
        "<redacted>",
        "<none>",
        "<missing>",
        "missing",
    }
)


def _keep(value: str) -> bool:
    v = value.strip().removesuffix(ELLIPSIS).strip().lower()
    return v in _KEEP or not v.strip("*x\u2022") or v == REDACTED.lower()


# --- positions ---------------------------------------------------------------------------------


def _lower(text: str) -> str:
    """``text`` in lower case, character for character (so positions in it are positions in
    ``text``): a character outside ASCII becomes ``?``."""
    if not text.isascii():
        text = text.encode("ascii", "replace").decode("ascii")
    return text.lower()


def _positions(low: str, hints: tuple[str, ...]) -> list[int]:
    """Every position in ``low`` where one of ``hints`` starts, in order: a pass then tries its
    pattern there only (``str.find`` is much cheaper than a regex scan of every position)."""
    found: list[int] = []
    for hint in hints:
        i = low.find(hint)
        while i >= 0:
            found.append(i)
            i = low.find(hint, i + 1)
    return sorted(set(found)) if len(found) > 1 else found


def _replace_at(
    text: str, positions: list[int], replace: Callable[[str, int], tuple[int, int, str] | None]
) -> str:
    """``text`` with, at each position (in order, none inside an earlier replacement), the span
    ``replace`` returns (``start``, ``end``, new text), if any."""
    if not positions:
        return text
    out: list[str] = []
    last = 0
    for i in positions:
        if i < last:
            continue
        found = replace(text, i)
        if found is None:
            continue
        start, end, new = found
        out.append(text[last:start])
        out.append(new)
        last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# --- 1. PEM blocks ----------------------------------------------------------------------------

_PEM: Final = re.compile(
    r"(?i)(-----BEGIN(?:[ A-Z0-9]|%20|\+){1,40}-----)(.*?)(-----END[^-\n]{0,60}-----|\Z)", re.S
)


def _pem(match: re.Match[str]) -> str:
    if _keep(match.group(2)):
        return match.group(0)
    return match.group(1) + REDACTED + match.group(3)


# --- 2. URL userinfo --------------------------------------------------------------------------

#: after ``scheme://``: everything up to the last ``@`` before a ``/``, ``?``, ``#``, a space,
#: a quote or a backslash
_AUTHORITY: Final = re.compile(r"[^\s/?#\"'<>\\]*@")
_USERINFO_ENCODED: Final = re.compile(
    r"(?i)(%3A%2F%2F)(?:(?!%2F|%3F|%23|%22|%27)[^\s/?#&\"'<>])*%40"
)


#: what ends a URL's scheme: ``://``, also with its slashes escaped (``:\/\/``, ``:\\/\\/``)
_SCHEME_END: Final = re.compile(r":(?:\\*/){2}")


def _userinfo(text: str, i: int) -> tuple[int, int, str] | None:
    end = _SCHEME_END.match(text, i)
    if end is None:
        return None
    start = end.end()
    match = _AUTHORITY.match(text, start)
    if match is None or text[start : match.end() - 1] in ("", REDACTED):
        return None
    return start, match.end() - 1, REDACTED


# --- 3. XML elements --------------------------------------------------------------------------

_XML: Final = re.compile(
    r"(?i)(?P<open>(?:<|&lt;|%3c)(?P<tag>[a-z][\w:.\-]{0,63})(?:\s[^<>]{0,256})?(?:>|&gt;|%3e))"
    r"(?P<value>(?:[^<&%]|&(?!lt;)|%(?!3c))*)"
)
_XML_WORDS: Final = (
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "signature",
    "accesskey",
    "apikey",
    "privatekey",
    "sessionkey",
    "authorization",
    "cookie",
    "canonicalrequest",
    "stringtosign",
)


def _xml(text: str, i: int) -> tuple[int, int, str] | None:
    match = _XML.match(text, i)
    if match is None:
        return None
    tag = match.group("tag").lower()
    value = match.group("value")
    if not any(word in tag for word in _XML_WORDS) or _keep(value):
        return None
    return match.start("value"), match.end("value"), REDACTED


# --- 4. named values --------------------------------------------------------------------------

#: the last word of a name that says its value is a credential
_NAME_WORDS: Final = (
    r"apikey|key|secrets?|token|password|passwd|passphrase|pass|pwd|auth|authorization|"
    r"credentials?|creds|signature|sig|cookies?|jwt|sessionid|jsessionid|phpsessid"
)
#: where those words may start (a pass tries the pattern there only)
_NAME_HINTS: Final = (
    "apikey",
    "key",
    "secret",
    "token",
    "pass",
    "pwd",
    "auth",
    "cred",
    "sig",
    "cookie",
    "jwt",
    "sessionid",
    "jsessionid",
    "phpsessid",
)
#: names whose value runs to the end of its line (several words: a scheme and its credential,
#: or a cookie list)
_LINE_NAMES: Final = frozenset({"authorization", "cookie", "cookies"})
#: where a name's word may start: not inside another word, except after a camelCase hump
#: (``sessionToken``, ``APIKey``), a URL-encoded character (``api%5Fkey``, ``%22key``) or
#: an escaped line break (``\r\nx-api-key:``)
_WORD_START: Final = (
    r"(?:(?<![a-z0-9])|(?-i:(?<=[a-z0-9])(?=[A-Z]))|(?-i:(?<=[A-Z])(?=[A-Z][a-z]))"
    r"|(?<=%[0-9a-f]{2})|(?<=%25[0-9a-f]{2})|(?<=\\[nrt]))"
)
_ASSIGN: Final = r"\s*(?:=>?|:(?!:)|%(?:25)?3[da])(?:\s|%20)*"
_NAME: Final = re.compile(
    r"(?i)"
    + _WORD_START
    + r"(?P<word>"
    + _NAME_WORDS
    + r")(?:[_\-.]?(?:id|header|value))?(?![a-z0-9])"
    + r"(?P<close>"
    + _QUOTE
    + r")?(?:(?P<assign>"
    + _ASSIGN
    + r")|(?(close)(?:\s|%20|\+)*(?:,|%2c)(?:\s|%20|\+)*(?="
    + _QUOTE
    + r")|(?!)))"
)
#: the start of a ``('name', 'value')`` pair, up to the name's word
_PAIR_OPEN: Final = re.compile(
    r"(?i)(?:[(\[]|%28|%5b)(?:\s|%20|\+)*" + _QUOTE + r"[a-z0-9_\-. %+]*\Z"
)
#: an unquoted "value" that is the next credential name and its colon
_NEXT_NAME: Final = re.compile(r"(?i)(?<![a-z0-9_\-.])[a-z0-9_\-.]*(?:" + _NAME_WORDS + r"):\Z")
#: a character of an unquoted value
_VALUE_CHAR: Final = r"[^\s&\"'<>,;{}\[\]()\\]"
#: an unquoted value: one word (after a scheme word, two)
_UNQUOTED: Final = re.compile(
    r"(?i)(?:(?:" + _SCHEMES + r")(?:[ \t]+|%20|\+)(?=" + _VALUE_CHAR + r"|\[REDACTED\]))?"
    r"(?:\[REDACTED\]|\\+/|" + _VALUE_CHAR + r")*"
)
#: an unquoted Authorization/Cookie value: the rest of its line (up to a literal \n too)
_LINE: Final = re.compile(r"(?:[^\r\n\"'<>\\]|\\+/)*")
_LINE_BREAK: Final = re.compile(r"[\r\n]")


def _closing(text: str, start: int, quote: str) -> int:
    """Where the quoted value that starts at ``start`` ends: its closing ``quote``, else the end
    of its line or of the text. A plain ``"`` escaped with a backslash does not close it."""
    end = start
    while True:
        end = text.find(quote, end)
        if end < 0 or quote not in "\"'" or text[end - 1] != "\\":
            break
        end += 1
    brk = _LINE_BREAK.search(text, start, end if end >= 0 else len(text))
    if brk is not None:
        return brk.start()
    return end if end >= 0 else len(text)


def _end_of(match: re.Match[str] | None, start: int) -> int:
    return start if match is None else match.end()


def _named_value(text: str, i: int) -> tuple[int, int, str] | None:
    match = _NAME.match(text, i)
    if match is None:
        return None
    if match.group("assign") is None and not _PAIR_OPEN.search(text, max(0, i - 64), i):
        return None  # "name", "next" in a list or an object, not a pair
    at = match.end()
    quote = _QUOTE_AT.match(text, at)
    if quote is not None:
        start = quote.end()
        end = _closing(text, start, quote.group())
    elif text.startswith(("{", "[", "("), at) and not text.startswith(REDACTED, at):
        return None  # a structure: its own names are found on their own
    else:
        start = at
        whole_line = match.group("word").lower() in _LINE_NAMES
        end = _end_of((_LINE if whole_line else _UNQUOTED).match(text, start), start)
        while end > start and text[end - 1] in " \t":
            end -= 1
        if not whole_line:
            # "auth: Authorization: ...", "auth: token Cookie: ...": the next name is not
            # part of this value
            following = _NEXT_NAME.search(text, start, end)
            if following is not None:
                end = following.start()
                while end > start and text[end - 1] in " \t":
                    end -= 1
                if end == start:
                    return None
    value = text[start:end]
    if _keep(value):
        return None
    scheme = _SCHEME_AT.match(value)
    if scheme is not None:
        start += scheme.end()
        if _keep(text[start:end]):
            return None
    return start, end, REDACTED


# --- 5. scheme words --------------------------------------------------------------------------

_SCHEME_CREDENTIAL: Final = re.compile(
    r"(?i)(?<![a-z0-9\-])(bearer|basic|token|digest|key|api-?key)(\s+|%20|\+)"
    r"([a-z0-9\-._~+/=:%]*[a-z0-9\-_~+/=%])"
)
_SCHEME_HINTS: Final = ("bearer", "basic", "token", "digest", "key", "api-key", "apikey")
#: curl's ``-u user:password`` / ``--user user:password``
_CURL_USER: Final = re.compile(r"(?<!\S)(?:-u|--user)(?:[ \t]+|=)([^\s\"'<>]+)")


def _curl_user(text: str, i: int) -> tuple[int, int, str] | None:
    match = _CURL_USER.match(text, i)
    if match is None or _keep(match.group(1)):
        return None
    return match.start(1), match.end(1), REDACTED


def _looks_like_a_credential(word: str) -> bool:
    """After ``Basic``/``Token``/``Key``...: a credential, not an English word ("token
    credit", "key provided")."""
    if len(word) < 8:
        return False
    if any(not c.isalpha() for c in word):  # digits, or - . _ ~ + / = :
        return True
    return not (word.islower() or word.isupper() or word.istitle())  # rAnDoM case


def _scheme_credential(text: str, i: int) -> tuple[int, int, str] | None:
    match = _SCHEME_CREDENTIAL.match(text, i)
    if match is None:
        return None
    scheme, credential = match.group(1, 3)
    if _keep(credential) or credential.upper() == "REDACTED":
        return None
    if _looks_like_a_credential(credential) or (
        scheme.lower() == "bearer" and not _a_word(credential)
    ):
        return match.start(3), match.end(3), REDACTED
    return None


def _a_word(text: str) -> bool:
    """An English word ("Bearer token required"), not a token: short, letters, one case."""
    return len(text) <= 12 and text.isalpha() and (text.islower() or text.istitle())


# --- 6. JWTs, and key formats with a dot, a colon or a path -----------------------------------

_JWT: Final = re.compile(
    r"(?:(?<![A-Za-z0-9_\-])|(?<=%[0-9A-Fa-f]{2}))eyJ[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){0,4}"
)


def _jwt(text: str, i: int) -> tuple[int, int, str] | None:
    match = _JWT.match(text, i)
    return None if match is None else (i, match.end(), REDACTED)


#: (a substring every match holds, the format)
_DOTTED: Final = (
    ("SG.", re.compile(r"SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}")),  # SendGrid
    ("ya29.", re.compile(r"ya29\.[A-Za-z0-9_\-]{20,}")),  # Google OAuth access token
    ("1//0", re.compile(r"1//0[A-Za-z0-9_\-]{20,}")),  # Google OAuth refresh token
    ("dp.", re.compile(r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{20,}")),  # Doppler
    (
        "hooks.slack.com/",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]+"),
    ),
    ("/webhooks/", re.compile(r"/api/webhooks/[0-9]+/[A-Za-z0-9_\-]+")),  # Discord
)
#: fal keys (``<uuid>:<hex>``), Telegram bot tokens (``<digits>:AA...``): tried at each colon
_FAL: Final = re.compile(
    r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?::|%3a)[0-9a-f]{32,}"
)
_TELEGRAM: Final = re.compile(r"(?<![0-9])[0-9]{8,10}(?::|%3[Aa])AA[A-Za-z0-9_\-]{30,}")


def _colon_key(text: str, i: int) -> tuple[int, int, str] | None:
    """At a colon (or its URL encoding ``%3A``)."""
    if i >= 36 and text[i - 13] == "-":
        match = _FAL.match(text, i - 36)
        if match is not None:
            return i - 36, match.end(), REDACTED
    if i >= 8 and text.startswith("AA", i + (1 if text[i] == ":" else 3)):
        match = _TELEGRAM.search(text, i - 10, i + 3 + 256)
        if match is not None and match.start() < i < match.end():
            return match.start(), match.end(), REDACTED
    return None


# --- 7. and 8. words: key prefixes, key ids, high entropy -------------------------------------

#: key prefixes, matched at the start of a word (a run of letters, digits, - and _) of at
#: least 14 characters whose body is not a plain lower-case identifier
_KEY_PREFIXES: Final = (
    # LLM, speech and avatar providers with livekit plugins
    "sk-",  # OpenAI (sk-proj-, sk-svcacct-, sk-admin-), Anthropic (sk-ant-), DeepSeek, OpenRouter
    "sk_",  # ElevenLabs, Cartesia (sk_car_), Hedra (sk_hedra_), Sarvam, Stripe (sk_live_)
    "rk-",
    "rk_",  # restricted keys (Stripe rk_live_)
    "pk-",
    "pk_",  # publishable keys
    "gsk_",  # Groq
    "xai-",  # xAI
    "csk-",  # Cerebras
    "pplx-",  # Perplexity
    "fw_",  # Fireworks
    "tgp_v1_",  # Together
    "nvapi-",  # NVIDIA
    "AIza",  # Google API keys (Gemini, Cloud TTS/STT)
    "GOCSPX-",  # Google OAuth client secrets
    "r8_",  # Replicate
    "hf_",  # Hugging Face
    "api_org_",  # Hugging Face organisation tokens
    "lsv2_",  # LangSmith
    "pcsk_",  # Pinecone
    "e2b_",  # E2B
    # code hosting, chat, payments, package registries, platforms
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",  # GitHub
    "glpat-",
    "gldt-",
    "glrt-",
    "glptt-",
    "gloas-",
    "glcbt-",
    "glimt-",
    "glagent-",
    "glsoat-",
    "glffct-",
    "GR1348941",  # GitLab
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "xoxe-",
    "xapp-",  # Slack
    "whsec_",  # Stripe webhook secrets
    "npm_",  # npm
    "pypi-",  # PyPI
    "shpat_",
    "shpss_",
    "shpca_",
    "shppa_",  # Shopify
    "dop_v1_",
    "doo_v1_",
    "dor_v1_",  # DigitalOcean
    "sntrys_",
    "sntryu_",  # Sentry
    "lin_api_",  # Linear
    "ntn_",
    "secret_",  # Notion
    "ATATT",  # Atlassian
    "NRAK-",  # New Relic
    "PMAK-",  # Postman
    "glsa_",
    "glc_",  # Grafana
    "dapi",  # Databricks
    "sbp_",
    "sb_secret_",  # Supabase
    "dckr_pat_",  # Docker Hub
    "tskey-",  # Tailscale
    "figd_",  # Figma
    "rnd_",  # Render
    "LTAI",  # Alibaba Cloud
    "AGE-SECRET-KEY-1",  # age
)
#: AWS access key ids (every kind of unique id prefix), and LiveKit API keys
_AWS_KEY_ID: Final = re.compile(
    r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}"
    r"|SK[0-9a-f]{32}"  # Twilio API key SIDs
)
_LIVEKIT_KEY: Final = re.compile(r"API([A-Za-z0-9]{9,20})")
#: what follows ``API`` in a class name rather than a key: CamelCase words with a vowel each
#: (``TimeoutError``), maybe a version (``GatewayV2``), or letters of one case
_NAME_TAIL: Final = re.compile(
    r"(?:[AEIOUY][a-z]*|[A-Z][a-z]*[aeiouy][a-z]*)+(?:V?[0-9]{1,3})?|[A-Z]+|[a-z]+"
)
#: generic ``key_``/``key-``/``lk_`` + 16 or more letters and digits (Mailgun ``key-<hex>``)
_GENERIC_KEY: Final = re.compile(r"(?:key|lk)[_\-][A-Za-z0-9]{16,}")
#: request, response and object ids: readable even when random (``req_011CS...``)
_ID_PREFIX: Final = re.compile(
    r"(?:req|request|msg|message|chatcmpl|cmpl|resp|response|run|call|toolu|tool|file|batch|"
    r"job|evt|event|span|trace|conv|conversation|item|asst|thread|step|vs|ft|ftjob|org|proj|"
    r"user|usr|cus|sub|inv|pi|ch|txn|acct|price|prod|id|uuid|sess|session|room|voice|model|"
    r"RM|PA|TR|AJ|AW|EG|IN|SIP|SE|ST|ND|CO|GR|PR|IP|WH|SR)[_\-]"
)
#: a run of letters, digits, ``-``, ``_``, ``+`` and ``/`` (words, and base64): where a key
#: may be
_TOKEN: Final = re.compile(r"[A-Za-z0-9_\-+/]{10,}")
#: a word within such a run (split at ``+`` and ``/``)
_SUBWORD: Final = re.compile(r"[A-Za-z0-9_\-]{10,}")
#: a base64 run JSON-escaped (``\/``) or URL-encoded (``%2F``, ``%2B``)
_B64_ENCODED: Final = re.compile(r"(?:[A-Za-z0-9+/_\-]|\\+/|%2[BbFf]){30,}")
_ESCAPED_SLASH: Final = re.compile(r"\\+/")
_PERCENT_SLASH: Final = re.compile(r"%2[BbFf]")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9]+")
_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_WORDLIKE: Final = re.compile(r"[A-Z]?[a-z]{3,}")
_CLASS: Final = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "U" * 26 + "l" * 26 + "d" * 10,
)


def _change_ratio(core: str) -> float:
    """How often the character class (upper, lower, digit) changes from one character to the
    next: about 0.6 in random base62, 0.2-0.3 in CamelCase names."""
    classes = core.translate(_CLASS)
    changes = sum(1 for _ in itertools.groupby(classes)) - 1
    return changes / (len(core) - 1)


def _mixed(hex_digits: str) -> bool:
    """Letters and digits both (a run of one of them is not a key: ``aaaa...``, a number)."""
    return not (hex_digits.isdigit() or hex_digits.isalpha())


def _random_segment(seg: str) -> bool:
    """The high-entropy rule for one run of letters and digits (module docstring, 8)."""
    n = len(seg)
    if n < 24:
        return False
    if _HEX.fullmatch(seg):
        return n >= 40 and _mixed(seg)
    upper = any(c.isupper() for c in seg)
    lower = any(c.islower() for c in seg)
    digits = sum(c.isdigit() for c in seg)
    if upper and lower and digits:
        return _change_ratio(seg) >= 0.25
    if (upper or lower) and digits:
        return digits >= 2 and n - digits >= 2
    if upper and lower:
        # letters only: a name is CamelCase words (70 % or more of it in parts of 3 letters or
        # more with a vowel: every class name of 24 letters or more in livekit's dependencies
        # is); random letters rarely are, and change case more often
        return _word_share(seg) < 0.7 or _change_ratio(seg) >= 0.45
    return False


_PART: Final = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_VOWELS: Final = frozenset("aeiouyAEIOUY")


def _word_share(letters: str) -> float:
    """The share of ``letters`` in CamelCase parts of 3 letters or more that hold a vowel."""
    parts = _PART.findall(letters)
    return sum(len(p) for p in parts if len(p) >= 3 and not _VOWELS.isdisjoint(p)) / len(letters)


def _plain(body: str) -> bool:
    """A lower-case identifier (``sk-learn-extension``), not a key body."""
    return not any(c.isdigit() or c.isupper() for c in body)


def _secret_word(word: str) -> bool:
    """A word (letters, digits, - and _) that is a key: by prefix, by shape, by entropy."""
    if len(word) >= 14 and word.startswith(_KEY_PREFIXES) and not _plain(word[3:]):
        return True
    if _AWS_KEY_ID.fullmatch(word) or _GENERIC_KEY.fullmatch(word):
        return True
    livekit = _LIVEKIT_KEY.fullmatch(word)
    if livekit is not None and not _NAME_TAIL.fullmatch(livekit.group(1)):
        return True
    if len(word) < 24 or _ID_PREFIX.match(word):
        return False
    segments = _SEGMENT.findall(word)
    if any(_random_segment(seg) for seg in segments):
        return True
    return len(segments) > 1 and _random_joined(segments)


def _random_joined(segments: list[str]) -> bool:
    """A base64url or base64 secret split by its ``-``/``_``/``+``/``/``: random as a whole,
    and less than 30 % of it in parts that are words (a path, a model name: ``Llama``,
    ``Instruct``, ``speech``)."""
    core = "".join(segments)
    if len(core) < 30:
        return False
    if sum(len(seg) for seg in segments if len(seg) >= 4 and _WORDLIKE.fullmatch(seg)) * 10 >= (
        len(core) * 3
    ):
        return False
    if _HEX.fullmatch(core):
        return len(core) >= 40 and _mixed(core)
    upper = any(c.isupper() for c in core)
    lower = any(c.islower() for c in core)
    digits = any(c.isdigit() for c in core)
    return upper + lower + digits >= 2 and _change_ratio(core) >= 0.25


def _token(text: str, match: re.Match[str]) -> list[tuple[int, int]]:
    """The spans of ``match`` (a run of ``_TOKEN``) that are keys."""
    token = match.group()
    start = match.start()
    if "/" not in token and "+" not in token:
        if _secret_word(token):
            return [(start, match.end())]
        # a word URL-encoded in place (%20sk-...): its first two characters are the code's;
        # after an escaped line break (\nsk-...), its first is the escape's
        if start and text[start - 1] == "%" and _secret_word(token[2:]):
            return [(start + 2, match.end())]
        if start and text[start - 1] == "\\" and token[0] in "nrt" and _secret_word(token[1:]):
            return [(start + 1, match.end())]
        return []
    if len(token) >= 30 and _random_joined(_SEGMENT.findall(token)):
        return [(start, match.end())]
    return [
        (start + word.start(), start + word.end())
        for word in _SUBWORD.finditer(token)
        if _secret_word(word.group())
    ]


#: the key id in front of a secret, joined by a dot (``<id>.<secret>``: Baseten, Ultravox)
_DOTTED_ID: Final = re.compile(r"(?<![A-Za-z0-9_\-.])[A-Za-z0-9]{4,16}\.\Z")


def _with_id(text: str, start: int) -> int:
    if start and text[start - 1] == ".":
        found = _DOTTED_ID.search(text, max(0, start - 18), start)
        # a key id has digits or both cases; a module name (``email.``) has not
        if found is not None and not _plain(found.group()):
            return found.start()
    return start


def _words(text: str) -> str:
    spans = [
        (_with_id(text, start), end)
        for match in _TOKEN.finditer(text)
        for start, end in _token(text, match)
    ]
    if ("\\/" in text or "%2" in text) and len(text) >= 30:
        for match in _B64_ENCODED.finditer(text):
            plain = _PERCENT_SLASH.sub("/", _ESCAPED_SLASH.sub("/", match.group()))
            if _random_joined(_SEGMENT.findall(plain)):
                spans.append(match.span())
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    last = 0
    for start, end in spans:
        if start < last:
            if end > last:  # overlapping spans: extend the one already out
                last = end
            continue
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


# --- the redactor -----------------------------------------------------------------------------


def redact(text: str) -> str:
    """Replace every credential in ``text`` with ``[REDACTED]`` (the passes of the module
    docstring, in order). Idempotent; reads all of ``text``: callers bound it."""
    if not text:
        return text
    low = _lower(text)
    if "-----begin" in low:
        text = _PEM.sub(_pem, text)
    if "@" in text and ("://" in text or ":\\" in text):
        text = _replace_at(text, _positions(text, ("://", ":\\")), _userinfo)
    if "%40" in text and "%3a%2f%2f" in low:
        text = _USERINFO_ENCODED.sub(lambda m: m.group(1) + REDACTED + "%40", text)
    if ("<" in text or "&lt;" in low or "%3c" in low) and any(w in low for w in _XML_WORDS):
        low = _lower(text)
        text = _replace_at(text, _positions(low, ("<", "&lt;", "%3c")), _xml)
    low = _lower(text)
    text = _replace_at(text, _positions(low, _NAME_HINTS), _named_value)
    low = _lower(text)
    text = _replace_at(text, _positions(low, _SCHEME_HINTS), _scheme_credential)
    if "-u" in text:
        text = _replace_at(text, _positions(text, ("-u ", "-u\t", "--user")), _curl_user)
    for hint, pattern in _DOTTED:
        if hint in text:
            text = pattern.sub(REDACTED, text)
    if "eyJ" in text:
        text = _replace_at(text, _positions(text, ("eyJ",)), _jwt)
    if ":" in text or "%3" in text:
        text = _replace_at(text, _positions(text, (":", "%3A", "%3a")), _colon_key)
    return _words(text)


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


#: the last character no credential contains (a word cut at the end of a text is dropped back
#: to it): whitespace and , ; & quotes brackets | `
_LAST_SEPARATOR: Final = re.compile(r"[\s,;&\"'<>()\[\]{}|`](?=[^\s,;&\"'<>()\[\]{}|`]*\Z)")


#: a URL authority the cut ended in: ``user:password`` whose ``@`` was cut off, maybe
_CUT_AUTHORITY: Final = re.compile(r":(?:\\*/){2}[^\s/?#\"'<>\\]*\Z")


def drop_partial_word(text: str) -> str:
    """``text`` without its last word, which a cut may have left incomplete (a key cut too short
    to be recognised, or part of a longer credential): up to its last separator, kept; and
    without a URL authority the cut ended in (its ``@`` may have been cut off)."""
    authority = _CUT_AUTHORITY.search(text)
    if authority is None:
        match = _LAST_SEPARATOR.search(text)
        text = "" if match is None else text[: match.end()]
        # ";", "&" and "," may be inside a password: what is left may end in an authority
        authority = _CUT_AUTHORITY.search(text)
    return text if authority is None else text[: authority.start()] + "://"


def _cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """:func:`truncate`, never inside a ``[REDACTED]`` marker."""
    if len(text) <= limit:
        return text
    at = limit - 1
    marker = text.rfind(REDACTED, max(0, at - len(REDACTED) + 1), at + len(REDACTED) - 1)
    if 0 <= marker < at < marker + len(REDACTED):
        at = marker
    return text[:at] + ELLIPSIS


def clean_message(text: str, cut: bool = False) -> str:
    """The form in which a foreign text may leave the process: its first ``WINDOW_CHARS``
    redacted, then cut to ``MAX_MESSAGE_CHARS``. ``cut``: the text was already cut upstream (at
    its end), so its last word may be part of a longer one."""
    if len(text) > WINDOW_CHARS:
        text = text[:WINDOW_CHARS]
        cut = True
    if cut:
        return _cut(redact(drop_partial_word(text)) + ELLIPSIS)
    return _cut(redact(text))


def clean_repeated(text: str, cut: bool = False) -> str:
    """:func:`clean_message` for text that repeats (quota fields, the message of one exception
    recorded on several spans): each distinct text is cleaned once."""
    if len(text) > WINDOW_CHARS:
        return _clean_cached(text[:WINDOW_CHARS], True)
    return _clean_cached(text, cut)


@functools.lru_cache(maxsize=256)
def _clean_cached(text: str, cut: bool) -> str:
    return clean_message(text, cut)  # keys are windows: at most 256 entries of 1 KiB


def clean_name(name: str) -> str:
    """A class, provider or task name as it may leave the process: redacted, cut, cached (few
    distinct names, seen again and again)."""
    return clean_message(name) if len(name) > WINDOW_CHARS else _name_cached(name)


@functools.lru_cache(maxsize=1024)
def _name_cached(name: str) -> str:
    return clean_message(name)


def utf8(text: str) -> str:
    """``text`` as it can be exported: a lone surrogate (from a hostile class name or message)
    cannot be encoded, and the OTLP encoder would drop the whole attribute."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")
