"""Passes 1 to 5 of the redactor (pure, no I/O): credentials found by what surrounds them.

PEM blocks, the userinfo of a URL, XML elements whose name says credential, the value of every
name that says credential (a header, a parameter, a JSON, Python or environment key), and the
credential after a scheme word (``Bearer``, ``Basic``...) or curl's ``-u``. The package
docstring states each rule; the package's :func:`redact` tries each pass where its hints are.
"""

from __future__ import annotations

import re
from typing import Final

from .common import ELLIPSIS, REDACTED

# --- shared by passes 1 to 5 ------------------------------------------------------------------

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
