//! Who may post events: named bearer tokens, checked in constant time, and client
//! certificates verified by mutual TLS.
//!
//! Each `[[auth.tokens]]` entry has a name (recorded on every event it sends as `source`) and a
//! secret read from an environment variable or a file at startup. Only the secrets' SHA-256
//! digests are kept in memory. A presented token is hashed and compared with **every** stored
//! digest, with no early exit, so the time a check takes says nothing about which token (or how
//! much of one) matched; hashing first also makes every comparison the same length.
//!
//! Each `[[auth.clients]]` entry names a source and one property of a client certificate the
//! TLS listener verified against `server.tls.client_ca_file` ([`ClientIdentity`]): its subject
//! CN, one of its SAN DNS names, or one of its SAN URIs. A request on such a connection is
//! that source without a token. [`Auth`] holds both and is replaced as a whole on reload.

use std::fmt;

use axum::http::{HeaderMap, HeaderName, header};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{ClientCertConfig, Config};

/// What ingest authenticates requests with; rebuilt from the config on every reload.
#[derive(Debug)]
pub struct Auth {
    pub tokens: Tokens,
    pub clients: Clients,
}

impl Auth {
    /// Tokens (secrets read now) and client-certificate mappings of `config`.
    pub fn load(config: &Config) -> Result<Auth, String> {
        Ok(Auth {
            tokens: load(config)?,
            clients: Clients::new(&config.auth.clients),
        })
    }

    /// The source a request authenticates as: the verified client certificate's mapped name
    /// when there is one, else the bearer token's name.
    pub fn source<'a>(&'a self, client: Option<&ClientIdentity>, presented: Option<&[u8]>) -> Option<&'a str> {
        client
            .and_then(|c| self.clients.source(c))
            .or_else(|| presented.and_then(|t| self.tokens.authenticate(t)))
    }
}

/// The identity in a client certificate the TLS listener verified (mutual TLS); attached to
/// every request of that connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's first common name (CN), if any.
    pub common_name: Option<String>,
    /// Subject alternative names of type DNS.
    pub dns_names: Vec<String>,
    /// Subject alternative names of type URI (e.g. SPIFFE ids).
    pub uris: Vec<String>,
}

/// `[[auth.clients]]`: which verified client certificates are which source, first match wins.
#[derive(Debug, Default)]
pub struct Clients {
    entries: Vec<ClientCertConfig>,
}

impl Clients {
    pub fn new(entries: &[ClientCertConfig]) -> Clients {
        Clients {
            entries: entries.to_vec(),
        }
    }

    /// The name of the first entry `identity` matches: `subject_cn` and `san_uri` compare
    /// exactly, `san_dns` without regard to ASCII case (DNS names are case-insensitive).
    pub fn source(&self, identity: &ClientIdentity) -> Option<&str> {
        self.entries
            .iter()
            .find(|c| {
                c.subject_cn
                    .as_ref()
                    .is_some_and(|cn| identity.common_name.as_ref() == Some(cn))
                    || c.san_dns
                        .as_ref()
                        .is_some_and(|d| identity.dns_names.iter().any(|n| n.eq_ignore_ascii_case(d)))
                    || c.san_uri.as_ref().is_some_and(|u| identity.uris.contains(u))
            })
            .map(|c| c.name.as_str())
    }
}

/// The configured ingest tokens.
pub struct Tokens {
    names: Vec<String>,
    digests: Vec<[u8; 32]>,
}

/// Never prints the digests.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Tokens {
    /// Tokens from (name, secret) pairs. Empty secrets are skipped (they could only match an
    /// empty token, which [`Tokens::authenticate`] refuses anyway); [`load`] refuses them with a
    /// message instead.
    pub fn new(tokens: Vec<(String, Vec<u8>)>) -> Tokens {
        let (names, digests) = tokens
            .into_iter()
            .filter(|(_, secret)| !secret.is_empty())
            .map(|(name, secret)| (name, digest(&secret)))
            .unzip();
        Tokens { names, digests }
    }

    /// The name of the token `presented` matches, if any. Constant time in which token matched:
    /// every digest is compared and the match is selected without branching.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&str> {
        if presented.is_empty() {
            return None;
        }
        let presented = digest(presented);
        // 0 = no match, i + 1 = token i.
        let mut found: u32 = 0;
        for (i, stored) in self.digests.iter().enumerate() {
            let candidate = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found.conditional_assign(&candidate, stored[..].ct_eq(&presented[..]));
        }
        let i = usize::try_from(found).ok()?.checked_sub(1)?;
        self.names.get(i).map(String::as_str)
    }

    /// How many tokens are configured (with none, every request is refused).
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

/// The token in an `Authorization: Bearer <token>` header (scheme case-insensitive, surrounding
/// blanks ignored). None when the header is missing, another scheme, or empty.
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let split = value.iter().position(|&b| b == b' ' || b == b'\t')?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// SARK's gateway authenticates with `X-Gateway-Api-Key: <key>` instead of a bearer token
/// (`apathy-ca/sark`, `src/sark/api/routers/gateway.py`); the SARK route can accept this header
/// as an alternative, checked against the same [`Tokens`].
pub const GATEWAY_API_KEY: HeaderName = HeaderName::from_static("x-gateway-api-key");

/// The key in an `X-Gateway-Api-Key` header (surrounding blanks ignored), if any.
pub fn gateway_api_key(headers: &HeaderMap) -> Option<&[u8]> {
    let key = headers.get(GATEWAY_API_KEY)?.as_bytes().trim_ascii();
    (!key.is_empty()).then_some(key)
}

/// Read every configured token's secret from its environment variable or file (relative paths
/// against the config file's directory), trimmed of surrounding whitespace
/// ([`Config::read_secret_bytes`]).
///
/// Errors name the token and where its secret should have come from, never the secret: a
/// variable that is unset or empty, a file that cannot be read or is empty, a token with both
/// or neither of `env`/`file`, or two tokens with the same secret (which one sent an event
/// would be ambiguous). Several tokens may share a name (e.g. old and new during a rotation).
pub fn load(config: &Config) -> Result<Tokens, String> {
    let tokens = &config.auth.tokens;
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::with_capacity(tokens.len());
    for token in tokens {
        let name = &token.name;
        let secret = config
            .read_secret_bytes(token.env.as_deref(), token.file.as_deref())
            .map_err(|e| format!("auth token `{name}`: {e}"))?;
        if let Some((other, _)) = pairs.iter().find(|(_, s)| *s == secret) {
            return Err(format!(
                "auth tokens `{other}` and `{name}` have the same value; give each sender its own"
            ));
        }
        pairs.push((name.clone(), secret));
    }
    Ok(Tokens::new(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;
    use axum::http::HeaderValue;
    use std::path::{Path, PathBuf};

    /// [`super::load`] on a config holding just `tokens`, with `base` as its directory.
    fn load(tokens: &[TokenConfig], base: &Path) -> Result<Tokens, String> {
        let mut config = Config::parse("").unwrap();
        config.auth.tokens = tokens.to_vec();
        config.base_dir = base.to_owned();
        super::load(&config)
    }

    fn tokens() -> Tokens {
        Tokens::new(vec![
            ("sark-gateway".into(), b"s3cret-one".to_vec()),
            ("batch-job".into(), b"s3cret-two".to_vec()),
        ])
    }

    fn headers(authorization: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(authorization));
        h
    }

    fn env_token(name: &str, var: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            env: Some(var.into()),
            file: None,
        }
    }

    fn file_token(name: &str, file: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            env: None,
            file: Some(PathBuf::from(file)),
        }
    }

    fn client(name: &str, cn: Option<&str>, dns: Option<&str>, uri: Option<&str>) -> ClientCertConfig {
        ClientCertConfig {
            name: name.into(),
            subject_cn: cn.map(Into::into),
            san_dns: dns.map(Into::into),
            san_uri: uri.map(Into::into),
        }
    }

    #[test]
    fn client_certificates_map_to_sources_by_cn_dns_or_uri() {
        let clients = Clients::new(&[
            client("apiserver", Some("kube-apiserver"), None, None),
            client("gateway", None, Some("gw.example.internal"), None),
            client("mesh", None, None, Some("spiffe://example.org/ns/audit/sa/gw")),
        ]);
        let id = |cn: Option<&str>, dns: &[&str], uris: &[&str]| ClientIdentity {
            common_name: cn.map(Into::into),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(clients.source(&id(Some("kube-apiserver"), &[], &[])), Some("apiserver"));
        assert_eq!(
            clients.source(&id(Some("Kube-Apiserver"), &[], &[])),
            None,
            "CN is exact"
        );
        assert_eq!(
            clients.source(&id(None, &["other", "GW.example.internal"], &[])),
            Some("gateway")
        );
        assert_eq!(
            clients.source(&id(Some("x"), &[], &["spiffe://example.org/ns/audit/sa/gw"])),
            Some("mesh")
        );
        assert_eq!(
            clients.source(&id(Some("gw.example.internal"), &[], &[])),
            None,
            "a CN is not a SAN"
        );
        assert_eq!(clients.source(&ClientIdentity::default()), None);
    }

    #[test]
    fn a_mapped_certificate_wins_over_a_token_and_a_token_still_works_without_one() {
        let auth = Auth {
            tokens: tokens(),
            clients: Clients::new(&[client("apiserver", Some("kube-apiserver"), None, None)]),
        };
        let cert = ClientIdentity {
            common_name: Some("kube-apiserver".into()),
            ..Default::default()
        };
        assert_eq!(auth.source(Some(&cert), Some(b"s3cret-one")), Some("apiserver"));
        assert_eq!(auth.source(None, Some(b"s3cret-one")), Some("sark-gateway"));
        let unmapped = ClientIdentity::default();
        assert_eq!(auth.source(Some(&unmapped), Some(b"s3cret-two")), Some("batch-job"));
        assert_eq!(auth.source(Some(&unmapped), None), None);
    }

    #[test]
    fn right_token_authenticates_as_its_name() {
        let t = tokens();
        assert_eq!(t.authenticate(b"s3cret-one"), Some("sark-gateway"));
        assert_eq!(t.authenticate(b"s3cret-two"), Some("batch-job"));
    }

    #[test]
    fn wrong_or_empty_token_is_refused() {
        let t = tokens();
        assert_eq!(t.authenticate(b"s3cret-on"), None);
        assert_eq!(t.authenticate(b"s3cret-one "), None);
        assert_eq!(t.authenticate(b""), None);
        assert_eq!(Tokens::new(vec![]).authenticate(b"s3cret-one"), None);
    }

    #[test]
    fn empty_secret_never_matches() {
        let t = Tokens::new(vec![("empty".into(), Vec::new())]);
        assert!(t.is_empty());
        assert_eq!(t.authenticate(b""), None);
    }

    #[test]
    fn debug_output_shows_names_not_secrets() {
        let text = format!("{:?}", tokens());
        assert!(text.contains("sark-gateway"), "{text}");
        assert!(!text.contains("digests"), "{text}");
    }

    #[test]
    fn bearer_token_is_read_with_any_scheme_case() {
        assert_eq!(bearer(&headers("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers("BEARER abc")), Some(&b"abc"[..]));
    }

    #[test]
    fn missing_or_other_scheme_or_empty_bearer_is_none() {
        assert_eq!(bearer(&HeaderMap::new()), None);
        assert_eq!(bearer(&headers("Basic YWxhZGRpbjpvcGVu")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&headers("Bearerabc")), None);
    }

    #[test]
    fn gateway_api_key_header_is_read() {
        let mut h = HeaderMap::new();
        assert_eq!(gateway_api_key(&h), None);
        h.insert(GATEWAY_API_KEY, HeaderValue::from_static(" key-1 "));
        assert_eq!(gateway_api_key(&h), Some(&b"key-1"[..]));
    }

    // Each test uses its own variable names: tests run in parallel in one process.

    #[test]
    fn load_reads_env_and_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "  from-file\n").unwrap();
        // SAFETY: this variable is only touched by this test.
        unsafe { std::env::set_var("AUDITFLOW_TEST_AUTH_LOAD_OK", " from-env\n") };
        let t = load(
            &[env_token("a", "AUDITFLOW_TEST_AUTH_LOAD_OK"), file_token("b", "tok")],
            dir.path(),
        )
        .unwrap();
        assert_eq!(t.authenticate(b"from-env"), Some("a"));
        assert_eq!(t.authenticate(b"from-file"), Some("b"));
    }

    #[test]
    fn unset_or_empty_env_names_token_and_variable_not_value() {
        let e = load(&[env_token("gw", "AUDITFLOW_TEST_AUTH_UNSET")], Path::new(".")).unwrap_err();
        assert!(e.contains("`gw`") && e.contains("AUDITFLOW_TEST_AUTH_UNSET"), "{e}");
        // SAFETY: this variable is only touched by this test.
        unsafe { std::env::set_var("AUDITFLOW_TEST_AUTH_EMPTY", "  \n") };
        let e = load(&[env_token("gw", "AUDITFLOW_TEST_AUTH_EMPTY")], Path::new(".")).unwrap_err();
        assert!(
            e.contains("`gw`") && e.contains("AUDITFLOW_TEST_AUTH_EMPTY") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn missing_or_empty_file_names_token_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(&[file_token("gw", "nope.txt")], dir.path()).unwrap_err();
        assert!(e.contains("`gw`") && e.contains("nope.txt"), "{e}");
        std::fs::write(dir.path().join("blank"), "\n\n").unwrap();
        let e = load(&[file_token("gw", "blank")], dir.path()).unwrap_err();
        assert!(e.contains("`gw`") && e.contains("blank") && e.contains("empty"), "{e}");
    }

    #[test]
    fn two_tokens_with_the_same_value_are_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one"), "same-value").unwrap();
        std::fs::write(dir.path().join("two"), "same-value\n").unwrap();
        let e = load(&[file_token("a", "one"), file_token("b", "two")], dir.path()).unwrap_err();
        assert!(e.contains("`a`") && e.contains("`b`"), "{e}");
        assert!(!e.contains("same-value"), "{e}");
    }

    #[test]
    fn token_with_both_or_neither_source_is_refused() {
        let both = TokenConfig {
            name: "x".into(),
            env: Some("V".into()),
            file: Some("f".into()),
        };
        assert!(load(&[both], Path::new(".")).unwrap_err().contains("`x`"));
        let neither = TokenConfig {
            name: "y".into(),
            env: None,
            file: None,
        };
        assert!(load(&[neither], Path::new(".")).unwrap_err().contains("`y`"));
    }
}
