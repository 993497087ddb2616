//! Bearer-token authentication.
//!
//! Tokens come from a file (one per line, blank lines and `#` comments ignored), typically a
//! mounted Secret. The file is re-read when its modification time changes, so a rotated Secret
//! takes effect without a restart. Tokens are compared in constant time (for equal lengths;
//! the length of a token is not a secret worth hiding).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

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
}

impl AuthError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            AuthError::Read { .. } => "tokens-read",
            AuthError::Empty { .. } => "tokens-empty",
        }
    }
}

/// The accepted bearer tokens.
pub struct Tokens {
    source: Option<PathBuf>,
    state: Mutex<TokenState>,
}

struct TokenState {
    tokens: Vec<Vec<u8>>,
    modified: Option<SystemTime>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens.
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

// === impl Tokens ===

impl Tokens {
    /// Fixed tokens (tests, or tokens from the environment).
    pub fn fixed<I, S>(tokens: I) -> Tokens
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Tokens {
            source: None,
            state: Mutex::new(TokenState {
                tokens: tokens
                    .into_iter()
                    .map(|t| t.as_ref().trim().as_bytes().to_vec())
                    .filter(|t| !t.is_empty())
                    .collect(),
                modified: None,
            }),
        }
    }

    /// Tokens from `path`; fails when the file is unreadable or empty.
    pub fn from_file(path: &Path) -> Result<Tokens, AuthError> {
        let (tokens, modified) = read_tokens(path)?;
        if tokens.is_empty() {
            return Err(AuthError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Tokens {
            source: Some(path.to_path_buf()),
            state: Mutex::new(TokenState { tokens, modified }),
        })
    }

    /// True when `presented` is one of the tokens. Re-reads the file when it changed (a read
    /// failure keeps the previous tokens and logs).
    pub fn accepts(&self, presented: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.source {
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified.is_some() && modified != state.modified {
                match read_tokens(path) {
                    Ok((tokens, modified)) if !tokens.is_empty() => {
                        tracing::info!(path = %path.display(), count = tokens.len(), "tokens reloaded");
                        state.tokens = tokens;
                        state.modified = modified;
                    }
                    Ok(_) => {
                        tracing::warn!(path = %path.display(), "tokens file is empty; keeping the previous tokens")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot reload tokens; keeping the previous tokens")
                    }
                }
            }
        }
        let presented = presented.as_bytes();
        // Compare against every token so the time does not depend on which one matched.
        let mut ok = false;
        for token in &state.tokens {
            ok |= constant_time_eq(token, presented);
        }
        ok
    }
}

fn read_tokens(path: &Path) -> Result<(Vec<Vec<u8>>, Option<SystemTime>), AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let tokens = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    Ok((tokens, modified))
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
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(later).unwrap();
        assert!(tokens.accepts("three"));
        assert!(!tokens.accepts("one"));
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
