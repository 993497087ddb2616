//! Bearer-token authentication and what each token may do.
//!
//! Tokens come from a file, typically a mounted Secret: one token per line, `NAME TOKEN`
//! (a bare `TOKEN` is an unnamed legacy token, named `api`); blank lines and `#` comments are
//! ignored. The file is looked at on every request and re-read whenever its identity, size,
//! modification or change time differ, so a rotated, replaced (the kubelet's symlink swap) or
//! emptied Secret takes effect without a restart. A file that becomes empty or unreadable
//! accepts no token at all (fail closed) until it is fixed. Tokens are compared in constant
//! time (for equal lengths; the length of a token is not a secret worth hiding).
//!
//! Authentication yields an [`Identity`]: the token's name and its [`TokenScope`] (from the
//! daemon configuration's `tokens:` list, else [`TokenScope::default`]). The name is who the
//! request is: runs are attributed to `api/NAME` and an ACK is recorded as NAME.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The name of a token written without one (`TOKEN` alone on its line).
pub const UNNAMED: &str = "api";

/// Namespaces `object.patch` may only touch when a scope lists them by name.
pub const PROTECTED_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];
/// Kinds `object.patch` may only touch when a scope lists them by name.
pub const PROTECTED_KINDS: &[&str] = &[
    "Secret",
    "Lease",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Why the tokens could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The tokens file could not be read.
    #[error("cannot read tokens file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no token: every request would be refused.
    #[error("tokens file {path} holds no token")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line is not `TOKEN` or `NAME TOKEN`.
    #[error("tokens file {path}, line {line}: expected `TOKEN` or `NAME TOKEN`")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

impl AuthError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            AuthError::Read { .. } => "tokens-read",
            AuthError::Empty { .. } => "tokens-empty",
            AuthError::Malformed { .. } => "tokens-malformed",
        }
    }
}

/// A part of the API a token may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Endpoint {
    /// `POST /v1/runs`.
    Runs,
    /// `POST /v1/runs/{id}/approvals/{step}`.
    Approve,
    /// `POST /v1/runs/{id}/cancel`.
    Cancel,
    /// `GET /v1/runs`, `GET /v1/runs/{id}`.
    Read,
    /// `GET /` (the status page).
    Status,
    /// `GET /metrics`.
    Metrics,
    /// `POST /v1/alertmanager`.
    Alertmanager,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Runs,
        Endpoint::Approve,
        Endpoint::Cancel,
        Endpoint::Read,
        Endpoint::Status,
        Endpoint::Metrics,
        Endpoint::Alertmanager,
    ];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Runs => "runs",
            Endpoint::Approve => "approve",
            Endpoint::Cancel => "cancel",
            Endpoint::Read => "read",
            Endpoint::Status => "status",
            Endpoint::Metrics => "metrics",
            Endpoint::Alertmanager => "alertmanager",
        }
    }
}

/// Which objects `object.patch` steps of a token's runs may write.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectPatchScope {
    /// Namespaces (`*`: any namespace but [`PROTECTED_NAMESPACES`], which must be named).
    #[serde(default = "star")]
    pub namespaces: Vec<String>,
    /// Kinds (`*`: any kind but [`PROTECTED_KINDS`], which must be named).
    #[serde(default = "star")]
    pub kinds: Vec<String>,
}

impl Default for ObjectPatchScope {
    fn default() -> Self {
        ObjectPatchScope {
            namespaces: star(),
            kinds: star(),
        }
    }
}

fn star() -> Vec<String> {
    vec!["*".to_string()]
}

fn allowed(list: &[String], value: &str, protected: &[&str]) -> bool {
    list.iter().any(|v| v == value)
        || (list.iter().any(|v| v == "*")
            && !protected.iter().any(|p| p.eq_ignore_ascii_case(value)))
}

// === impl ObjectPatchScope ===

impl ObjectPatchScope {
    /// True when an `object.patch` of `kind` in `namespace` (`None`: cluster-scoped) is
    /// allowed.
    pub fn allows(&self, namespace: Option<&str>, kind: &str) -> bool {
        allowed(&self.kinds, kind, PROTECTED_KINDS)
            && namespace.is_none_or(|ns| allowed(&self.namespaces, ns, PROTECTED_NAMESPACES))
    }
}

/// What a named token may do (`tokens:` in the daemon configuration).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenScope {
    /// The token's name (the `NAME` of its line in the tokens file).
    pub name: String,
    /// The endpoints it may call (default: all).
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<Endpoint>,
    /// The playbooks (built-in or from the playbooks directory) it may run by name
    /// (default `["*"]`: every one).
    #[serde(default = "star")]
    pub playbooks: Vec<String>,
    /// May it submit a playbook inline (`body`)? Default false.
    #[serde(default)]
    pub inline_playbooks: bool,
    /// What `object.patch` steps of its runs may write (default: any namespace and kind but
    /// the protected ones).
    #[serde(default)]
    pub object_patch: ObjectPatchScope,
}

fn default_endpoints() -> Vec<Endpoint> {
    Endpoint::ALL.to_vec()
}

impl Default for TokenScope {
    fn default() -> Self {
        TokenScope::named(UNNAMED)
    }
}

// === impl TokenScope ===

impl TokenScope {
    /// The default scope under `name`: every endpoint, every named playbook, no inline playbooks, `object.patch` outside the protected namespaces and
    /// kinds.
    pub fn named(name: &str) -> TokenScope {
        TokenScope {
            name: name.to_string(),
            endpoints: default_endpoints(),
            playbooks: star(),
            inline_playbooks: false,
            object_patch: ObjectPatchScope::default(),
        }
    }

    /// Everything, including inline playbooks and the protected objects (tests).
    pub fn unrestricted(name: &str) -> TokenScope {
        TokenScope {
            name: name.to_string(),
            endpoints: Endpoint::ALL.to_vec(),
            playbooks: star(),
            inline_playbooks: true,
            object_patch: ObjectPatchScope {
                namespaces: PROTECTED_NAMESPACES
                    .iter()
                    .map(|s| s.to_string())
                    .chain(star())
                    .collect(),
                kinds: PROTECTED_KINDS
                    .iter()
                    .map(|s| s.to_string())
                    .chain(star())
                    .collect(),
            },
        }
    }

    /// True when the token may call `endpoint`.
    pub fn may_call(&self, endpoint: Endpoint) -> bool {
        self.endpoints.contains(&endpoint)
    }

    /// True when the token may run the playbook `name` by name.
    pub fn may_run(&self, name: &str) -> bool {
        self.playbooks.iter().any(|p| p == "*" || p == name)
    }
}

/// Who a request is: the token's name and what it may do.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The token's name.
    pub name: String,
    /// Its scope.
    pub scope: Arc<TokenScope>,
}

/// The accepted bearer tokens.
pub struct Tokens {
    source: Option<PathBuf>,
    scopes: BTreeMap<String, Arc<TokenScope>>,
    state: Mutex<TokenState>,
}

/// (name, token) pairs.
type NamedTokens = Vec<(String, Vec<u8>)>;

struct TokenState {
    tokens: NamedTokens,
    stamp: Option<FileStamp>,
}

/// What identifies a version of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens.
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .field("scopes", &self.scopes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

// === impl Tokens ===

impl Tokens {
    /// Fixed tokens (tests, or tokens from the environment): each `TOKEN` or `NAME TOKEN`.
    pub fn fixed<I, S>(tokens: I) -> Tokens
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tokens = tokens
            .into_iter()
            .filter_map(|t| parse_line(t.as_ref()).ok().flatten())
            .collect();
        Tokens {
            source: None,
            scopes: BTreeMap::new(),
            state: Mutex::new(TokenState {
                tokens,
                stamp: None,
            }),
        }
    }

    /// Tokens from `path`; fails when the file is unreadable, malformed or empty.
    pub fn from_file(path: &Path) -> Result<Tokens, AuthError> {
        let (tokens, stamp) = read_tokens(path)?;
        if tokens.is_empty() {
            return Err(AuthError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Tokens {
            source: Some(path.to_path_buf()),
            scopes: BTreeMap::new(),
            state: Mutex::new(TokenState { tokens, stamp }),
        })
    }

    /// The same tokens with these scopes (by name; names without one get
    /// [`TokenScope::named`]).
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = TokenScope>) -> Tokens {
        self.scopes = scopes
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect();
        self
    }

    /// True when `presented` is one of the tokens.
    pub fn accepts(&self, presented: &str) -> bool {
        self.authenticate(presented).is_some()
    }

    /// True when `presented` is one of the tokens and its scope may call `endpoint` (the
    /// status page's login takes only tokens that may see the status page).
    pub fn accepts_for(&self, presented: &str, endpoint: Endpoint) -> bool {
        self.authenticate(presented)
            .is_some_and(|identity| identity.scope.may_call(endpoint))
    }

    /// The identity behind `presented`, if it is one of the tokens. Re-reads the file when it
    /// changed; an empty, malformed or unreadable file accepts nothing.
    pub fn authenticate(&self, presented: &str) -> Option<Identity> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.source {
            let now = stamp(path);
            if now != state.stamp || now.is_none() {
                match read_tokens(path) {
                    Ok((tokens, stamp)) => {
                        if tokens.is_empty() {
                            tracing::warn!(path = %path.display(), "tokens file is empty: no token is accepted");
                        } else if state.stamp.is_some() {
                            tracing::info!(path = %path.display(), count = tokens.len(), "tokens reloaded");
                        }
                        state.tokens = tokens;
                        state.stamp = stamp;
                    }
                    Err(err) => {
                        if state.stamp.is_some() || !state.tokens.is_empty() {
                            tracing::warn!(error = %err, category = err.category(), "cannot reload tokens: no token is accepted until the file is fixed");
                        }
                        state.tokens.clear();
                        state.stamp = None;
                    }
                }
            }
        }
        let presented = presented.as_bytes();
        // Compare against every token so the time does not depend on which one matched.
        let mut found: Option<&str> = None;
        for (name, token) in &state.tokens {
            if constant_time_eq(token, presented) && found.is_none() {
                found = Some(name);
            }
        }
        let name = found?.to_string();
        let scope = self
            .scopes
            .get(&name)
            .cloned()
            .unwrap_or_else(|| Arc::new(TokenScope::named(&name)));
        Some(Identity { name, scope })
    }
}

/// `TOKEN` → (`api`, TOKEN); `NAME TOKEN` → (NAME, TOKEN); blank and `#` lines → `None`.
fn parse_line(line: &str) -> Result<Option<(String, Vec<u8>)>, ()> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        [token] => Ok(Some((UNNAMED.to_string(), token.as_bytes().to_vec()))),
        [name, token] => Ok(Some((name.to_string(), token.as_bytes().to_vec()))),
        _ => Err(()),
    }
}

fn read_tokens(path: &Path) -> Result<(NamedTokens, Option<FileStamp>), AuthError> {
    let before = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(t)) => tokens.push(t),
            Ok(None) => {}
            Err(()) => {
                return Err(AuthError::Malformed {
                    path: path.to_path_buf(),
                    line: i + 1,
                });
            }
        }
    }
    Ok((tokens, before))
}

/// Compares two byte strings without an early exit on the first difference. Different
/// lengths compare unequal (after touching every byte of `b`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff: u8 = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        let other = a.get(i).copied().unwrap_or(!*byte);
        diff |= other ^ byte;
    }
    std::hint::black_box(diff) == 0
}

/// Extracts the token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn tokens_file_is_reloaded_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# ops\none\n\n two \n").unwrap();
        let tokens = Tokens::from_file(&path).unwrap();
        assert!(tokens.accepts("one"));
        assert!(tokens.accepts("two"));
        assert!(!tokens.accepts("three"));
        assert!(!tokens.accepts("# ops"));
        std::fs::write(&path, "three\n").unwrap();
        // Make sure the modification time differs even on coarse file systems.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(later).unwrap();
        assert!(tokens.accepts("three"));
        assert!(!tokens.accepts("one"));
    }

    #[test]
    fn issue13_emptied_or_replaced_tokens_file_takes_effect_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "alice old-token\n").unwrap();
        let tokens = Tokens::from_file(&path).unwrap();
        assert_eq!(tokens.authenticate("old-token").unwrap().name, "alice");
        // Replaced the way the kubelet updates a Secret volume: a new file renamed over the
        // old one, with the old modification time.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let next = dir.path().join("tokens.next");
        std::fs::write(&next, "bob new-token\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&next)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(!tokens.accepts("old-token"));
        assert_eq!(tokens.authenticate("new-token").unwrap().name, "bob");
        // Emptied: nothing is accepted any more (it used to keep the old tokens).
        std::fs::write(&path, "").unwrap();
        assert!(!tokens.accepts("new-token"));
        // Removed: the same.
        std::fs::write(&path, "bob new-token\n").unwrap();
        assert!(tokens.accepts("new-token"));
        std::fs::remove_file(&path).unwrap();
        assert!(!tokens.accepts("new-token"));
    }

    #[test]
    fn named_tokens_and_scopes() {
        let tokens =
            Tokens::fixed(["legacy", "am am-token", "# comment"]).with_scopes([TokenScope {
                endpoints: vec![Endpoint::Alertmanager],
                ..TokenScope::named("am")
            }]);
        let legacy = tokens.authenticate("legacy").unwrap();
        assert_eq!(legacy.name, UNNAMED);
        assert!(legacy.scope.may_call(Endpoint::Runs));
        assert!(!legacy.scope.inline_playbooks);
        let am = tokens.authenticate("am-token").unwrap();
        assert!(am.scope.may_call(Endpoint::Alertmanager));
        assert!(!am.scope.may_call(Endpoint::Runs));
        assert!(tokens.authenticate("am").is_none());
        assert!(tokens.authenticate("# comment").is_none());
    }

    #[test]
    fn object_patch_scope_protects_unless_listed() {
        let default = ObjectPatchScope::default();
        assert!(default.allows(Some("shop"), "ConfigMap"));
        assert!(default.allows(None, "Node"));
        assert!(!default.allows(Some("kube-system"), "Deployment"));
        assert!(!default.allows(Some("shop"), "Secret"));
        assert!(!default.allows(Some("shop"), "Lease"));
        let narrow = ObjectPatchScope {
            namespaces: vec!["shop".into(), "kube-system".into()],
            kinds: vec!["Deployment".into()],
        };
        assert!(narrow.allows(Some("kube-system"), "Deployment"));
        assert!(!narrow.allows(Some("other"), "Deployment"));
        assert!(!narrow.allows(Some("shop"), "ConfigMap"));
    }

    #[test]
    fn malformed_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "a b c\n").unwrap();
        assert_eq!(
            Tokens::from_file(&path).unwrap_err().category(),
            "tokens-malformed"
        );
    }

    #[test]
    fn empty_tokens_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "\n# nothing\n").unwrap();
        assert_eq!(
            Tokens::from_file(&path).unwrap_err().category(),
            "tokens-empty"
        );
    }
}
