//! Single-use tokens sent by mail: 256 random bits, base64url in the link, SHA-256 in the database.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Length of the base64url text of 32 bytes.
pub const TOKEN_LENGTH: usize = 43;

/// A new token and the hash to store.
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

/// The stored form of a token: SHA-256, lowercase hex.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `token` could have been issued by [`generate`]; anything else is refused early.
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_LENGTH
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_hashed() {
        let (a, ha) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert!(is_well_formed(&a));
        assert_eq!(ha, hash(&a));
        assert_eq!(ha.len(), 64);
        assert!(!is_well_formed("short"));
        assert!(!is_well_formed(&format!("{}!", &a[..42])));
    }
}
