#!/usr/bin/env python3
# Generator of the labeled redaction corpus (tests/corpus.rs measures the detectors on it).
"""Generates the labeled redaction corpus (corpus.ndjson.gz beside this file).

Standard library only, fixed seed: running it again reproduces the checked-in file exactly
(tests/corpus.rs checks that). Each line is one case:

  {"id": ..., "kind": "positive", "detector": NAME, "shape": ..., "metadata": {...},
   "values": [strings that must not survive redaction]}
  {"id": ..., "kind": "decoy", "class": CLASS, "shape": ..., "metadata": {...},
   "values": [strings that must survive unchanged]}

Positives are in the shapes the upstream anchors accept (Microsoft Presidio's recognizers,
gitleaks' config/gitleaks.toml), placed in realistic metadata: free text, key=value strings,
nested JSON, URLs, log lines and JSON inside a string. Decoys are the hard negatives: UUIDs,
versions, order numbers failing the checksum, timestamps, hashes, base64 blobs, git SHAs,
phone-like counters, numbers without their context word. Hand-written cases are at the end.

Usage: gen_corpus.py            write corpus.ndjson.gz
       gen_corpus.py --stdout   print the corpus (uncompressed) instead
"""

import base64
import gzip
import hashlib
import json
import os
import random
import string
import sys

SEED = 20261204
R = random.Random(SEED)
PER_DETECTOR = 60
PER_DECOY_CLASS = 60

ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
HEX = "0123456789abcdef"
B64URL = ALNUM + "-_"
B64 = ALNUM + "+/"
WORD_DASH = ALNUM + "_-"


def rand(chars, n):
    """n characters of `chars` with at least one digit and one letter when both are possible."""
    while True:
        s = "".join(R.choice(chars) for _ in range(n))
        if n < 8 or not (set(chars) & set(string.digits)) or not (set(chars) & set(string.ascii_letters)):
            return s
        if any(c.isdigit() for c in s) and any(c.isalpha() for c in s):
            return s


# ---------------------------------------------------------------------------------------------
# Value generators: one per detector, each returning (value, context hint or None). A context
# hint is a word that a weak detector needs near the value.

def luhn_complete(prefix, length):
    digits = [int(d) for d in prefix]
    while len(digits) < length - 1:
        digits.append(R.randrange(10))
    for check in range(10):
        cand = digits + [check]
        total = 0
        for i, d in enumerate(reversed(cand)):
            if i % 2 == 1:
                d *= 2
                if d > 9:
                    d -= 9
            total += d
        if total % 10 == 0:
            return "".join(map(str, cand))
    raise AssertionError


def luhn_ok(num):
    total = 0
    for i, d in enumerate(reversed([int(c) for c in num])):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
         "oscar", "peggy", "trent", "victor", "walter", "zoë", "renée", "obrien", "li.wei"]
DOMAINS = ["example.com", "mail.example.net", "corp.example.org", "example.co.uk", "dept.example.io",
           "example.de", "sub.example.travel"]


def v_email():
    local = R.choice(FIRST)
    form = R.randrange(8)
    if form == 1:
        local += "+" + R.choice(["audit", "billing", "x7"])
    elif form == 2:
        local += str(R.randrange(1, 999))
    elif form == 3:
        local = local.replace(".", "_") + "." + R.choice(["smith", "jones", "o-neil"])
    addr = local + "@" + R.choice(DOMAINS)
    if form == 4:
        addr = '"' + R.choice(FIRST) + " " + R.choice(["smith", "jones"]) + '"@' + R.choice(DOMAINS)
    if form == 5:
        addr = R.choice(FIRST) + "@[192.0.2." + str(R.randrange(1, 255)) + "]"
    if form == 6:
        return (addr.replace("@", "%40"), None, "urlencoded")
    if form == 7:
        return (addr, None, "display_name")
    return (addr, None, None)


def ssn_parts():
    while True:
        a = R.randrange(1, 900)
        if a != 666:
            return "%03d" % a, "%02d" % R.randrange(1, 100), "%04d" % R.randrange(1, 10000)


def v_ssn():
    a, g, s = ssn_parts()
    form = R.randrange(4)
    if form == 0 or form == 1:
        return (f"{a}-{g}-{s}", None, None)
    if form == 2:
        return (f"{a} {g} {s}", R.choice(["SSN", "social security number", "ssn"]), None)
    return (f"{a}{g}{s}", R.choice(["SSN", "social security no", "SSN#"]), None)


def v_credit_card():
    kind = R.randrange(4)
    if kind == 0:
        n = luhn_complete("4" + str(R.randrange(10)), 16)
    elif kind == 1:
        n = luhn_complete(str(R.randrange(51, 56)), 16)
    elif kind == 2:
        n = luhn_complete(R.choice(["34", "37"]), 15)
    else:
        n = luhn_complete("6011", 16)
    form = R.randrange(3)
    if len(n) == 15:
        if form == 1:
            return (f"{n[:4]} {n[4:10]} {n[10:]}", None, None)
        if form == 2:
            return (f"{n[:4]}-{n[4:10]}-{n[10:]}", None, None)
        return (n, None, None)
    if form == 1:
        return (" ".join(n[i:i + 4] for i in range(0, 16, 4)), None, None)
    if form == 2:
        return ("-".join(n[i:i + 4] for i in range(0, 16, 4)), None, None)
    return (n, None, None)


def nanp():
    return str(R.randrange(2, 10)) + "%02d" % R.randrange(100), str(R.randrange(2, 10)) + "%02d" % R.randrange(100), "%04d" % R.randrange(10000)


def v_phone():
    a, b, c = nanp()
    form = R.randrange(9)
    if form == 0:
        return (f"({a}) {b}-{c}", None, None)
    if form == 1:
        return (f"{a}-{b}-{c}", None, None)
    if form == 2:
        return (f"+1-{a}-{b}-{c}", None, None)
    if form == 3:
        return (f"{a}.{b}.{c}", None, None)
    if form == 4:
        return (f"+44 20 {R.randrange(1000, 9999)} {R.randrange(1000, 9999)}", None, None)
    if form == 5:
        return (f"+49151{R.randrange(10000000, 99999999)}", None, None)
    if form == 6:
        return (f"020 {R.randrange(7000, 8999)} {R.randrange(1000, 9999)}", R.choice(["phone", "tel", "mobile"]), None)
    if form == 7:
        return (f"0{R.randrange(30, 89)} {R.randrange(10000000, 99999999)}", R.choice(["Telefon phone", "call"]), None)
    return (f"{a}{b}{c}", R.choice(["phone", "cell", "call me at"]), None)


def v_ipv4():
    return (".".join(str(x) for x in [R.randrange(1, 224), R.randrange(256), R.randrange(256), R.randrange(1, 255)]), None, None)


def v_ipv6():
    groups = ["%x" % R.randrange(1, 0x10000) for _ in range(8)]
    form = R.randrange(5)
    if form == 0:
        return (":".join(groups), None, None)
    if form == 1:
        return ("2001:db8:" + ":".join(groups[:2]) + "::" + groups[7], None, None)
    if form == 2:
        return ("::ffff:" + v_ipv4()[0], None, None)
    if form == 3:
        return ("fe80::" + groups[0] + ":" + groups[1] + "%eth0", None, None)
    return (":".join("%04x" % R.randrange(0x10000) for _ in range(8)), None, None)


def v_mac():
    octets = ["%02x" % R.randrange(256) for _ in range(6)]
    octets[0] = "%02x" % (R.randrange(1, 128) * 2)
    form = R.randrange(3)
    if form == 0:
        return (":".join(octets), None, None)
    if form == 1:
        return ("-".join(o.upper() for o in octets), None, None)
    h = "".join(octets)
    if h.isdigit():
        h = "a" + h[1:]
    return (f"{h[:4]}.{h[4:8]}.{h[8:]}", None, None)


IBAN_SPECS = {"DE": (22, "n"), "GB": (22, "GB"), "FR": (27, "n"), "ES": (24, "n"), "IT": (27, "IT"),
              "NL": (18, "NL"), "CH": (21, "n"), "BE": (16, "n"), "PL": (28, "n"), "SE": (24, "n"),
              "AT": (20, "n"), "IE": (22, "GB"), "NO": (15, "n"), "DK": (18, "n"), "PT": (25, "n")}


def iban_check(country, bban):
    rearranged = bban + country + "00"
    num = "".join(str(int(c, 36)) for c in rearranged)
    return "%02d" % (98 - int(num) % 97)


def make_iban():
    country = R.choice(sorted(IBAN_SPECS))
    length, kind = IBAN_SPECS[country]
    n = length - 4
    if kind == "GB":
        bban = "".join(R.choice(string.ascii_uppercase) for _ in range(4)) + "".join(R.choice(string.digits) for _ in range(n - 4))
    elif kind == "NL":
        bban = "".join(R.choice(string.ascii_uppercase) for _ in range(4)) + "".join(R.choice(string.digits) for _ in range(n - 4))
    elif kind == "IT":
        bban = R.choice(string.ascii_uppercase) + "".join(R.choice(string.digits) for _ in range(n - 1))
    else:
        bban = "".join(R.choice(string.digits) for _ in range(n))
    return country + iban_check(country, bban) + bban


def v_iban():
    iban = make_iban()
    if R.randrange(2):
        return (" ".join(iban[i:i + 4] for i in range(0, len(iban), 4)), None, None)
    return (iban, None, None)


def itin():
    group = R.choice(list(range(50, 66)) + list(range(70, 89)) + [90, 91, 92] + list(range(94, 100)))
    return "9%02d" % R.randrange(100), "%02d" % group, "%04d" % R.randrange(10000)


def v_us_itin():
    a, g, s = itin()
    form = R.randrange(3)
    if form == 0:
        return (f"{a}-{g}-{s}", None, None)
    if form == 1:
        return (f"{a} {g} {s}", R.choice(["ITIN", "taxpayer id", "TIN"]), None)
    return (f"{a}{g}{s}", R.choice(["ITIN", "individual taxpayer"]), None)


def aba():
    while True:
        prefix = R.choice(["0%d" % R.randrange(10), "1%d" % R.randrange(3), str(R.randrange(21, 33)), str(R.randrange(61, 73)), "80"])
        d = prefix + "".join(str(R.randrange(10)) for _ in range(6))
        w = [3, 7, 1] * 3
        for c in range(10):
            cand = d + str(c)
            if sum(int(x) * w[i] for i, x in enumerate(cand)) % 10 == 0:
                return cand


def v_us_bank_routing():
    n = aba()
    ctx = R.choice(["routing number", "ABA", "routing no.", "RTN"])
    if R.randrange(3) == 0:
        return (f"{n[:4]}-{n[4:8]}-{n[8]}", ctx, None)
    return (n, ctx, None)


def v_us_passport():
    ctx = R.choice(["passport", "passport no", "Passport#", "travel document"])
    if R.randrange(2):
        return (R.choice(string.ascii_uppercase) + "%08d" % R.randrange(10 ** 8), ctx, None)
    return ("%09d" % R.randrange(10 ** 8, 10 ** 9), ctx, None)


def v_us_driver_license():
    ctx = R.choice(["driver license", "driver's licence", "DL#", "driving permit", "CDL"])
    form = R.randrange(3)
    if form == 0:
        return (R.choice(string.ascii_uppercase) + str(R.randrange(10 ** 6, 10 ** 7)), ctx, None)
    if form == 1:
        return ("".join(R.choice(string.ascii_uppercase) for _ in range(2)) + str(R.randrange(10 ** 5, 10 ** 6)), ctx, None)
    return (str(R.randrange(10 ** 7, 10 ** 9)), ctx, None)


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def v_date_of_birth():
    y, m, d = R.randrange(1930, 2010), R.randrange(1, 13), R.randrange(1, 29)
    ctx = R.choice(["DOB", "date of birth", "born", "birthday", "birthdate"])
    form = R.randrange(6)
    if form == 0:
        return (f"{y}-{m:02d}-{d:02d}", ctx, None)
    if form == 1:
        return (f"{m:02d}/{d:02d}/{y}", ctx, None)
    if form == 2:
        return (f"{d:02d}.{m:02d}.{y}", ctx, None)
    if form == 3:
        return (f"{MONTHS[m - 1]} {d}, {y}", ctx, None)
    if form == 4:
        return (f"{d} {MONTHS[m - 1][:3]} {y}", ctx, None)
    return (f"{d}/{m}/{y}", ctx, None)


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(b):
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    pad = len(b) - len(b.lstrip(b"\0"))
    return "1" * pad + out


def base58check(version):
    payload = bytes([version]) + bytes(R.randrange(256) for _ in range(20))
    chk = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    return b58encode(payload + chk)


BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


def bech32_address(witver, nbytes):
    prog = [R.randrange(256) for _ in range(nbytes)]
    acc, bits, data = 0, 0, [witver]
    for b in prog:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    const = 1 if witver == 0 else 0x2BC830A3
    hrp = [ord(c) >> 5 for c in "bc"] + [0] + [ord(c) & 31 for c in "bc"]
    pm = bech32_polymod(hrp + data + [0] * 6) ^ const
    check = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return "bc1" + "".join(BECH[d] for d in data + check)


def v_crypto_wallet():
    form = R.randrange(5)
    if form == 0:
        return (base58check(0), None, None)
    if form == 1:
        return (base58check(5), None, None)
    if form == 2:
        return (bech32_address(0, 20), None, None)
    if form == 3:
        return (bech32_address(1, 32), None, None)
    return ("0x" + "".join(R.choice("0123456789abcdefABCDEF") for _ in range(40)), None, None)


def v_url_credentials():
    pw = rand(ALNUM + "!$*", R.randrange(10, 24))
    form = R.randrange(4)
    host = R.choice(["db.internal:5432/app", "cache.internal:6379/0", "broker.example.com/vhost", "example.com/repo.git"])
    scheme = R.choice(["postgres", "postgresql", "mysql", "redis", "amqp", "https", "mongodb+srv"])
    if form == 3:
        tok = rand(ALNUM, 32)
        return (tok, None, f"{scheme}://{tok}@{host}")
    user = R.choice(["app", "svc_reader", "admin", ""])
    return (pw, None, f"{scheme}://{user}:{pw}@{host}")


def b64url(n):
    return base64.urlsafe_b64encode(bytes(R.randrange(256) for _ in range(n))).decode().rstrip("=")


def v_jwt():
    header = base64.urlsafe_b64encode(json.dumps({"alg": R.choice(["HS256", "RS256"]), "typ": "JWT"}).encode()).decode().rstrip("=")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": str(R.randrange(10 ** 6)), "iat": R.randrange(1_700_000_000, 1_800_000_000)}).encode()).decode().rstrip("=")
    return (f"{header}.{payload}.{b64url(32)}", None, None)


def v_bearer():
    return (rand(ALNUM + "-._~", R.randrange(20, 48)), None, "bearer")


def v_private_key():
    kind = R.choice(["RSA ", "EC ", "", "OPENSSH ", "ENCRYPTED "])
    body = "\n".join(base64.b64encode(bytes(R.randrange(256) for _ in range(48))).decode() for _ in range(R.randrange(2, 5)))
    return (f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----", None, None)


def prefixed(*options):
    """A token from (prefix, charset, length or (lo, hi)[, suffix]) options (gitleaks shapes)."""
    def gen():
        opt = R.choice(options)
        prefix, chars, n = opt[0], opt[1], opt[2]
        if isinstance(n, tuple):
            n = R.randrange(n[0], n[1] + 1)
        body = rand(chars, n) if not callable(chars) else chars()
        suffix = opt[3] if len(opt) > 3 else ""
        if callable(suffix):
            suffix = suffix()
        return (prefix + body + suffix, None, None)
    return gen


def hexs(n):
    return lambda: "".join(R.choice(HEX) for _ in range(n))


TOKENS = {
    # Presidio has no secrets; these follow gitleaks' config/gitleaks.toml rules.
    "aws_access_key": prefixed(("AKIA", UPPER_ALNUM.replace("0", "").replace("1", "").replace("8", "").replace("9", ""), 16), ("ASIA", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
    "github_token": prefixed(("ghp_", ALNUM, 36), ("gho_", ALNUM, 36), ("ghs_", ALNUM, 36), ("github_pat_", ALNUM + "_", 82)),
    "gitlab_token": prefixed(("glpat-", B64URL, 20), ("glrt-", B64URL, 20), ("gldt-", B64URL, 20), ("glft-", B64URL, 20)),
    "slack_webhook": lambda: ("hooks.slack.com/services/T" + rand(UPPER_ALNUM, 8) + "/B" + rand(UPPER_ALNUM, 8) + "/" + rand(ALNUM, 24), None, "url"),
    "slack_token": prefixed(("xoxb-", string.digits, 12, lambda: "-" + str(R.randrange(10 ** 12, 10 ** 13)) + "-" + rand(ALNUM, 24)), ("xoxp-", string.digits, 12, lambda: "-" + str(R.randrange(10 ** 12, 10 ** 13)) + "-" + rand(ALNUM, 32))),
    "stripe_key": prefixed(("sk_live_", ALNUM, 24), ("rk_test_", ALNUM, 24), ("whsec_", ALNUM, 32)),
    "google_api_key": prefixed(("AIza", B64URL, 35)),
    "anthropic_key": prefixed(("sk-ant-api03-", B64URL, 93, "AA")),
    "openai_key": prefixed(("sk-proj-", B64URL, 74, lambda: "T3BlbkFJ" + rand(B64URL, 74)), ("sk-", ALNUM, 20, lambda: "T3BlbkFJ" + rand(ALNUM, 20))),
    "twilio_key": prefixed(("SK", HEX, 32)),
    "sendgrid_key": prefixed(("SG.", B64URL, 22, lambda: "." + rand(B64URL, 43))),
    "npm_token": prefixed(("npm_", ALNUM, 36)),
    "azure_storage_key": lambda: (base64.b64encode(bytes(R.randrange(256) for _ in range(64))).decode(), None, "azure"),
    "huggingface_token": prefixed(("hf_", string.ascii_letters, 34), ("api_org_", string.ascii_letters, 34)),
    "pypi_token": prefixed(("pypi-AgEIcHlwaS5vcmc", B64URL, 70)),
    "shopify_token": prefixed(("shpat_", HEX, 32), ("shpss_", HEX, 32)),
    "digitalocean_token": prefixed(("dop_v1_", HEX, 64), ("doo_v1_", HEX, 64)),
    "onepassword_token": prefixed(("ops_eyJ", B64, 260)),
    "adobe_client_secret": prefixed(("p8e-", ALNUM, 32)),
    "age_secret_key": prefixed(("AGE-SECRET-KEY-1", BECH.upper(), 58)),
    "alibaba_access_key": prefixed(("LTAI", ALNUM, 20)),
    "artifactory_token": prefixed(("AKCp", ALNUM, 69), ("cmVmd", ALNUM, 59)),
    "aws_bedrock_key": prefixed(("ABSK", B64, 120)),
    "clickhouse_key": prefixed(("4b1d", ALNUM, 38)),
    "clojars_token": prefixed(("CLOJARS_", LOWER_ALNUM, 60)),
    "cloudflare_origin_ca_key": prefixed(("v1.0-", HEX, 24, lambda: "-" + hexs(146)())),
    "databricks_token": prefixed(("dapi", HEX, 32)),
    "doppler_token": prefixed(("dp.pt.", ALNUM, 43)),
    "duffel_token": prefixed(("duffel_test_", ALNUM + "_-=", 43), ("duffel_live_", ALNUM + "_-=", 43)),
    "dynatrace_token": prefixed(("dt0c01.", UPPER_ALNUM, 24, lambda: "." + rand(UPPER_ALNUM, 64))),
    "easypost_token": prefixed(("EZAK", ALNUM, 54), ("EZTK", ALNUM, 54)),
    "facebook_token": prefixed(("EAAM", ALNUM, 120), ("EAAC", ALNUM, 110)),
    "flutterwave_key": prefixed(("FLWSECK_TEST-", "abcdefgh0123456789", 32, "-X"), ("FLWSECK_TEST-", "abcdefgh0123456789", 12)),
    "flyio_token": prefixed(("fo1_", WORD_DASH, 43), ("fm2_", B64, 120)),
    "frameio_token": prefixed(("fio-u-", ALNUM + "-_=", 64)),
    "grafana_token": prefixed(("glc_", B64, 48), ("glsa_", ALNUM, 32, lambda: "_" + hexs(8)()), ("eyJrIjoi", ALNUM, 80)),
    "harness_token": prefixed(("pat.", WORD_DASH, 22, lambda: "." + rand(ALNUM, 24) + "." + rand(ALNUM, 20))),
    "heroku_key": prefixed(("HRKU-AA", WORD_DASH, 58)),
    "infracost_token": prefixed(("ico-", ALNUM, 32)),
    "linear_key": prefixed(("lin_api_", ALNUM, 40)),
    "notion_token": prefixed(("ntn_", string.digits, 11, lambda: rand(ALNUM, 35))),
    "openshift_token": prefixed(("sha256~", WORD_DASH, 43)),
    "perplexity_key": prefixed(("pplx-", ALNUM, 48)),
    "planetscale_token": prefixed(("pscale_tkn_", ALNUM + "_=.-", 43), ("pscale_pw_", ALNUM + "_-", 43)),
    "postman_key": prefixed(("PMAK-", HEX, 24, lambda: "-" + hexs(34)())),
    "prefect_token": prefixed(("pnu_", ALNUM, 36)),
    "pulumi_token": prefixed(("pul-", HEX, 40)),
    "readme_token": prefixed(("rdme_", LOWER_ALNUM, 70)),
    "rubygems_token": prefixed(("rubygems_", HEX, 48)),
    "scalingo_token": prefixed(("tk-us-", WORD_DASH, 48)),
    "sendinblue_key": prefixed(("xkeysib-", HEX, 64, lambda: "-" + rand(ALNUM, 16))),
    "sentry_token": prefixed(("sntryu_", HEX, 64)),
    "settlemint_token": prefixed(("sm_pat_", ALNUM, 16), ("sm_aat_", ALNUM, 16)),
    "shippo_token": prefixed(("shippo_live_", HEX, 40), ("shippo_test_", HEX, 40)),
    "sourcegraph_token": prefixed(("sgp_", HEX, 40), ("sgp_", HEX, 16, lambda: "_" + hexs(40)())),
    "square_token": prefixed(("sq0atp-", WORD_DASH, 22), ("EAAA", WORD_DASH, 60)),
    "vault_token": prefixed(("hvs.", WORD_DASH, 95), ("hvb.", WORD_DASH, 140)),
}


def entropy(s):
    counts = {c: s.count(c) for c in set(s)}
    return -sum(n / len(s) * __import__("math").log2(n / len(s)) for n in counts.values())


def v_generic_secret():
    # gitleaks generic-api-key: a secret-ish key, `[\w.=-]{10,150}`, entropy >= 3.5.
    key = R.choice(["signing_key", "hmac_key", "auth_code", "access_code", "client_creds", "api_sig", "encryption_key"])
    while True:
        value = rand(ALNUM + "_-", R.randrange(16, 40))
        if entropy(value) >= 3.5:
            return (value, None, "generic:" + key)


def v_secret():
    key = R.choice(["password", "db_password", "client_secret", "refresh_token", "X-Api-Key", "passphrase"])
    return (rand(ALNUM + "#%!", R.randrange(8, 24)), None, "secret:" + key)


GENERATORS = {
    "email": v_email, "ssn": v_ssn, "credit_card": v_credit_card, "phone": v_phone, "ipv4": v_ipv4,
    "ipv6": v_ipv6, "mac_address": v_mac, "iban": v_iban, "us_itin": v_us_itin,
    "us_bank_routing": v_us_bank_routing, "us_passport": v_us_passport,
    "us_driver_license": v_us_driver_license, "date_of_birth": v_date_of_birth,
    "crypto_wallet": v_crypto_wallet, "url_credentials": v_url_credentials, "jwt": v_jwt,
    "bearer": v_bearer, "private_key": v_private_key, "generic_secret": v_generic_secret,
    "secret": v_secret,
}
GENERATORS.update(TOKENS)

# ---------------------------------------------------------------------------------------------
# Placing a value in realistic metadata.

NEUTRAL_KEYS = ["note", "detail", "message", "comment", "description", "text", "summary"]
SENTENCES = [
    "customer wrote: {v} please check",
    "Forwarded from {v} on behalf of the team.",
    "value was {v}, retrying",
    "[{v}]",
    "see {v}.",
]


def place(value, hint, special):
    """(metadata, shape) holding `value`; `hint` is a context word the value needs."""
    ctx = (hint + " ") if hint else ""
    if special == "bearer":
        shape = R.choice(["log", "text", "curl"])
        if shape == "log":
            return ({"log": f"INFO upstream call sent header Bearer {value} status=401"}, shape)
        if shape == "curl":
            return ({"command": f'curl -s -H "Authorization: Bearer {value}" https://api.example.com/v1'}, shape)
        return ({"note": f"client used bearer {value} for the call"}, shape)
    if special == "azure":
        return ({"conn": f"DefaultEndpointsProtocol=https;AccountName=acct{R.randrange(99)};AccountKey={value};EndpointSuffix=core.windows.net"}, "connection_string")
    if special and special.startswith("generic:"):
        key = special.split(":", 1)[1]
        shape = R.choice(["json", "kv", "env"])
        if shape == "json":
            return ({"config": {key: value}}, shape)
        if shape == "kv":
            return ({"args": f"mode=fast&{key}={value}&page=2"}, shape)
        return ({"env": f"REGION=us-east-1 {key.upper()}={value} DEBUG=0"}, shape)
    if special and special.startswith("secret:"):
        key = special.split(":", 1)[1]
        shape = R.choice(["json", "kv", "header"])
        if shape == "json":
            return ({"request": {"body": {key: value, "user": "svc"}}}, shape)
        if shape == "kv":
            return ({"query": f"user=svc&{key}={value}&page=2"}, shape)
        return ({"headers": f"{key}: {value}\nX-Request-Id: 42"}, shape)
    if special and "://" in special:
        shape = R.choice(["url", "log", "json"])
        if shape == "url":
            return ({"url": special}, shape)
        if shape == "log":
            return ({"log": f"WARN connecting to {special} failed: timeout"}, shape)
        return ({"datasource": {"dsn": special, "pool": 4}}, shape)
    if special == "url":
        return ({"webhook": f"https://{value}"}, "url")
    if special == "urlencoded":
        return ({"url": f"https://app.example.com/invite?email={value}&ref=mail"}, "url")
    if special == "display_name":
        return ({"from": f"{R.choice(FIRST).title()} {R.choice(['Smith', 'Jones'])} <{value}>"}, "display_name")
    shape = R.choice(["text", "kv", "json", "log", "json_string", "url"] if not hint else ["text", "json_key", "log", "kv_ctx"])
    if shape == "text":
        return ({R.choice(NEUTRAL_KEYS): ctx + R.choice(SENTENCES).format(v=value)}, shape)
    if shape == "kv":
        return ({"args": f"mode=fast&ref={value}&page=2"}, shape)
    if shape == "json":
        return ({"request": {"body": {"items": [{"ref": value, "qty": R.randrange(1, 9)}]}}}, shape)
    if shape == "log":
        return ({"log": f"2026-11-01T12:00:0{R.randrange(10)}Z INFO handler {ctx}{value} accepted"}, shape)
    if shape == "json_string":
        return ({"payload": json.dumps({"field": value, "n": R.randrange(100)})}, shape)
    if shape == "url":
        if any(c in value for c in " /?#&%\n"):
            return ({"note": "got " + value}, "text")
        return ({"url": f"https://api.example.com/v1/items?ref={value}&sort=asc"}, shape)
    if shape == "json_key":
        key = hint.lower().replace(" ", "_").replace("'", "").replace("#", "_no").replace(".", "")
        return ({"applicant": {key: value}}, shape)
    # kv_ctx
    return ({"form": f"name=J. Doe; {hint}: {value}; status=pending"}, shape)


# ---------------------------------------------------------------------------------------------
# Hard negatives.

def uuid4():
    h = "".join(R.choice(HEX) for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{R.choice('89ab')}{h[17:20]}-{h[20:]}"


def order_number():
    while True:
        n = R.choice("45") + "".join(str(R.randrange(10)) for _ in range(15))
        if not luhn_ok(n):
            return n


def bad_iban():
    iban = make_iban()
    wrong = "%02d" % ((int(iban[2:4]) + R.randrange(1, 90)) % 97 + 2)
    return iban[:2] + wrong + iban[4:]


def bad_btc():
    a = base58check(0)
    i = R.randrange(5, len(a) - 1)
    c = R.choice([x for x in B58 if x != a[i]])
    return a[:i] + c + a[i + 1:]


DECOYS = {
    "uuid": lambda: uuid4(),
    "uuid_upper": lambda: uuid4().upper(),
    "version": lambda: R.choice(["v", "", "release-"]) + ".".join(str(R.randrange(0, 30)) for _ in range(R.randrange(2, 4))),
    "version_four_part": lambda: ".".join(str(R.randrange(0, 20)) for _ in range(4)) + "." + str(R.randrange(10)),
    "order_number": order_number,
    "timestamp_iso": lambda: f"2026-{R.randrange(1, 13):02d}-{R.randrange(1, 29):02d}T{R.randrange(24):02d}:{R.randrange(60):02d}:{R.randrange(60):02d}.{R.randrange(1000):03d}Z",
    "timestamp_date": lambda: f"2026-{R.randrange(1, 13):02d}-{R.randrange(1, 29):02d}",
    "epoch_seconds": lambda: str(R.randrange(1_600_000_000, 1_800_000_000)),
    "epoch_millis": lambda: str(R.randrange(1_600_000_000_000, 1_800_000_000_000)),
    "md5": lambda: "".join(R.choice(HEX) for _ in range(32)),
    "sha256": lambda: "".join(R.choice(HEX) for _ in range(64)),
    "git_sha": lambda: "".join(R.choice(HEX) for _ in range(40)),
    "git_short_sha": lambda: "".join(R.choice(HEX) for _ in range(7)),
    "base64_blob": lambda: base64.b64encode(bytes(R.randrange(256) for _ in range(R.randrange(12, 60)))).decode(),
    "counter": lambda: str(R.randrange(10 ** 8, 10 ** 10)),
    "nine_digit_id": lambda: str(R.randrange(10 ** 8, 10 ** 9)),
    "phone_like_counter": lambda: f"{R.randrange(100, 999)}-{R.randrange(100, 999)}-{R.randrange(10000, 99999)}",
    "bad_iban": bad_iban,
    "bad_btc": bad_btc,
    "tx_hash": lambda: "0x" + "".join(R.choice(HEX) for _ in range(64)),
    "time_of_day": lambda: f"{R.randrange(24):02d}:{R.randrange(60):02d}:{R.randrange(60):02d}",
    "code_path": lambda: R.choice(["std::fmt::Display", "a::b::c", "crate::detectors::scan", "Foo::bar"]),
    "prefix_words": lambda: R.choice(["sk-learn", "task-1234567890", "ghp_short", "AKIA-docs", "xoxb", "glpat", "mask-" + rand(LOWER_ALNUM, 30), "pat.tern", "hf_token_name"]),
    "k8s_name": lambda: f"api-{rand(LOWER_ALNUM, 10)}-{rand(LOWER_ALNUM, 5)}",
    "semver_range": lambda: f">={R.randrange(10)}.{R.randrange(20)}.0 <{R.randrange(10, 20)}.0.0",
    "date_no_context": lambda: f"{R.randrange(1, 13):02d}/{R.randrange(1, 29):02d}/{R.randrange(1990, 2030)}",
    "decimal": lambda: f"{R.randrange(100000)}.{R.randrange(100)}",
}

DECOY_PLACES = [
    lambda v: ({"request_id": v}, "json"),
    lambda v: ({"note": f"processed {v} ok"}, "text"),
    lambda v: ({"args": f"id={v}&page=2"}, "kv"),
    lambda v: ({"log": f"INFO job {v} finished in 12ms"}, "log"),
    lambda v: ({"meta": {"build": {"ref": v}}}, "nested"),
    lambda v: ({"url": f"https://api.example.com/v1/items/{v}?sort=asc"}, "url"),
]


# ---------------------------------------------------------------------------------------------
# Hand-written cases, beyond what the generators vary.

HAND = [
    ("positive", "email", {"to": "Zoë O'Neil <zoe.oneil@example.com>, ops@example.org"}, ["zoe.oneil@example.com", "ops@example.org"]),
    ("positive", "credit_card", {"card": 4111111111111111}, ["4111111111111111"]),
    ("positive", "phone", {"note": "call (474) 977-6443 or +44 20 7946 0958"}, ["977-6443", "7946 0958"]),
    ("positive", "ipv6", {"peer": "[2001:db8::8a2e:370:7334]:443"}, ["2001:db8::8a2e:370:7334"]),
    ("positive", "private_key", {"key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n(truncated"}, ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"]),
    ("positive", "url_credentials", {"remote": "https://x-access-token:v1.9a8b7c6d5e4f3a2b1c0d@github.com/o/r.git"}, ["v1.9a8b7c6d5e4f3a2b1c0d"]),
    ("positive", "date_of_birth", {"patient": {"dob": "1984-07-09", "ward": 4}}, ["1984-07-09"]),
    ("positive", "us_passport", {"traveller": {"passport_number": "C03005988"}}, ["C03005988"]),
    ("decoy", "hand", {"versions": ["4.6.6", "2.16.28", "1.17.3", "10.0.19045"]}, ["4.6.6", "2.16.28", "1.17.3", "10.0.19045"]),
    ("decoy", "hand", {"note": "Bearer authentication is required"}, ["Bearer authentication is required"]),
    ("decoy", "hand", {"cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"}, ["-----BEGIN CERTIFICATE-----"]),
    ("decoy", "hand", {"latency_ms": 1762000000, "at": "2026-11-01 12:30:45+00:00"}, ["2026-11-01 12:30:45+00:00"]),
    ("decoy", "hand", {"idempotency_key": "a6cecc1b-78e5-4061-b311-d8a3c2ce6f44"}, ["a6cecc1b-78e5-4061-b311-d8a3c2ce6f44"]),
    ("decoy", "hand", {"api_version": "2024-06-01", "cache_key": "user:42:profile"}, ["2024-06-01", "user:42:profile"]),
    ("decoy", "hand", {"ssh": "ssh://git@github.com/acme/app.git"}, ["git@github.com"]),
]


def main():
    lines = []
    n = 0
    for name in sorted(GENERATORS):
        gen = GENERATORS[name]
        for _ in range(PER_DETECTOR):
            value, hint, special = gen()
            metadata, shape = place(value, hint, special)
            lines.append({"id": f"p{n:05d}", "kind": "positive", "detector": name, "shape": shape,
                          "metadata": metadata, "values": [value]})
            n += 1
    for cls in sorted(DECOYS):
        for _ in range(PER_DECOY_CLASS):
            value = DECOYS[cls]()
            metadata, shape = R.choice(DECOY_PLACES)(value)
            lines.append({"id": f"d{n:05d}", "kind": "decoy", "class": cls, "shape": shape,
                          "metadata": metadata, "values": [value]})
            n += 1
    for kind, label, metadata, values in HAND:
        line = {"id": f"h{n:05d}", "kind": kind, "shape": "hand", "metadata": metadata, "values": values}
        line["detector" if kind == "positive" else "class"] = label
        lines.append(line)
        n += 1
    text = "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines)
    if "--stdout" in sys.argv:
        sys.stdout.write(text)
        return
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.ndjson.gz")
    with open(path, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(text.encode())


if __name__ == "__main__":
    main()
