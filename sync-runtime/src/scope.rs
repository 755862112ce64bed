//! Scopes: the data partitions that changes, pulls and pokes belong to.

use crate::error::SyncError;

/// The scope of a request that names none (or an empty one).
pub const DEFAULT_SCOPE: &str = "_default";

/// The longest scope accepted, in UTF-8 bytes.
pub const MAX_SCOPE_BYTES: usize = 256;

/// Resolves a requested scope: absent or empty is [`DEFAULT_SCOPE`]; the rest is checked.
pub(crate) fn resolve_scope(scope: Option<&str>) -> Result<&str, SyncError> {
    match scope {
        None | Some("") => Ok(DEFAULT_SCOPE),
        Some(scope) => validate_scope(scope).map(|()| scope),
    }
}

/// Checks a scope against the protocol's rules: at most 256 bytes, no control characters.
pub(crate) fn validate_scope(scope: &str) -> Result<(), SyncError> {
    if scope.len() > MAX_SCOPE_BYTES {
        return Err(SyncError::InvalidScope(format!(
            "scope is {} bytes long; the limit is {MAX_SCOPE_BYTES}",
            scope.len()
        )));
    }
    if let Some(c) = scope.chars().find(|c| c.is_control()) {
        return Err(SyncError::InvalidScope(format!(
            "scope holds the control character U+{:04X}",
            u32::from(c)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_empty_are_the_default_scope() {
        assert_eq!(resolve_scope(None).ok(), Some("_default"));
        assert_eq!(resolve_scope(Some("")).ok(), Some("_default"));
        assert_eq!(resolve_scope(Some("team:42")).ok(), Some("team:42"));
        assert!(resolve_scope(Some("bad\nscope")).is_err());
    }

    #[test]
    fn limits_length_in_bytes() {
        assert!(validate_scope(&"a".repeat(256)).is_ok());
        assert!(validate_scope(&"a".repeat(257)).is_err());
        // 128 two-byte characters are 256 bytes; one more is over.
        assert!(validate_scope(&"é".repeat(128)).is_ok());
        assert!(validate_scope(&"é".repeat(129)).is_err());
    }

    #[test]
    fn rejects_c0_and_c1_controls() {
        for c in ['\u{0}', '\u{1f}', '\u{7f}', '\u{9f}'] {
            assert!(validate_scope(&format!("a{c}b")).is_err(), "{c:?}");
        }
        assert!(validate_scope("\u{a0}ok").is_ok());
    }
}
