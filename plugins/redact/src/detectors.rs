//! Pattern detectors: the named PII and secret formats, and the scanner that finds them in a
//! string as byte spans. The matchers live in submodules by kind: [`numbers`] (SSNs, cards,
//! phones, IP addresses), [`email`], [`tokens`] (literal-prefixed secrets, including the
//! gitleaks rules ported as a data table, JWTs, bearer credentials, private keys, wallet
//! addresses; and the word-start loop that also triggers the next module's checks), [`pii`]
//! (IBANs, ITINs, routing, passport and driver's-licence numbers, dates of birth, MAC
//! addresses, wallet checksums, URL credentials) and [`context`] (the context words that gate
//! the weak ones). Names come from one list (`detectors!`), so they are a fixed, bounded set.
//!
//! Every detector is a small hand-written matcher rather than a regex. They run on every
//! string of every event, in Wasm as well as natively, so each one is gated by a cheap
//! prefilter: one pass over the bytes counts digits and notes which punctuation occurs, and
//! the literal prefixes of the token formats (`AKIA`, `ghp_`, `eyJ`, `-----BEGIN`, …) are only
//! looked for at word starts whose first three bytes can begin some prefix. Hand-written loops also
//! keep Wasm close to native speed: the SIMD that regex and Aho-Corasick searches use natively
//! is not available to a wasm32 build, and the searches that skip ahead to the next digit step
//! eight bytes at a time (`crate::swar`), since in Wasm every loop iteration also pays an
//! epoch check. Each scanner is kept out of line (`#[inline(never)]`): one function holding
//! all of them compiled slightly worse under Cranelift, and separate functions show up by name
//! in profiles.

pub mod context;
mod email;
mod numbers;
mod pii;
mod tokens;

use context::Context;
pub use context::Found;
use tokens::Anchors;

/// Declares [`Detector`], its config names and [`Detector::ALL`] from one list, so a name
/// cannot be missing from one of them.
macro_rules! detectors {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A named detector. The order is the tie-break when two detectors claim the same
        /// span: the more specific format comes first, so `token=ghp_…` is labelled
        /// `github_token`, not `secret`. Names are stable: they appear in configs, in
        /// `[REDACTED:<name>]` and in docs/REDACTION.md.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Detector {
            $($(#[$doc])* $variant,)*
            /// A value found by its key name (`password=…`, `"token": …`), not by its
            /// format. Not in [`Detector::ALL`]: it is configured through `secret_keys`, not
            /// `detectors`.
            Secret,
        }

        impl Detector {
            /// The pattern detectors, i.e. the names `detectors` and `actions` accept.
            pub const ALL: [Detector; Detector::COUNT - 1] = [$(Detector::$variant,)*];

            /// The config name, also the label in `[REDACTED:<name>]`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Detector::$variant => $name,)*
                    Detector::Secret => "secret",
                }
            }
        }
    };
}

detectors! {
    PrivateKey => "private_key",
    Jwt => "jwt",
    AwsAccessKey => "aws_access_key",
    GithubToken => "github_token",
    GitlabToken => "gitlab_token",
    SlackWebhook => "slack_webhook",
    SlackToken => "slack_token",
    StripeKey => "stripe_key",
    GoogleApiKey => "google_api_key",
    AnthropicKey => "anthropic_key",
    OpenaiKey => "openai_key",
    TwilioKey => "twilio_key",
    SendgridKey => "sendgrid_key",
    NpmToken => "npm_token",
    AzureStorageKey => "azure_storage_key",
    HuggingfaceToken => "huggingface_token",
    PypiToken => "pypi_token",
    ShopifyToken => "shopify_token",
    DigitaloceanToken => "digitalocean_token",
    OnepasswordToken => "onepassword_token",
    AdobeClientSecret => "adobe_client_secret",
    AgeSecretKey => "age_secret_key",
    AlibabaAccessKey => "alibaba_access_key",
    ArtifactoryToken => "artifactory_token",
    AwsBedrockKey => "aws_bedrock_key",
    ClickhouseKey => "clickhouse_key",
    ClojarsToken => "clojars_token",
    CloudflareOriginCaKey => "cloudflare_origin_ca_key",
    DatabricksToken => "databricks_token",
    DopplerToken => "doppler_token",
    DuffelToken => "duffel_token",
    DynatraceToken => "dynatrace_token",
    EasypostToken => "easypost_token",
    FacebookToken => "facebook_token",
    FlutterwaveKey => "flutterwave_key",
    FlyioToken => "flyio_token",
    FrameioToken => "frameio_token",
    GrafanaToken => "grafana_token",
    HarnessToken => "harness_token",
    HerokuKey => "heroku_key",
    InfracostToken => "infracost_token",
    LinearKey => "linear_key",
    NotionToken => "notion_token",
    OpenshiftToken => "openshift_token",
    PerplexityKey => "perplexity_key",
    PlanetscaleToken => "planetscale_token",
    PostmanKey => "postman_key",
    PrefectToken => "prefect_token",
    PulumiToken => "pulumi_token",
    ReadmeToken => "readme_token",
    RubygemsToken => "rubygems_token",
    ScalingoToken => "scalingo_token",
    SendinblueKey => "sendinblue_key",
    SentryToken => "sentry_token",
    SettlemintToken => "settlemint_token",
    ShippoToken => "shippo_token",
    SourcegraphToken => "sourcegraph_token",
    SquareToken => "square_token",
    VaultToken => "vault_token",
    Bearer => "bearer",
    UrlCredentials => "url_credentials",
    Email => "email",
    CreditCard => "credit_card",
    Iban => "iban",
    Ssn => "ssn",
    UsItin => "us_itin",
    UsBankRouting => "us_bank_routing",
    UsPassport => "us_passport",
    UsDriverLicense => "us_driver_license",
    CryptoWallet => "crypto_wallet",
    Phone => "phone",
    Ipv4 => "ipv4",
    Ipv6 => "ipv6",
    MacAddress => "mac_address",
    DateOfBirth => "date_of_birth",
    GenericSecret => "generic_secret",
}

impl Detector {
    /// Number of detectors including [`Detector::Secret`]; sizes per-detector tables.
    pub const COUNT: usize = Detector::Secret as usize + 1;

    /// The pattern detector called `name`.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// One finding: `text[start..end]` is sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub detector: Detector,
}

// ---------------------------------------------------------------------------------------------
// Byte classes. The matchers work on bytes: every boundary they test is an ASCII byte, so the
// spans they report always fall on UTF-8 character boundaries.

const DIGIT: u8 = 1;
const LOWER: u8 = 2;
const UPPER: u8 = 4;
const HEXLETTER: u8 = 8;
const ALPHA: u8 = LOWER | UPPER;
const ALNUM: u8 = DIGIT | ALPHA;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            DIGIT
        } else if c.is_ascii_lowercase() {
            LOWER
        } else if c.is_ascii_uppercase() {
            UPPER
        } else {
            0
        };
        if matches!(c, b'a'..=b'f' | b'A'..=b'F') {
            t[b] |= HEXLETTER;
        }
        b += 1;
    }
    t
};

const fn is_digit(b: u8) -> bool {
    CLASS[b as usize] & DIGIT != 0
}
const fn is_alnum(b: u8) -> bool {
    CLASS[b as usize] & ALNUM != 0
}
const fn is_hex(b: u8) -> bool {
    CLASS[b as usize] & (DIGIT | HEXLETTER) != 0
}
/// A byte that continues a word: ASCII letter or digit, `_`, or part of a non-ASCII character.
fn is_word(b: u8) -> bool {
    is_alnum(b) || b == b'_' || b >= 0x80
}

/// The enabled detectors, ready to scan.
pub struct Detectors {
    enabled: [bool; Detector::COUNT],
    anchors: Anchors,
    context: Context,
    /// Whether any of the weak identifiers found from digit runs is enabled.
    ids: bool,
}

/// Where a string sits: the raw text of the key of the JSON entry holding it and of that
/// entry's parent key (both empty outside metadata), and whether the text is the value of a
/// key that is secret-ish for `generic_secret`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Within<'a> {
    /// The metadata text the spans below are in.
    pub src: &'a str,
    /// The raw key (between its quotes) and its parent's, as byte ranges of `src`.
    pub key: (usize, usize),
    pub parent: (usize, usize),
    pub generic: bool,
}

impl Within<'_> {
    /// The keys' last 64 bytes at most: a long key costs no more. Only read when a weak
    /// candidate needs its context, so strings without one pay nothing for it.
    fn keys(&self) -> [&str; 2] {
        fn tail(src: &str, (a, b): (usize, usize)) -> &str {
            let mut from = a.max(b.saturating_sub(64));
            while from < b && !src.is_char_boundary(from) {
                from += 1;
            }
            src.get(from..b).unwrap_or("")
        }
        [tail(self.src, self.key), tail(self.src, self.parent)]
    }
}

/// What the scanners of one string share: the enabled detectors, the text, where it sits,
/// and the context words found so far.
pub(crate) struct Cx<'a> {
    detectors: &'a Detectors,
    s: &'a [u8],
    within: Within<'a>,
    found: &'a mut Found,
}

impl Cx<'_> {
    fn on(&self, d: Detector) -> bool {
        self.detectors.on(d)
    }

    /// Whether a context word of `d` is near `s[start..end]` (or in the key).
    fn near(&mut self, d: Detector, start: usize, end: usize) -> bool {
        let keys = self.within.keys();
        self.detectors.context.near(d, self.s, keys, start, end, self.found)
    }
}

impl Detectors {
    /// The detectors in `enabled_list` with the default context words and window.
    #[cfg(test)]
    pub fn new(enabled_list: &[Detector]) -> Detectors {
        Detectors::with_context(enabled_list, &[], context::DEFAULT_WINDOW)
    }

    /// The detectors in `enabled_list`; `words` replaces the default context words of the
    /// detectors it names; `window` is in characters.
    pub fn with_context(enabled_list: &[Detector], words: &[(Detector, Vec<String>)], window: usize) -> Detectors {
        let mut enabled = [false; Detector::COUNT];
        for &d in enabled_list {
            enabled[d as usize] = true;
        }
        let defaults: Vec<(Detector, Vec<String>)> = context::GATED
            .iter()
            .map(|&d| (d, context::default_words(d).iter().map(|w| w.to_string()).collect()))
            .collect();
        let list = |d: Detector| -> &[String] {
            if !enabled[d as usize] {
                return &[];
            }
            words
                .iter()
                .chain(&defaults)
                .find(|(x, _)| *x == d)
                .map_or(&[], |(_, w)| w.as_slice())
        };
        let context = Context::new(list, window);
        use Detector::*;
        let ids = [Ssn, UsItin, UsBankRouting, UsPassport, UsDriverLicense]
            .iter()
            .any(|&d| enabled[d as usize]);
        Detectors {
            enabled,
            anchors: Anchors::new(&enabled),
            context,
            ids,
        }
    }

    fn on(&self, d: Detector) -> bool {
        self.enabled[d as usize]
    }

    /// Append every finding in `text` to `hits` (unsorted, possibly overlapping). `within`
    /// says where the text sits (the keys are context for context words); `found` is a
    /// buffer for the context words. Returns what the prefilter saw that other passes can use.
    pub fn scan(&self, text: &str, within: Within, hits: &mut Vec<Hit>, found: &mut Found) -> Seen {
        use Detector::*;
        let s = text.as_bytes();
        let summary = Summary::of(s);
        found.reset();
        let mut cx = Cx {
            detectors: self,
            s,
            within,
            found,
        };
        if summary.at && self.on(Email) {
            email::scan_email(s, hits);
        }
        if summary.at && summary.colon && self.on(UrlCredentials) {
            pii::scan_url_credentials(s, hits);
        }
        if summary.digits >= 9 && summary.dash && (self.on(Ssn) || self.on(UsItin)) {
            numbers::scan_ssn(s, &cx, hits);
        }
        if summary.digits >= 13 && self.on(CreditCard) {
            numbers::scan_cards(s, hits);
        }
        if summary.digits >= 8 && self.on(Phone) {
            numbers::scan_phones(s, &mut cx, hits);
        }
        // An address has three dots; most strings with digits and a dot (versions, decimals,
        // host names) have fewer, and counting is cheaper than the scan.
        if summary.digits >= 4 && summary.dot && self.on(Ipv4) && has_three(s, b'.') {
            numbers::scan_ipv4(s, hits);
        }
        if summary.colon && self.on(Ipv6) {
            numbers::scan_ipv6(s, hits);
        }
        // Identifiers found from digit runs, checked at word starts by the anchored scan.
        // Every shape of these has five digits at least (`D12345`, `1 Apr 1990`).
        let want = pii::Want {
            ids: summary.digits >= 5 && self.ids,
            dates: summary.digits >= 5 && self.on(DateOfBirth),
            iban: summary.digits >= 10 && self.on(Iban),
        };
        // MAC addresses too: six hex pairs joined by five `:` or `-` (bit 1), or three quads
        // joined by two `.` (bit 2).
        let mut mac = 0;
        if s.len() >= 14 && self.on(MacAddress) {
            if summary.colon || summary.dash {
                mac |= 1;
            }
            if summary.dot {
                mac |= 2;
            }
        }
        if !self.anchors.is_empty() || want.any() || mac != 0 {
            tokens::scan_anchored(&self.anchors, s, &mut cx, want, mac, hits);
        }
        Seen {
            pairs: summary.colon || summary.equals,
            non_ascii: summary.non_ascii,
        }
    }
}

/// What [`Detectors::scan`]'s prefilter saw.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// A `=` or `:`, without which the string cannot hold a `key=value` secret
    /// ([`crate::secrets::SecretKeys::scan_pairs`] can then be skipped).
    pub pairs: bool,
    /// A non-ASCII byte, without which the normalised view is the string itself.
    pub non_ascii: bool,
}

/// Whether `byte` occurs at least three times in `s`.
fn has_three(s: &[u8], byte: u8) -> bool {
    memchr::memchr_iter(byte, s).nth(2).is_some()
}

/// What one pass over a string found out, to skip detectors that cannot match.
struct Summary {
    digits: usize,
    at: bool,
    dash: bool,
    dot: bool,
    colon: bool,
    equals: bool,
    non_ascii: bool,
}

impl Summary {
    fn of(s: &[u8]) -> Summary {
        // One table load per byte: the low bit counts digits, the others flag punctuation.
        const IS_DIGIT: u8 = 1;
        const AT: u8 = 2;
        const DASH: u8 = 4;
        const DOT: u8 = 8;
        const COLON: u8 = 16;
        const EQUALS: u8 = 32;
        const NON_ASCII: u8 = 64;
        const FLAGS: [u8; 256] = {
            let mut t = [0u8; 256];
            let mut d = b'0';
            while d <= b'9' {
                t[d as usize] = IS_DIGIT;
                d += 1;
            }
            t[b'@' as usize] = AT;
            // `%40` is a URL-encoded `@`.
            t[b'%' as usize] = AT;
            t[b'-' as usize] = DASH;
            t[b'.' as usize] = DOT;
            t[b':' as usize] = COLON;
            t[b'=' as usize] = EQUALS;
            let mut b = 0x80;
            while b < 256 {
                t[b] = NON_ASCII;
                b += 1;
            }
            t
        };
        let mut digits = 0;
        let mut flags = 0;
        for &b in s {
            let f = FLAGS[b as usize];
            digits += usize::from(f & IS_DIGIT);
            flags |= f;
        }
        Summary {
            digits,
            at: flags & AT != 0,
            dash: flags & DASH != 0,
            dot: flags & DOT != 0,
            colon: flags & COLON != 0,
            equals: flags & EQUALS != 0,
            non_ascii: flags & NON_ASCII != 0,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the detector tests of this module and its submodules.

    use super::*;

    pub fn all() -> Detectors {
        Detectors::new(&Detector::ALL)
    }

    /// The `(detector name, matched text)` pairs found in `text`, in order.
    pub fn find(text: &str) -> Vec<(&'static str, String)> {
        let mut hits = Vec::new();
        all().scan(text, Within::default(), &mut hits, &mut Found::default());
        hits.sort_by_key(|h| (h.start, h.detector));
        hits.iter()
            .map(|h| (h.detector.name(), text[h.start..h.end].to_owned()))
            .collect()
    }

    pub fn found(text: &str, name: &str) -> Vec<String> {
        find(text)
            .into_iter()
            .filter(|(d, _)| *d == name)
            .map(|(_, m)| m)
            .collect()
    }

    #[track_caller]
    pub fn assert_finds(name: &str, text: &str, expected: &str) {
        assert_eq!(found(text, name), vec![expected.to_owned()], "{name} in {text:?}");
    }

    #[track_caller]
    pub fn assert_nothing(text: &str) {
        assert_eq!(find(text), vec![], "expected no finding in {text:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for d in Detector::ALL {
            assert_eq!(Detector::from_name(d.name()), Some(d));
        }
        assert_eq!(Detector::from_name("secret"), None);
        assert_eq!(Detector::ALL.len() + 1, Detector::COUNT);
    }

    #[test]
    fn decoys_survive() {
        for decoy in [
            "a6cecc1b-78e5-4061-b311-d8a3c2ce6f44",
            "12345678-1234-5678-1234-567812345678",
            "version 4.6.6 and 2.16.28, client 1.17.3",
            "2026-11-01T00:00:00.000Z",
            "at 2026-11-01 12:30:45+00:00",
            "order 7066907439150008",
            "ticket 5634168587831012",
            "/repos/acme/app/issues/8381",
            "latency 1762000000",
            "build 10.0.19045",
            "std::fmt::Display",
            "12:30:45 and 1.2.3",
            "Bearer authentication is required",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "task-1234567890",
            "AKIAK0QIA9CN3K6CYMWGX",
        ] {
            assert_nothing(decoy);
        }
    }

    #[test]
    fn disabled_detectors_do_not_run() {
        let only_email = Detectors::new(&[Detector::Email]);
        let mut hits = Vec::new();
        only_email.scan(
            "bob@example.com 391-55-0476 AKIAK0QIA9CN3K6CYMWG 203.0.173.44",
            Within::default(),
            &mut hits,
            &mut Found::default(),
        );
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].detector, Detector::Email);
    }
}
