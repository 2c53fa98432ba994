"""The credential formats the redactor knows, one by one (data only, no I/O).

The formats with a dot, a colon or a path in them (pass 6 of the package docstring), the key
prefixes of the providers and platforms agents call, key ids, and the request and object id
prefixes that stay readable (pass 7). :mod:`.tokens` applies them.
"""

from __future__ import annotations

import re
from typing import Final

# --- 6. JWTs, and key formats with a dot, a colon or a path -----------------------------------

_JWT: Final = re.compile(
    r"(?:(?<![A-Za-z0-9_\-])|(?<=%[0-9A-Fa-f]{2}))eyJ[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){0,4}"
)

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


# --- 7. key prefixes and key ids --------------------------------------------------------------

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
#: the key id in front of a secret, joined by a dot (``<id>.<secret>``: Baseten, Ultravox)
_DOTTED_ID: Final = re.compile(r"(?<![A-Za-z0-9_\-.])[A-Za-z0-9]{4,16}\.\Z")
