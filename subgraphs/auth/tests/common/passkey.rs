//! A software passkey for tests: a P-256 key that answers WebAuthn options as a browser and
//! an authenticator would (`none` attestation, user present and verified, a signature
//! counter), for one origin. Cloning it makes the copy an attacker would have.

// Included by the auth tests and by the router journey (tests/mfa.rs); each uses part of it.
#![allow(dead_code)]

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use p256::ecdsa::{DerSignature, SigningKey, signature::Signer as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const BACKUP_ELIGIBLE: u8 = 0x08;
const ATTESTED_DATA: u8 = 0x40;

#[derive(Clone)]
pub struct SoftPasskey {
    key: SigningKey,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
    rp_id: String,
    pub counter: u32,
    /// The origin its answers claim (the page's, as the browser reports it).
    pub origin: String,
    /// Whether it says it syncs (a backup-eligible passkey).
    pub backup_eligible: bool,
}

fn text(options: &Value, pointer: &str) -> String {
    options
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {options}"))
        .to_owned()
}

/// A CBOR head: major type and length (RFC 8949 §3).
fn head(major: u8, len: usize, out: &mut Vec<u8>) {
    let major = major << 5;
    match len {
        0..=23 => out.push(major | len as u8),
        24..=255 => out.extend([major | 24, len as u8]),
        _ => {
            out.push(major | 25);
            out.extend((len as u16).to_be_bytes());
        }
    }
}

fn cbor_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    head(2, bytes.len(), out);
    out.extend(bytes);
}

fn cbor_text(text: &str, out: &mut Vec<u8>) {
    head(3, text.len(), out);
    out.extend(text.as_bytes());
}

impl SoftPasskey {
    /// Answers registration options (`PasskeyOptions.options`) as `navigator.credentials.create()`
    /// would on `origin`: the passkey, and the credential JSON to send.
    pub fn create(options: &Value, origin: &str) -> (Self, Value) {
        let seed: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
            .iter()
            .flat_map(|u| *u.as_bytes())
            .collect();
        let key = SigningKey::from_slice(&seed).expect("a P-256 key");
        let mut credential_id = vec![0u8; 16];
        credential_id.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let passkey = Self {
            key,
            credential_id,
            user_handle: URL_SAFE_NO_PAD
                .decode(text(options, "/publicKey/user/id"))
                .expect("user id"),
            rp_id: text(options, "/publicKey/rp/id"),
            counter: 0,
            origin: origin.to_owned(),
            backup_eligible: false,
        };
        let credential = passkey.attest(options);
        (passkey, credential)
    }

    /// The same, for a passkey that syncs between devices.
    pub fn create_synced(options: &Value, origin: &str) -> (Self, Value) {
        let (mut passkey, _) = Self::create(options, origin);
        passkey.backup_eligible = true;
        let credential = passkey.attest(options);
        (passkey, credential)
    }

    fn flags(&self, extra: u8) -> u8 {
        let backup = if self.backup_eligible {
            BACKUP_ELIGIBLE
        } else {
            0
        };
        USER_PRESENT | USER_VERIFIED | backup | extra
    }

    fn client_data(&self, kind: &str, options: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": text(options, "/publicKey/challenge"),
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .expect("client data")
    }

    fn attest(&self, options: &Value) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut cose = Vec::new();
        head(5, 5, &mut cose);
        cose.extend([0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21]);
        cbor_bytes(point.x().expect("x"), &mut cose);
        cose.push(0x22);
        cbor_bytes(point.y().expect("y"), &mut cose);
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags(ATTESTED_DATA));
        auth_data.extend(self.counter.to_be_bytes());
        auth_data.extend([0u8; 16]);
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(cose);
        let mut attestation = Vec::new();
        head(5, 3, &mut attestation);
        cbor_text("fmt", &mut attestation);
        cbor_text("none", &mut attestation);
        cbor_text("attStmt", &mut attestation);
        head(5, 0, &mut attestation);
        cbor_text("authData", &mut attestation);
        cbor_bytes(&auth_data, &mut attestation);
        let id = URL_SAFE_NO_PAD.encode(&self.credential_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(attestation),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(self.client_data("webauthn.create", options)),
            },
            "extensions": {},
        })
    }

    /// Answers authentication options as `navigator.credentials.get()` would: the credential
    /// JSON, its counter one higher.
    pub fn get(&mut self, options: &Value) -> Value {
        self.counter += 1;
        let client_data = self.client_data("webauthn.get", options);
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags(0));
        auth_data.extend(self.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature: DerSignature = self.key.sign(&signed);
        let id = URL_SAFE_NO_PAD.encode(&self.credential_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data),
                "signature": URL_SAFE_NO_PAD.encode(signature.as_bytes()),
                "userHandle": URL_SAFE_NO_PAD.encode(&self.user_handle),
            },
            "extensions": {},
        })
    }
}
