//! Formats that start with a literal: vendor tokens (gitleaks' rules with a distinctive
//! prefix, ported as rows of `TOKEN_RULES`: prefix, charset, length, further segments, entropy;
//! see docs/REDACTION.md for the rule ids), JWTs, bearer credentials, PEM private keys and
//! wallet addresses. Their prefixes are indexed by their first two bytes (and a set of allowed
//! third bytes) once at init and only tried at word starts. The same word-start loop hands
//! words that start with a digit or capitals to `pii::run_at` and hex words to `pii::mac_at`,
//! so those detectors walk no string of their own.

use super::pii::{Want, mac_at, run_at};
use super::{Cx, Detector, Hit, is_alnum, is_digit, is_hex};
use crate::runs::RunEnd;

/// Character sets of token bodies.
#[derive(Clone, Copy)]
enum Charset {
    /// `[A-Za-z0-9]`
    Alnum,
    /// `[A-Z0-9]`
    UpperAlnum,
    /// `[A-Za-z0-9_]`
    Word,
    /// `[A-Za-z0-9_-]` (base64url)
    B64Url,
    /// `[A-Za-z0-9+/=]` (base64)
    B64,
    /// `[0-9a-fA-F]`
    Hex,
    /// `[0-9a-f]`
    LowerHex,
    /// `[A-Za-z0-9-]`
    Dashed,
    /// `[A-Za-z0-9_./=-]`: URL paths and dotted tokens
    Path,
    /// `[0-9]`
    Digits,
    /// `[a-z0-9]`
    LowerAlnum,
    /// `[A-Za-z0-9_-]` (same bytes as base64url; named for the gitleaks `[\w-]` rules)
    WordDash,
    /// `[A-Za-z0-9_=-]`
    WordDashEq,
    /// `[A-Za-z0-9_=.-]`
    WordDashEqDot,
    /// The upper-case bech32 alphabet (`age` keys)
    Bech32Upper,
}

impl Charset {
    const COUNT: usize = Charset::Bech32Upper as usize + 1;

    /// One bit per charset for every byte: the token loops test a byte with one load.
    const TABLE: [u16; 256] = {
        let mut t = [0u16; 256];
        let mut b = 0;
        while b < 256 {
            let mut k = 0;
            while k < Charset::COUNT {
                if Charset::ALL[k].defines(b as u8) {
                    t[b] |= 1 << k;
                }
                k += 1;
            }
            b += 1;
        }
        t
    };

    const ALL: [Charset; Charset::COUNT] = [
        Charset::Alnum,
        Charset::UpperAlnum,
        Charset::Word,
        Charset::B64Url,
        Charset::B64,
        Charset::Hex,
        Charset::LowerHex,
        Charset::Dashed,
        Charset::Path,
        Charset::Digits,
        Charset::LowerAlnum,
        Charset::WordDash,
        Charset::WordDashEq,
        Charset::WordDashEqDot,
        Charset::Bech32Upper,
    ];

    #[inline]
    fn contains(self, b: u8) -> bool {
        Charset::TABLE[b as usize] & (1 << self as u16) != 0
    }

    /// The definition [`Charset::TABLE`] is built from.
    const fn defines(self, b: u8) -> bool {
        match self {
            Charset::Alnum => is_alnum(b),
            Charset::UpperAlnum => b.is_ascii_uppercase() || is_digit(b),
            Charset::Word => is_alnum(b) || b == b'_',
            Charset::B64Url => is_alnum(b) || b == b'_' || b == b'-',
            Charset::B64 => is_alnum(b) || b == b'+' || b == b'/' || b == b'=',
            Charset::Hex => is_hex(b),
            Charset::LowerHex => is_digit(b) || matches!(b, b'a'..=b'f'),
            Charset::Dashed => is_alnum(b) || b == b'-',
            Charset::Path => is_alnum(b) || matches!(b, b'_' | b'.' | b'/' | b'=' | b'-'),
            Charset::Digits => is_digit(b),
            Charset::LowerAlnum => is_digit(b) || b.is_ascii_lowercase(),
            Charset::WordDash => is_alnum(b) || b == b'_' || b == b'-',
            Charset::WordDashEq => is_alnum(b) || matches!(b, b'_' | b'-' | b'='),
            Charset::WordDashEqDot => is_alnum(b) || matches!(b, b'_' | b'-' | b'=' | b'.'),
            Charset::Bech32Upper => {
                let alphabet = b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";
                let mut i = 0;
                while i < alphabet.len() {
                    if alphabet[i] == b {
                        return true;
                    }
                    i += 1;
                }
                false
            }
        }
    }
}

/// A token that starts with a fixed literal: `prefix` then `min..=max` bytes of `body`, then
/// optionally further segments (`then`), each a separator byte (0: none) and a run.
struct TokenRule {
    detector: Detector,
    prefix: &'static str,
    body: Charset,
    min: usize,
    max: usize,
    /// Whether the prefix is part of the secret. `AccountKey=` names the field; `ghp_` is
    /// part of the token.
    mask_prefix: bool,
    then: &'static [Segment],
    /// Minimum Shannon entropy (bits per byte) of the whole match, as in the gitleaks rule
    /// (0: none).
    entropy: f32,
}

/// A further part of a structured token: `sep` (0: none), then `min..=max` bytes of `set`.
struct Segment {
    sep: u8,
    set: Charset,
    min: usize,
    max: usize,
}

const fn rule(detector: Detector, prefix: &'static str, body: Charset, min: usize, max: usize) -> TokenRule {
    TokenRule {
        detector,
        prefix,
        body,
        min,
        max,
        mask_prefix: true,
        then: &[],
        entropy: 0.0,
    }
}

/// A rule ported from gitleaks' config/gitleaks.toml: fixed length or range, optional
/// further segments, and the rule's entropy threshold.
const fn gl(
    detector: Detector,
    prefix: &'static str,
    body: Charset,
    min: usize,
    max: usize,
    then: &'static [Segment],
    entropy: f32,
) -> TokenRule {
    TokenRule {
        detector,
        prefix,
        body,
        min,
        max,
        mask_prefix: true,
        then,
        entropy,
    }
}

const fn seg(sep: u8, set: Charset, min: usize, max: usize) -> Segment {
    Segment { sep, set, min, max }
}

/// The literal-prefixed token formats (after gitleaks' rules). Lengths are a little looser
/// than the vendors' current formats so that older and newer token generations still match;
/// the boundary checks keep them from matching inside longer identifiers.
const TOKEN_RULES: &[TokenRule] = {
    use Charset::*;
    use Detector::*;
    &[
        rule(AwsAccessKey, "AKIA", UpperAlnum, 16, 16),
        rule(AwsAccessKey, "ASIA", UpperAlnum, 16, 16),
        rule(AwsAccessKey, "ABIA", UpperAlnum, 16, 16),
        rule(AwsAccessKey, "ACCA", UpperAlnum, 16, 16),
        rule(AwsAccessKey, "A3T", UpperAlnum, 17, 17),
        rule(GithubToken, "ghp_", Alnum, 30, 255),
        rule(GithubToken, "gho_", Alnum, 30, 255),
        rule(GithubToken, "ghu_", Alnum, 30, 255),
        rule(GithubToken, "ghs_", Alnum, 30, 255),
        rule(GithubToken, "ghr_", Alnum, 30, 255),
        rule(GithubToken, "github_pat_", Word, 22, 255),
        rule(GitlabToken, "glpat-", B64Url, 20, 255),
        rule(GitlabToken, "gldt-", B64Url, 20, 255),
        rule(GitlabToken, "glrt-", B64Url, 20, 255),
        rule(GitlabToken, "glptt-", B64Url, 20, 255),
        rule(GitlabToken, "glcbt-", B64Url, 20, 255),
        rule(GitlabToken, "glimt-", B64Url, 20, 255),
        rule(GitlabToken, "glsoat-", B64Url, 20, 255),
        rule(GitlabToken, "glffct-", B64Url, 20, 255),
        rule(GitlabToken, "gloas-", B64Url, 20, 255),
        rule(GitlabToken, "GR1348941", B64Url, 20, 255),
        rule(SlackWebhook, "hooks.slack.com/services/", Path, 20, 255),
        rule(SlackWebhook, "hooks.slack.com/workflows/", Path, 20, 255),
        rule(SlackWebhook, "hooks.slack.com/triggers/", Path, 20, 255),
        rule(SlackToken, "xoxa-", Dashed, 10, 255),
        rule(SlackToken, "xoxb-", Dashed, 10, 255),
        rule(SlackToken, "xoxp-", Dashed, 10, 255),
        rule(SlackToken, "xoxo-", Dashed, 10, 255),
        rule(SlackToken, "xoxr-", Dashed, 10, 255),
        rule(SlackToken, "xoxs-", Dashed, 10, 255),
        rule(SlackToken, "xoxe-", Dashed, 10, 255),
        rule(SlackToken, "xoxe.xoxp-", Dashed, 10, 255),
        rule(SlackToken, "xapp-", Dashed, 10, 255),
        rule(StripeKey, "sk_live_", Alnum, 10, 255),
        rule(StripeKey, "sk_test_", Alnum, 10, 255),
        rule(StripeKey, "sk_prod_", Alnum, 10, 255),
        rule(StripeKey, "rk_live_", Alnum, 10, 255),
        rule(StripeKey, "rk_test_", Alnum, 10, 255),
        rule(StripeKey, "rk_prod_", Alnum, 10, 255),
        rule(StripeKey, "whsec_", Alnum, 24, 255),
        rule(GoogleApiKey, "AIza", B64Url, 35, 35),
        rule(AnthropicKey, "sk-ant-", B64Url, 20, 255),
        rule(OpenaiKey, "sk-proj-", B64Url, 20, 255),
        rule(OpenaiKey, "sk-svcacct-", B64Url, 20, 255),
        rule(OpenaiKey, "sk-admin-", B64Url, 20, 255),
        rule(OpenaiKey, "sk-None-", B64Url, 20, 255),
        // Bare `sk-` is the legacy OpenAI format; 32+ characters keeps it off `sk-learn`-like
        // words, and leftmost-longest prefers the more specific prefixes above.
        rule(OpenaiKey, "sk-", B64Url, 32, 255),
        rule(TwilioKey, "SK", Hex, 32, 32),
        rule(SendgridKey, "SG.", Path, 60, 80),
        rule(NpmToken, "npm_", Alnum, 36, 36),
        TokenRule {
            detector: AzureStorageKey,
            prefix: "AccountKey=",
            body: B64,
            min: 80,
            max: 100,
            mask_prefix: false,
            then: &[],
            entropy: 0.0,
        },
        rule(HuggingfaceToken, "hf_", Alnum, 30, 40),
        rule(PypiToken, "pypi-AgEIcHlwaS5vcmc", B64Url, 50, 255),
        rule(ShopifyToken, "shpat_", Hex, 32, 32),
        rule(ShopifyToken, "shpca_", Hex, 32, 32),
        rule(ShopifyToken, "shppa_", Hex, 32, 32),
        rule(ShopifyToken, "shpss_", Hex, 32, 32),
        rule(DigitaloceanToken, "dop_v1_", LowerHex, 64, 64),
        rule(DigitaloceanToken, "doo_v1_", LowerHex, 64, 64),
        rule(DigitaloceanToken, "dor_v1_", LowerHex, 64, 64),
        // The rest: gitleaks' default rules (config/gitleaks.toml) that start with a
        // distinctive literal, as data: prefix, charset, length, further segments, entropy.
        // The rule ids are in docs/REDACTION.md.
        rule(GitlabToken, "glft-", B64Url, 20, 255),
        rule(GitlabToken, "glagent-", B64Url, 50, 255),
        rule(HuggingfaceToken, "api_org_", Alnum, 34, 34),
        gl(OnepasswordToken, "ops_eyJ", B64, 250, 4000, &[], 4.0),
        gl(AdobeClientSecret, "p8e-", Alnum, 32, 32, &[], 2.0),
        gl(AgeSecretKey, "AGE-SECRET-KEY-1", Bech32Upper, 58, 58, &[], 0.0),
        gl(AlibabaAccessKey, "LTAI", Alnum, 20, 20, &[], 2.0),
        gl(ArtifactoryToken, "AKCp", Alnum, 69, 69, &[], 4.5),
        gl(ArtifactoryToken, "cmVmd", Alnum, 59, 59, &[], 4.5),
        gl(AwsBedrockKey, "ABSK", B64, 109, 271, &[], 3.0),
        gl(ClickhouseKey, "4b1d", Alnum, 38, 38, &[], 3.0),
        gl(ClojarsToken, "CLOJARS_", Alnum, 60, 60, &[], 2.0),
        gl(
            CloudflareOriginCaKey,
            "v1.0-",
            Hex,
            24,
            24,
            &[seg(b'-', Hex, 146, 146)],
            2.0,
        ),
        gl(DatabricksToken, "dapi", Hex, 32, 32, &[], 3.0),
        gl(DopplerToken, "dp.pt.", Alnum, 43, 43, &[], 2.0),
        gl(DuffelToken, "duffel_test_", WordDashEq, 43, 43, &[], 2.0),
        gl(DuffelToken, "duffel_live_", WordDashEq, 43, 43, &[], 2.0),
        gl(
            DynatraceToken,
            "dt0c01.",
            Alnum,
            24,
            24,
            &[seg(b'.', Alnum, 64, 64)],
            4.0,
        ),
        gl(EasypostToken, "EZAK", Alnum, 54, 54, &[], 2.0),
        gl(EasypostToken, "EZTK", Alnum, 54, 54, &[], 2.0),
        gl(FacebookToken, "EAAM", Alnum, 100, 1000, &[], 4.0),
        gl(FacebookToken, "EAAC", Alnum, 100, 1000, &[], 4.0),
        gl(
            FlutterwaveKey,
            "FLWSECK_TEST-",
            Alnum,
            32,
            32,
            &[seg(b'-', Alnum, 1, 1)],
            2.0,
        ),
        gl(FlutterwaveKey, "FLWSECK_TEST-", Alnum, 12, 12, &[], 2.0),
        gl(FlyioToken, "fo1_", WordDash, 43, 43, &[], 4.0),
        gl(FlyioToken, "fm1a_", B64, 100, 4000, &[], 4.0),
        gl(FlyioToken, "fm1r_", B64, 100, 4000, &[], 4.0),
        gl(FlyioToken, "fm2_", B64, 100, 4000, &[], 4.0),
        gl(FrameioToken, "fio-u-", WordDashEq, 64, 64, &[], 0.0),
        gl(GrafanaToken, "glc_", B64, 32, 400, &[], 3.0),
        gl(GrafanaToken, "glsa_", Alnum, 32, 32, &[seg(b'_', Hex, 8, 8)], 3.0),
        gl(GrafanaToken, "eyJrIjoi", Alnum, 70, 400, &[], 3.0),
        gl(
            HarnessToken,
            "pat.",
            WordDash,
            22,
            22,
            &[seg(b'.', Alnum, 24, 24), seg(b'.', Alnum, 20, 20)],
            0.0,
        ),
        gl(
            HarnessToken,
            "sat.",
            WordDash,
            22,
            22,
            &[seg(b'.', Alnum, 24, 24), seg(b'.', Alnum, 20, 20)],
            0.0,
        ),
        gl(HerokuKey, "HRKU-AA", WordDash, 58, 58, &[], 4.0),
        gl(InfracostToken, "ico-", Alnum, 32, 32, &[], 3.0),
        gl(LinearKey, "lin_api_", Alnum, 40, 40, &[], 2.0),
        gl(NotionToken, "ntn_", Digits, 11, 11, &[seg(0, Alnum, 35, 35)], 4.0),
        gl(OpenshiftToken, "sha256~", WordDash, 43, 43, &[], 3.5),
        gl(PerplexityKey, "pplx-", Alnum, 48, 48, &[], 4.0),
        gl(PlanetscaleToken, "pscale_tkn_", WordDashEqDot, 32, 64, &[], 3.0),
        gl(PlanetscaleToken, "pscale_oauth_", WordDashEqDot, 32, 64, &[], 3.0),
        gl(PlanetscaleToken, "pscale_pw_", WordDashEqDot, 32, 64, &[], 3.0),
        gl(PostmanKey, "PMAK-", Hex, 24, 24, &[seg(b'-', Hex, 34, 34)], 3.0),
        gl(PrefectToken, "pnu_", Alnum, 36, 36, &[], 2.0),
        gl(PulumiToken, "pul-", Hex, 40, 40, &[], 2.0),
        gl(ReadmeToken, "rdme_", LowerAlnum, 70, 70, &[], 2.0),
        gl(RubygemsToken, "rubygems_", Hex, 48, 48, &[], 2.0),
        gl(ScalingoToken, "tk-us-", WordDash, 48, 48, &[], 2.0),
        gl(SendinblueKey, "xkeysib-", Hex, 64, 64, &[seg(b'-', Alnum, 16, 16)], 2.0),
        gl(SentryToken, "sntryu_", Hex, 64, 64, &[], 3.5),
        gl(SentryToken, "sntrys_eyJpYXQiO", B64, 60, 1000, &[], 4.5),
        gl(SettlemintToken, "sm_aat_", Alnum, 16, 16, &[], 3.0),
        gl(SettlemintToken, "sm_pat_", Alnum, 16, 16, &[], 3.0),
        gl(SettlemintToken, "sm_sat_", Alnum, 16, 16, &[], 3.0),
        gl(ShippoToken, "shippo_live_", Hex, 40, 40, &[], 2.0),
        gl(ShippoToken, "shippo_test_", Hex, 40, 40, &[], 2.0),
        gl(SourcegraphToken, "sgp_local_", Hex, 40, 40, &[], 3.0),
        gl(SourcegraphToken, "sgp_", Hex, 40, 40, &[], 3.0),
        gl(SourcegraphToken, "sgp_", Hex, 16, 16, &[seg(b'_', Hex, 40, 40)], 3.0),
        gl(SquareToken, "sq0atp-", WordDash, 22, 60, &[], 2.0),
        gl(SquareToken, "sq0csp-", WordDash, 43, 43, &[], 2.0),
        gl(SquareToken, "EAAA", WordDash, 22, 60, &[], 2.0),
        gl(VaultToken, "hvs.", WordDash, 90, 120, &[], 3.5),
        gl(VaultToken, "hvb.", WordDash, 138, 300, &[], 4.0),
    ]
};

/// Shannon entropy of `s` in bits per byte.
fn entropy(s: &[u8]) -> f32 {
    let mut counts = [0u32; 256];
    for &b in s {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// What a literal prefix introduces.
#[derive(Clone, Copy)]
enum Anchor {
    Token(&'static TokenRule),
    Jwt,
    Bearer,
    PrivateKey,
    /// `bc1…` (bech32) or `0x…` (Ethereum) wallet addresses.
    Wallet,
}

const BEARER_PREFIXES: [&str; 3] = ["Bearer ", "bearer ", "BEARER "];

/// The literal prefixes of the enabled anchored formats, indexed by their first two bytes.
pub(super) struct Anchors {
    /// `(first byte, second byte)` (both ASCII) → 1 + index into `groups`, or 0.
    bigrams: Vec<u8>,
    /// Prefixes sharing their first two bytes, longest first.
    groups: Vec<Vec<(&'static [u8], Anchor)>>,
    /// Whether words starting with `1` or `3` are checked as legacy Bitcoin addresses.
    base58: bool,
    /// Per group, the third bytes its prefixes allow (a 128-bit set; all of them if a prefix
    /// has only two bytes): `da`ta, `pa`th or `op`eration start a group's bigram but not its
    /// prefixes, and are ruled out here without a call.
    thirds: Vec<u128>,
}

impl Anchors {
    /// The prefixes of the enabled formats (`enabled` is indexed by detector).
    pub(super) fn new(enabled: &[bool; Detector::COUNT]) -> Anchors {
        let mut prefixes: Vec<(&'static str, Anchor)> = Vec::new();
        for rule in TOKEN_RULES.iter().filter(|r| enabled[r.detector as usize]) {
            prefixes.push((rule.prefix, Anchor::Token(rule)));
        }
        if enabled[Detector::Jwt as usize] {
            prefixes.push(("eyJ", Anchor::Jwt));
        }
        if enabled[Detector::Bearer as usize] {
            prefixes.extend(BEARER_PREFIXES.map(|p| (p, Anchor::Bearer)));
        }
        if enabled[Detector::PrivateKey as usize] {
            prefixes.push(("-----BEGIN ", Anchor::PrivateKey));
        }
        let base58 = enabled[Detector::CryptoWallet as usize];
        if base58 {
            prefixes.extend(["bc1", "BC1", "0x"].map(|p| (p, Anchor::Wallet)));
        }
        let mut bigrams = vec![0u8; 128 * 128];
        let mut groups: Vec<Vec<(&'static [u8], Anchor)>> = Vec::new();
        for (prefix, anchor) in prefixes {
            let p = prefix.as_bytes();
            let slot = usize::from(p[0]) * 128 + usize::from(p[1]);
            if bigrams[slot] == 0 {
                groups.push(Vec::new());
                bigrams[slot] = u8::try_from(groups.len()).expect("fewer than 255 prefix pairs");
            }
            groups[usize::from(bigrams[slot]) - 1].push((p, anchor));
        }
        for group in &mut groups {
            group.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        }
        let thirds = groups
            .iter()
            .map(|group| {
                group.iter().fold(0u128, |set, (p, _)| match p.get(2) {
                    Some(&c) if c < 128 => set | 1 << c,
                    _ => u128::MAX,
                })
            })
            .collect();
        Anchors {
            bigrams,
            groups,
            base58,
            thirds,
        }
    }

    /// Whether the third byte `c` (if any) can continue a prefix of `group`.
    #[inline]
    fn third_ok(&self, group: u8, c: Option<&u8>) -> bool {
        let set = self.thirds[usize::from(group) - 1];
        match c {
            Some(&c) if c < 128 => set & (1 << c) != 0,
            _ => set == u128::MAX,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty() && !self.base58
    }

    /// The group of prefixes whose first two bytes are `s[i..i + 2]`, if any (0: none).
    #[inline]
    fn group_at(&self, s: &[u8], i: usize) -> u8 {
        match (s.get(i), s.get(i + 1)) {
            (Some(&a), Some(&b)) if a < 128 && b < 128 => self.bigrams[usize::from(a) * 128 + usize::from(b)],
            _ => 0,
        }
    }
}

/// Every anchored format starts at a word start (its first byte is not preceded by a letter
/// or digit), so only word starts are looked at, and the rest of each word is skipped with one
/// class test per byte; the bigram table rules out nearly all word starts with one lookup.
#[inline(never)]
pub(super) fn scan_anchored(anchors: &Anchors, s: &[u8], cx: &mut Cx, want: Want, mac: u8, hits: &mut Vec<Hit>) {
    let n = s.len();
    let any_run = want.any();
    // Token bodies read so far, per charset: overlapping candidates read each byte once.
    let mut runs = [RunEnd::default(); Charset::COUNT];
    let mut i = 0;
    while i < n {
        let b = s[i];
        if !(is_alnum(b) || b == b'-') {
            i += 1;
            continue;
        }
        // `i` starts a word (or a run of dashes, for `-----BEGIN`). A word that starts with
        // a digit, or with one or two capitals and a digit, may be an identifier.
        if any_run {
            // A run continuing a dashed, dotted or slashed token (`…-4061-b311`, `1.2.3`) starts
            // no shape.
            let continues = i >= 2 && matches!(s[i - 1], b'-' | b'.' | b'/' | b'+') && is_alnum(s[i - 2]);
            let digit_at = if continues {
                None
            } else if is_digit(b) {
                Some(i)
            } else if b.is_ascii_uppercase() {
                match (s.get(i + 1), s.get(i + 2)) {
                    (Some(&c), _) if is_digit(c) => Some(i + 1),
                    (Some(&c), Some(&d)) if c.is_ascii_uppercase() && is_digit(d) => Some(i + 2),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(d) = digit_at
                && let Some(resume) = run_at(s, d, cx, want, hits)
            {
                i = resume;
                continue;
            }
        }
        // `00:1a:…`, `00-1A-…` (`mac & 1`), `001a.2b3c.4d5e` (`mac & 2`).
        if mac != 0
            && is_hex(b)
            && ((mac & 1 != 0 && matches!(s.get(i + 2), Some(b':' | b'-')))
                || (mac & 2 != 0 && s.get(i + 4) == Some(&b'.')))
            && let Some(resume) = mac_at(s, i, hits)
        {
            i = resume;
            continue;
        }
        let group = anchors.group_at(s, i);
        if group != 0
            && anchors.third_ok(group, s.get(i + 2))
            && let Some(resume) = anchored_at(anchors, group, s, i, &mut runs, hits)
        {
            i = resume;
            continue;
        }
        let start = i;
        i += 1;
        if b != b'-' {
            while i < n && is_alnum(s[i]) {
                i += 1;
            }
            if matches!(b, b'1' | b'3') && (25..=34).contains(&(i - start)) && anchors.base58 {
                base58_word(s, start, i, hits);
            }
        }
    }
}

/// A legacy Bitcoin address is a word of 25–34 base58 characters after `1` or `3`: check
/// the word `s[start..end]`. Out of line, like [`anchored_at`].
#[inline(never)]
fn base58_word(s: &[u8], start: usize, end: usize, hits: &mut Vec<Hit>) {
    if s.get(end) != Some(&b'_') && super::pii::base58check(&s[start..end]) {
        hits.push(Hit {
            start,
            end,
            detector: Detector::CryptoWallet,
        });
    }
}

/// Try the prefixes of `group` (those that could start at `i`), longest first, and record the
/// first format that matches. Returns where to resume scanning when the match is to be skipped
/// over. Out of line so the word-skipping loop around it stays small: Cranelift spills its
/// loop variables when the matchers are inlined into it.
#[inline(never)]
fn anchored_at(
    anchors: &Anchors,
    group: u8,
    s: &[u8],
    i: usize,
    runs: &mut [RunEnd; Charset::COUNT],
    hits: &mut Vec<Hit>,
) -> Option<usize> {
    for &(prefix, anchor) in &anchors.groups[usize::from(group) - 1] {
        // The bigram is known to match; compare the rest of the prefix byte by byte (a
        // `memcmp` call costs more than these few bytes).
        if !prefix
            .get(2..)
            .is_none_or(|rest| s.get(i + 2..i + prefix.len()).is_some_and(|t| t.iter().eq(rest)))
        {
            continue;
        }
        let end = i + prefix.len();
        let hit = match anchor {
            Anchor::Token(rule) => match_token(rule, s, i, end, &mut runs[rule.body as usize]),
            Anchor::Jwt => match_jwt(s, i),
            Anchor::Bearer => match_bearer(s, end),
            Anchor::PrivateKey => match_private_key(s, i, end),
            Anchor::Wallet => match_wallet(s, i),
        };
        if let Some(hit) = hit {
            hits.push(hit);
            // A bearer credential is often a format of its own (a JWT, a `ghp_` token): keep
            // looking inside it, and the merge labels the span by the more specific detector.
            return (hit.detector != Detector::Bearer).then_some(hit.end.max(i + 1));
        }
    }
    None
}

/// `start` is a word start (see [`scan_anchored`]); `body` is where the prefix ends.
///
/// The body's run is looked up in `run` (the runs of the body's charset read so far in this
/// string): reading each candidate's run to its end made `AccountKey=` or `sk-` repeated over a
/// long string quadratic (every repetition is a new candidate whose run reaches the end), and
/// reading only `max + 1` bytes of it still read every byte `max / 11` times.
fn match_token(rule: &TokenRule, s: &[u8], start: usize, body: usize, run: &mut RunEnd) -> Option<Hit> {
    // A run followed by a segment without a separator is taken at most `max` far (the next
    // segment may continue in the same charset); otherwise `max + 1`, to see it is too long.
    let glued = rule.then.first().is_some_and(|g| g.sep == 0);
    let limit = s.len().min(body.saturating_add(rule.max + usize::from(!glued)));
    let mut end = run.end(s, body, |b| rule.body.contains(b)).min(limit);
    // Trailing sentence punctuation is not part of a dotted token.
    if matches!(rule.body, Charset::Path) {
        if end == limit {
            // Over-long unless all that follows in the run is trailing punctuation. Only `.`
            // and `=` are read here, and they start no word, so no byte is read by more than
            // the few candidates within `max` bytes before it.
            while end < s.len() && matches!(s[end], b'.' | b'=') {
                end += 1;
            }
            if end < s.len() && rule.body.contains(s[end]) {
                return None;
            }
        }
        while end > body && matches!(s[end - 1], b'.' | b'=') {
            end -= 1;
        }
    }
    let len = end - body;
    if len < rule.min || len > rule.max {
        return None;
    }
    for (k, part) in rule.then.iter().enumerate() {
        if part.sep != 0 {
            if s.get(end) != Some(&part.sep) {
                return None;
            }
            end += 1;
        }
        let glued = rule.then.get(k + 1).is_some_and(|g| g.sep == 0);
        let from = end;
        let limit = s.len().min(from + part.max + usize::from(!glued));
        while end < limit && part.set.contains(s[end]) {
            end += 1;
        }
        if !(part.min..=part.max).contains(&(end - from)) {
            return None;
        }
    }
    if s.get(end).is_some_and(|&b| is_alnum(b)) {
        return None;
    }
    if rule.entropy > 0.0 && entropy(&s[start..end]) < rule.entropy {
        return None;
    }
    let start = if rule.mask_prefix { start } else { body };
    Some(Hit {
        start,
        end,
        detector: rule.detector,
    })
}

/// A `bc1…` or `0x…` wallet address: the whole word, checksum-checked (bech32).
fn match_wallet(s: &[u8], start: usize) -> Option<Hit> {
    let mut end = start;
    while end < s.len() && end - start <= 90 && is_alnum(s[end]) {
        end += 1;
    }
    let word = &s[start..end];
    let valid = !s.get(end).is_some_and(|&b| is_alnum(b) || b == b'_')
        && (super::pii::bech32(word) || super::pii::ethereum(word));
    valid.then_some(Hit {
        start,
        end,
        detector: Detector::CryptoWallet,
    })
}

fn b64url_run(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && Charset::B64Url.contains(s[i]) {
        i += 1;
    }
    i
}

/// `eyJ…` header, payload and signature (JWS, 3 parts) or the 5 parts of a JWE.
fn match_jwt(s: &[u8], start: usize) -> Option<Hit> {
    if start > 0 && Charset::B64Url.contains(s[start - 1]) {
        return None;
    }
    let mut end = b64url_run(s, start);
    if end - start < 10 {
        return None;
    }
    let mut parts = 1;
    while parts < 5 && s.get(end) == Some(&b'.') {
        let next = b64url_run(s, end + 1);
        // An unsigned token ends in an empty signature (`header.payload.`).
        if next == end + 1 && parts < 2 {
            break;
        }
        end = next;
        parts += 1;
    }
    (parts >= 3).then_some(Hit {
        start,
        end,
        detector: Detector::Jwt,
    })
}

/// The credential after `Bearer `; the scheme word is kept.
fn match_bearer(s: &[u8], mut i: usize) -> Option<Hit> {
    while s.get(i) == Some(&b' ') {
        i += 1;
    }
    let start = i;
    while i < s.len() && (is_alnum(s[i]) || matches!(s[i], b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')) {
        i += 1;
    }
    let token = &s[start..i];
    // Prose (`Bearer authentication`) is letters only; credentials are not.
    let credential = token.len() >= 8 && token.iter().any(|b| !b.is_ascii_alphabetic());
    credential.then_some(Hit {
        start,
        end: i,
        detector: Detector::Bearer,
    })
}

/// A PEM private-key block from `-----BEGIN … PRIVATE KEY-----` through its END line. Without
/// an END line (a truncated value) everything to the end of the string goes.
fn match_private_key(s: &[u8], start: usize, label: usize) -> Option<Hit> {
    let header_end = memchr::memmem::find(&s[label..s.len().min(label + 64)], b"-----")? + label;
    // Certificates and public keys use the same armour; only private keys are secrets.
    memchr::memmem::find(&s[label..header_end], b"PRIVATE KEY")?;
    let body = header_end + 5;
    let end = match memchr::memmem::find(&s[body..], b"-----END") {
        Some(e) => {
            let footer = body + e + 8;
            match memchr::memmem::find(&s[footer..s.len().min(footer + 64)], b"-----") {
                Some(f) => footer + f + 5,
                None => s.len(),
            }
        }
        None => s.len(),
    };
    Some(Hit {
        start,
        end,
        detector: Detector::PrivateKey,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::Charset;

    #[test]
    fn the_charset_table_holds_the_definitions() {
        for (k, charset) in Charset::ALL.iter().enumerate() {
            assert_eq!(*charset as usize, k, "ALL is in declaration order");
            for b in 0..=255u8 {
                assert_eq!(charset.contains(b), charset.defines(b), "charset {k}, byte {b}");
            }
        }
    }

    #[test]
    fn jwt_and_bearer() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJZ1wUVl4nuYV-d8fNYvvDbzDZST6IaXqA2h9Uz0-T.1SaQ6dDwxlGejkc5bJFIoxSLivuGvIL6P_8odNXR1yH";
        assert_finds("jwt", &format!("Bearer {jwt}"), jwt);
        assert_finds("bearer", &format!("Bearer {jwt}"), jwt);
        assert_finds("jwt", &format!("token={jwt}&x=1"), jwt);
        assert_finds("bearer", "Authorization: bearer abc123.def", "abc123.def");
        assert_eq!(
            found("xeyJhbGciOiJIUzI1NiJ9.a.b eyJhbGciOiJIUzI1NiJ9", "jwt"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn tokens() {
        let cases = [
            (
                "aws_access_key",
                "AWS_ACCESS_KEY_ID=AKIAK0QIA9CN3K6CYMWG REGION=x",
                "AKIAK0QIA9CN3K6CYMWG",
            ),
            ("aws_access_key", "ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
            (
                "github_token",
                "token=ghp_JN6U6PrPod6eWGP4xkGXY4nttSt2JxkSSVDM&page=2",
                "ghp_JN6U6PrPod6eWGP4xkGXY4nttSt2JxkSSVDM",
            ),
            (
                "github_token",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            ),
            (
                "slack_token",
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
            ),
            (
                "slack_webhook",
                "post https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX.",
                "hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            ),
            (
                "stripe_key",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (
                "google_api_key",
                "key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
                "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
            ),
            (
                "gitlab_token",
                "glpat-xxxxxxxxxxxxxxxxxxxx",
                "glpat-xxxxxxxxxxxxxxxxxxxx",
            ),
            (
                "openai_key",
                "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
                "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
            ),
            (
                "openai_key",
                "sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst",
                "sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst",
            ),
            (
                "anthropic_key",
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            ),
            (
                "twilio_key",
                "SK0123456789abcdef0123456789abcdef",
                "SK0123456789abcdef0123456789abcdef",
            ),
            (
                "sendgrid_key",
                "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",
                "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",
            ),
            (
                "npm_token",
                "npm_abcdefghijklmnopqrstuvwxyz0123456789",
                "npm_abcdefghijklmnopqrstuvwxyz0123456789",
            ),
            (
                "huggingface_token",
                "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
                "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
            ),
            (
                "shopify_token",
                "shpat_0123456789abcdef0123456789abcdef",
                "shpat_0123456789abcdef0123456789abcdef",
            ),
        ];
        for (name, text, expected) in cases {
            assert_finds(name, text, expected);
        }
        let azure_key = format!("{}==", "a1B2".repeat(21) + "cd");
        assert_finds(
            "azure_storage_key",
            &format!("DefaultEndpointsProtocol=https;AccountName=x;AccountKey={azure_key};EndpointSuffix=core"),
            &azure_key,
        );
        // Word starts after punctuation, including a dash, still count.
        assert_finds(
            "github_token",
            "x-ghp_JN6U6PrPod6eWGP4xkGXY4nttSt2JxkSSVDM",
            "ghp_JN6U6PrPod6eWGP4xkGXY4nttSt2JxkSSVDM",
        );
        assert_finds("aws_access_key", "id_AKIAK0QIA9CN3K6CYMWG", "AKIAK0QIA9CN3K6CYMWG");
        // Glued to a longer identifier, or too short: not a token.
        for decoy in [
            "xAKIAK0QIA9CN3K6CYMWG",
            "ghp_short",
            "mask-abcdefghijklmnopqrstuvwxyz0123456789",
            "TASK0123456789abcdef0123456789abcdef",
        ] {
            assert_nothing(decoy);
        }
    }

    #[test]
    fn bounded_reads_keep_the_length_rules() {
        // The body is read at most `max + 1` bytes far; what matches must not change.
        let body = "a".repeat(70);
        assert_finds("sendgrid_key", &format!("SG.{body}... next"), &format!("SG.{body}"));
        assert_finds(
            "sendgrid_key",
            &format!("SG.{}.", "b".repeat(80)),
            &format!("SG.{}", "b".repeat(80)),
        );
        assert_finds(
            "sendgrid_key",
            &format!("SG.{}{}", "b".repeat(80), ".".repeat(300)),
            &format!("SG.{}", "b".repeat(80)),
        );
        assert_nothing(&format!("SG.{}", "b".repeat(81)));
        assert_nothing(&format!("SG.{}...x", "b".repeat(80)));
        assert_nothing(&format!("ghp_{}", "a".repeat(256)));
        assert_finds(
            "github_token",
            &format!("ghp_{} x", "a".repeat(255)),
            &format!("ghp_{}", "a".repeat(255)),
        );
        let key = "A".repeat(88);
        assert_finds("azure_storage_key", &format!("AccountKey={key};"), &key);
        assert_nothing(&format!("AccountKey={}", "A".repeat(101)));
    }

    #[test]
    fn private_key_block() {
        let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc==\n-----END RSA PRIVATE KEY-----";
        assert_finds("private_key", &format!("key:\n{block}\nrest"), block);
        let openssh =
            "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\n-----END OPENSSH PRIVATE KEY-----";
        assert_finds("private_key", openssh, openssh);
        // Truncated: everything after the header goes.
        assert_finds(
            "private_key",
            "x -----BEGIN PRIVATE KEY-----\nMIIEvQ",
            "-----BEGIN PRIVATE KEY-----\nMIIEvQ",
        );
    }
}
