//! Passwords: argon2id hashes in the PHC string format, and the length rule.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password accepted.
pub const MIN_LEN: usize = 10;

/// Longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_LEN: usize = 256;

/// Why a password cannot be set or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("a password needs {MIN_LEN} to {MAX_LEN} characters")]
    Length,
    /// The stored hash could not be read (a damaged database).
    #[error("the stored password hash is not readable: {0}")]
    BadHash(String),
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Checks the length rule.
pub fn check_rule(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if (MIN_LEN..=MAX_LEN).contains(&n) { Ok(()) } else { Err(PasswordError::Length) }
}

/// Hashes with argon2id and a fresh random salt (OWASP's default cost: 19 MiB, 2 passes).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_rule(password)?;
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `stored`.
pub fn verify(password: &str, stored: &str) -> Result<bool, PasswordError> {
    if password.chars().count() > MAX_LEN {
        return Ok(false);
    }
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::BadHash(e.to_string()))?;
    Ok(argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of nothing anyone knows, checked when the account does not exist so that a
/// wrong name costs as much time as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("no account has this password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash("correct horse battery").expect("hash");
        let b = hash("correct horse battery").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse battery", &a).expect("verify"));
        assert!(!verify("correct horse batterY", &a).expect("verify"));
        assert!(verify("x", "not a hash").is_err());
    }

    #[test]
    fn the_length_rule_counts_characters() {
        assert!(check_rule("short").is_err());
        assert!(check_rule("厨房安全十个字的密码").is_ok(), "ten CJK characters");
        assert!(check_rule(&"a".repeat(MAX_LEN + 1)).is_err());
        assert!(hash("123456789").is_err());
    }
}
