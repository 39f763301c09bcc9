//! Bearer tokens with scopes, compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use subtle::ConstantTimeEq as _;

use crate::Shared;
use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read streams, the log, stats; follow the live tail.
    Read,
    /// Append events.
    Append,
    /// Everything, including what operators do.
    Admin,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Append => "append",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "append" => Ok(Self::Append),
            "admin" => Ok(Self::Admin),
            other => Err(format!("`{other}` is not a scope (read, append, admin)")),
        }
    }
}

/// The accepted bearer tokens and the scopes of each.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<(Vec<u8>, Vec<Scope>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("Tokens")
            .field("count", &self.tokens.len())
            .finish()
    }
}

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// No tokens yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token with its scopes. A token shorter than [`MIN_TOKEN_LEN`] bytes, with
    /// whitespace, or given twice is refused.
    pub fn add(&mut self, token: &str, scopes: &[Scope]) -> Result<(), String> {
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "a token must be at least {MIN_TOKEN_LEN} characters long"
            ));
        }
        if token.chars().any(char::is_whitespace) {
            return Err("a token must not contain whitespace".to_owned());
        }
        if self.scopes(token).is_some() {
            return Err("a token is given twice".to_owned());
        }
        if scopes.is_empty() {
            return Err("a token needs at least one scope".to_owned());
        }
        self.tokens
            .push((token.as_bytes().to_vec(), scopes.to_vec()));
        Ok(())
    }

    /// Parses the token file format: one token per line, `TOKEN SCOPE[,SCOPE…]`; blank lines
    /// and lines starting with `#` are skipped. Errors name the line, never the token.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Self::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(token), Some(scopes), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("line {}: expected `TOKEN SCOPE[,SCOPE…]`", i + 1));
            };
            let scopes = scopes
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<Scope>, String>>()
                .map_err(|e| format!("line {}: {e}", i + 1))?;
            tokens
                .add(token, &scopes)
                .map_err(|e| format!("line {}: {e}", i + 1))?;
        }
        if tokens.tokens.is_empty() {
            return Err("no token in the file".to_owned());
        }
        Ok(tokens)
    }

    /// The scopes of `token`, compared with every known token in constant time.
    fn scopes(&self, token: &str) -> Option<&[Scope]> {
        let mut found = None;
        for (known, scopes) in &self.tokens {
            // Lengths differ in the clear (they are not secret); contents are compared in
            // constant time, and every token is compared.
            if bool::from(known.as_slice().ct_eq(token.as_bytes())) {
                found = Some(scopes.as_slice());
            }
        }
        found
    }
}

/// The scope a request needs: reads need `read`, writes `append`.
fn needed(method: &Method) -> Scope {
    if *method == Method::GET || *method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Append
    }
}

/// Refuses a request without a token (401) or whose token lacks the scope (403).
pub(crate) async fn require<S: Send + Sync + 'static>(
    State(shared): State<Arc<Shared<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(tokens) = &shared.config.tokens else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(scopes) = given.and_then(|t| tokens.scopes(t)) else {
        return ApiError::Unauthorized.into_response();
    };
    let need = needed(request.method());
    if !scopes.contains(&need) && !scopes.contains(&Scope::Admin) {
        return ApiError::Forbidden(need.name()).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file() {
        let t = Tokens::parse(
            "# readers\nreader-0123456789abcdef read\n\nwriter-0123456789abcdef read,append\n",
        )
        .unwrap();
        assert_eq!(
            t.scopes("reader-0123456789abcdef"),
            Some(&[Scope::Read][..])
        );
        assert_eq!(
            t.scopes("writer-0123456789abcdef"),
            Some(&[Scope::Read, Scope::Append][..])
        );
        assert_eq!(t.scopes("reader-0123456789abcdeX"), None);
        assert_eq!(t.scopes(""), None);
        let e = Tokens::parse("short read").unwrap_err();
        assert!(e.contains("line 1") && e.contains("16"), "{e}");
        assert!(!e.contains("short"), "the token is never printed: {e}");
        let e = Tokens::parse("reader-0123456789abcdef write").unwrap_err();
        assert!(e.contains("not a scope"), "{e}");
        assert!(Tokens::parse("# nothing\n").is_err());
        assert!(format!("{t:?}").contains("count: 2") && !format!("{t:?}").contains("reader"));
    }
}
