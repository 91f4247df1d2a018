//! The hash chain and its checkpoints: the canonical encoding of an event, its hash, the
//! message a checkpoint signs, and the [`Verifier`] that checks a run of events and
//! checkpoints. The database check (`verifyAuditLog`) and the offline check of an export
//! (`keygraph audit verify`) both feed this one verifier.
//!
//! The encodings are documented in `docs/audit.md` so that a tool of its own can recompute
//! every hash and check every signature.

use std::collections::{BTreeMap, HashMap};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, SubsecRound as _, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The `previousHash` of the first event: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// First element of an event's canonical encoding: names the encoding's version.
pub const EVENT_ENCODING: &str = "keygraph-audit-event-v1";
/// First line of a checkpoint's signed message.
pub const CHECKPOINT_ENCODING: &str = "keygraph-audit-checkpoint-v1";

/// A stored event with its chain fields, as the log holds it and as an export writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventRecord {
    pub sequence: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub service: String,
    pub action: String,
    pub actor_id: Option<Uuid>,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub metadata: Value,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
    pub previous_hash: String,
    pub hash: String,
}

impl EventRecord {
    /// The canonical encoding this event's hash covers (every field but the two hashes).
    pub fn canonical(&self) -> String {
        let array = Value::Array(vec![
            EVENT_ENCODING.into(),
            self.sequence.into(),
            self.id.to_string().into(),
            timestamp(&self.occurred_at).into(),
            timestamp(&self.received_at).into(),
            self.service.clone().into(),
            self.action.clone().into(),
            self.actor_id.map(|a| a.to_string()).into(),
            self.target_type.clone().into(),
            self.target_id.clone().into(),
            self.outcome.clone().into(),
            canonical_json(&self.metadata),
            self.request_id.clone().into(),
            self.client_address.clone().into(),
        ]);
        array.to_string()
    }

    /// The hash this event should carry after `previous_hash`.
    pub fn expected_hash(&self, previous_hash: &str) -> String {
        chain_hash(previous_hash, &self.canonical())
    }
}

/// `hex(SHA-256(previous_hash || "\n" || canonical))`.
pub fn chain_hash(previous_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex(&hasher.finalize())
}

/// A signed statement that the log held `sequence` events, the last with `head_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointRecord {
    pub sequence: i64,
    pub head_hash: String,
    pub created_at: DateTime<Utc>,
    pub key_id: String,
    /// Ed25519 signature of [`CheckpointRecord::message`], base64url without padding.
    pub signature: String,
}

impl CheckpointRecord {
    /// The bytes the signature covers.
    pub fn message(&self) -> String {
        format!(
            "{CHECKPOINT_ENCODING}\n{}\n{}\n{}\n{}",
            self.sequence,
            self.head_hash,
            timestamp(&self.created_at),
            self.key_id
        )
    }
}

/// Timestamps as the encodings write them: RFC 3339 in UTC with six fractional digits,
/// e.g. `2026-12-03T07:22:15.123456Z`. Stored times are cut to microseconds first (see
/// [`to_micros`]), so every backend gives back the time that was hashed.
pub fn timestamp(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `at` cut to whole microseconds, the precision Postgres keeps.
pub fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// JSON with every object's keys sorted (by UTF-16 code units, as RFC 8785 orders them) and
/// no insignificant whitespace once written.
pub fn canonical_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical_json(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The id of a public key: the first 16 hex digits of SHA-256 over its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

/// Signs checkpoints with the audit service's key.
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
}

impl CheckpointSigner {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(&key.verifying_key());
        Self { key, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, base64url of its raw 32 bytes (a JWK's `x`).
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// A checkpoint of the head `(sequence, head_hash)` at `created_at`, signed.
    pub fn sign(
        &self,
        sequence: i64,
        head_hash: &str,
        created_at: DateTime<Utc>,
    ) -> CheckpointRecord {
        let mut checkpoint = CheckpointRecord {
            sequence,
            head_hash: head_hash.to_owned(),
            created_at: to_micros(created_at),
            key_id: self.key_id.clone(),
            signature: String::new(),
        };
        let signature = self.key.sign(checkpoint.message().as_bytes());
        checkpoint.signature = URL_SAFE_NO_PAD.encode(signature.to_bytes());
        checkpoint
    }
}

/// The public keys checkpoints are checked against, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(HashMap<String, VerifyingKey>);

impl TrustedKeys {
    /// Adds a key given as base64url of its raw 32 bytes (a JWK's `x`).
    pub fn add(&mut self, x: &str) -> Result<String, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(x.trim().trim_end_matches('='))
            .map_err(|_| format!("`{x}` is not base64url"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("`{x}` is not a 32-byte Ed25519 public key"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| format!("`{x}` is not a valid Ed25519 public key"))?;
        let id = key_id(&key);
        self.0.insert(id.clone(), key);
        Ok(id)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `checkpoint` carries a valid signature by one of these keys; why not otherwise.
    fn check(&self, checkpoint: &CheckpointRecord) -> Result<(), (BreakKind, String)> {
        let Some(key) = self.0.get(&checkpoint.key_id) else {
            return Err((
                BreakKind::UnknownKey,
                format!(
                    "checkpoint {} is signed by key `{}`, which is not among the trusted keys",
                    checkpoint.sequence, checkpoint.key_id
                ),
            ));
        };
        let valid = URL_SAFE_NO_PAD
            .decode(&checkpoint.signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .is_some_and(|signature| {
                key.verify(checkpoint.message().as_bytes(), &signature)
                    .is_ok()
            });
        if valid {
            Ok(())
        } else {
            Err((
                BreakKind::BadSignature,
                format!(
                    "checkpoint {}'s signature does not verify: the checkpoint was changed or forged",
                    checkpoint.sequence
                ),
            ))
        }
    }
}

/// What a verification starts from.
#[derive(Debug, Clone)]
pub enum Anchor {
    /// The start of the log.
    Genesis,
    /// A stored event before the range, trusted as the range's predecessor.
    Event { sequence: i64, hash: String },
    /// A signed checkpoint just before the range (the events it covers may be gone).
    Checkpoint(CheckpointRecord),
}

/// How the chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[graphql(name = "AuditBreakKind")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakKind {
    /// Sequences are missing: events were removed.
    MissingEvent,
    /// An event's content no longer gives its hash: it was changed.
    ContentChanged,
    /// An event's `previousHash` is not its predecessor's hash: events were reordered,
    /// removed or inserted (or a changed event's hash was recomputed).
    ChainBroken,
    /// A checkpoint names a head hash the log does not have at its sequence.
    CheckpointMismatch,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// A checkpoint is signed by a key that is not trusted.
    UnknownKey,
    /// A checkpoint signed a longer log than there is: events were removed from its end.
    Truncated,
    /// The range has nothing to start from: the event before it is gone and no checkpoint
    /// stands for it.
    NoAnchor,
    /// Records are out of order (an export edited by hand, or not an export).
    OutOfOrder,
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Break {
    pub sequence: i64,
    pub event_id: Option<Uuid>,
    pub kind: BreakKind,
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub valid: bool,
    /// First and last sequence checked; none when there were no events.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub events_checked: u64,
    pub checkpoints_checked: u64,
    /// The highest sequence a valid signed checkpoint covers.
    pub signed_through: Option<i64>,
    pub first_break: Option<Break>,
}

/// Checks events (in sequence order) and checkpoints (each after the event it signs).
pub struct Verifier {
    keys: TrustedKeys,
    next: i64,
    previous: String,
    /// The last event (or the anchor) checked: its sequence and hash.
    head: Option<(i64, String)>,
    first: Option<i64>,
    events: u64,
    checkpoints: u64,
    signed_through: Option<i64>,
    /// Checkpoints ahead of the events seen so far, by sequence.
    ahead: BTreeMap<i64, CheckpointRecord>,
    broken: Option<Break>,
}

impl Verifier {
    pub fn new(keys: TrustedKeys, anchor: Anchor) -> Self {
        let mut verifier = Self {
            keys,
            next: 1,
            previous: GENESIS_HASH.to_owned(),
            head: None,
            first: None,
            events: 0,
            checkpoints: 0,
            signed_through: None,
            ahead: BTreeMap::new(),
            broken: None,
        };
        match anchor {
            Anchor::Genesis => {}
            Anchor::Event { sequence, hash } => {
                verifier.next = sequence + 1;
                verifier.previous = hash.clone();
                verifier.head = Some((sequence, hash));
            }
            Anchor::Checkpoint(checkpoint) => {
                verifier.next = checkpoint.sequence + 1;
                verifier.previous = checkpoint.head_hash.clone();
                verifier.head = Some((checkpoint.sequence, checkpoint.head_hash.clone()));
                verifier.checkpoint(&checkpoint);
            }
        }
        verifier
    }

    /// Whether a break has been found (the rest need not be read).
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Records a break found outside the verifier (e.g. a range with no anchor).
    pub fn fail(&mut self, sequence: i64, kind: BreakKind, message: String) {
        if self.broken.is_none() {
            self.broken = Some(Break {
                sequence,
                event_id: None,
                kind,
                message,
            });
        }
    }

    pub fn event(&mut self, event: &EventRecord) {
        if self.broken.is_some() {
            return;
        }
        let fail = |kind, message| Break {
            sequence: event.sequence,
            event_id: Some(event.id),
            kind,
            message,
        };
        if event.sequence != self.next {
            self.broken = Some(if event.sequence > self.next {
                Break {
                    sequence: self.next,
                    event_id: None,
                    kind: BreakKind::MissingEvent,
                    message: if event.sequence == self.next + 1 {
                        format!("event {} is missing", self.next)
                    } else {
                        format!("events {} to {} are missing", self.next, event.sequence - 1)
                    },
                }
            } else {
                fail(
                    BreakKind::OutOfOrder,
                    format!(
                        "event {} comes where event {} should: events are out of order",
                        event.sequence, self.next
                    ),
                )
            });
            return;
        }
        if event.previous_hash != self.previous {
            self.broken = Some(fail(
                BreakKind::ChainBroken,
                format!(
                    "event {}'s previousHash is not the hash of event {}: events were reordered, removed or inserted before it",
                    event.sequence,
                    event.sequence - 1
                ),
            ));
            return;
        }
        if event.expected_hash(&event.previous_hash) != event.hash {
            self.broken = Some(fail(
                BreakKind::ContentChanged,
                format!(
                    "event {}'s content does not match its hash: it was changed",
                    event.sequence
                ),
            ));
            return;
        }
        self.events += 1;
        self.first.get_or_insert(event.sequence);
        self.next = event.sequence + 1;
        self.previous.clone_from(&event.hash);
        self.head = Some((event.sequence, event.hash.clone()));
        if let Some(waiting) = self.ahead.remove(&event.sequence) {
            self.checkpoint(&waiting);
        }
    }

    pub fn checkpoint(&mut self, checkpoint: &CheckpointRecord) {
        if self.broken.is_some() {
            return;
        }
        let fail = |kind, message| Break {
            sequence: checkpoint.sequence,
            event_id: None,
            kind,
            message,
        };
        if let Err((kind, message)) = self.keys.check(checkpoint) {
            self.broken = Some(fail(kind, message));
            return;
        }
        match &self.head {
            Some((sequence, hash)) if *sequence == checkpoint.sequence => {
                if *hash != checkpoint.head_hash {
                    self.broken = Some(fail(
                        BreakKind::CheckpointMismatch,
                        format!(
                            "checkpoint {} signed a head hash the log does not have at {}: events up to it were changed",
                            checkpoint.sequence, checkpoint.sequence
                        ),
                    ));
                    return;
                }
                self.checkpoints += 1;
                self.signed_through = Some(checkpoint.sequence);
            }
            Some((sequence, _)) if *sequence > checkpoint.sequence => {
                self.broken = Some(fail(
                    BreakKind::OutOfOrder,
                    format!(
                        "checkpoint {} comes after event {}: a checkpoint follows the event it signs",
                        checkpoint.sequence, sequence
                    ),
                ));
            }
            _ => {
                self.ahead.insert(checkpoint.sequence, checkpoint.clone());
            }
        }
    }

    /// The outcome. `to_the_end`: the events run to the log's end, so a checkpoint beyond
    /// the last of them means events were removed from the end.
    pub fn finish(mut self, to_the_end: bool) -> Verification {
        if self.broken.is_none()
            && to_the_end
            && let Some((&sequence, _)) = self.ahead.iter().next_back()
        {
            let last = self.head.as_ref().map_or(0, |(s, _)| *s);
            self.broken = Some(Break {
                sequence: last + 1,
                event_id: None,
                kind: BreakKind::Truncated,
                message: format!(
                    "checkpoint {sequence} signed a log of {sequence} events, but it ends at {last}: events were removed from its end"
                ),
            });
        }
        Verification {
            valid: self.broken.is_none(),
            from: self.first,
            to: self.first.and(self.head.as_ref().map(|(s, _)| *s)),
            events_checked: self.events,
            checkpoints_checked: self.checkpoints,
            signed_through: self.signed_through,
            first_break: self.broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: i64, previous: &str) -> EventRecord {
        let at = to_micros(
            DateTime::parse_from_rfc3339("2026-12-03T10:00:00.123456789Z")
                .expect("time")
                .with_timezone(&Utc),
        );
        let mut e = EventRecord {
            sequence,
            id: Uuid::from_u128(sequence as u128),
            occurred_at: at,
            received_at: at,
            service: "identity".into(),
            action: "identity.user.registered".into(),
            actor_id: None,
            target_type: "user".into(),
            target_id: Some("u1".into()),
            outcome: "success".into(),
            metadata: serde_json::json!({"b": 1, "a": {"z": true, "é": null, "y": [2, {"d": 1, "c": 2}]}}),
            request_id: Some("req-1".into()),
            client_address: Some("127.0.0.2".into()),
            previous_hash: previous.into(),
            hash: String::new(),
        };
        e.hash = e.expected_hash(previous);
        e
    }

    fn chain(n: i64) -> Vec<EventRecord> {
        let mut out: Vec<EventRecord> = Vec::new();
        for s in 1..=n {
            let previous = out
                .last()
                .map_or(GENESIS_HASH.to_owned(), |e| e.hash.clone());
            out.push(event(s, &previous));
        }
        out
    }

    fn keys(signer: &CheckpointSigner) -> TrustedKeys {
        let mut keys = TrustedKeys::default();
        keys.add(&signer.public_key()).expect("key");
        keys
    }

    #[test]
    fn canonical_encoding_is_fixed() {
        // The documented example (docs/audit.md): a change here breaks every stored chain.
        let e = event(1, GENESIS_HASH);
        assert_eq!(
            e.canonical(),
            r#"["keygraph-audit-event-v1",1,"00000000-0000-0000-0000-000000000001","2026-12-03T10:00:00.123456Z","2026-12-03T10:00:00.123456Z","identity","identity.user.registered",null,"user","u1","success",{"a":{"y":[2,{"c":2,"d":1}],"z":true,"é":null},"b":1},"req-1","127.0.0.2"]"#
        );
        assert_eq!(e.hash, chain_hash(GENESIS_HASH, &e.canonical()));
        assert_eq!(e.hash.len(), 64);
    }

    #[test]
    fn an_intact_chain_with_checkpoints_verifies() {
        let signer = CheckpointSigner::from_seed(&[7; 32]);
        let events = chain(5);
        let mut v = Verifier::new(keys(&signer), Anchor::Genesis);
        for e in &events {
            v.event(e);
            if e.sequence == 3 || e.sequence == 5 {
                v.checkpoint(&signer.sign(e.sequence, &e.hash, Utc::now()));
            }
        }
        let report = v.finish(true);
        assert!(report.valid, "{report:?}");
        assert_eq!((report.from, report.to), (Some(1), Some(5)));
        assert_eq!(report.events_checked, 5);
        assert_eq!(report.checkpoints_checked, 2);
        assert_eq!(report.signed_through, Some(5));
    }

    fn first_break(
        events: &[EventRecord],
        checkpoints: &[CheckpointRecord],
        signer: &CheckpointSigner,
    ) -> Break {
        let mut v = Verifier::new(keys(signer), Anchor::Genesis);
        for e in events {
            v.event(e);
            for c in checkpoints.iter().filter(|c| c.sequence == e.sequence) {
                v.checkpoint(c);
            }
        }
        for c in checkpoints
            .iter()
            .filter(|c| events.iter().all(|e| e.sequence != c.sequence))
        {
            v.checkpoint(c);
        }
        v.finish(true).first_break.expect("a break")
    }

    #[test]
    fn each_kind_of_tampering_is_found_where_it_happened() {
        let signer = CheckpointSigner::from_seed(&[7; 32]);
        let events = chain(6);
        let head = signer.sign(6, &events[5].hash, Utc::now());

        let mut changed = events.clone();
        changed[2].outcome = "failure".into();
        let b = first_break(&changed, &[], &signer);
        assert_eq!((b.sequence, b.kind), (3, BreakKind::ContentChanged));

        let mut rehashed = events.clone();
        rehashed[2].outcome = "failure".into();
        rehashed[2].hash = rehashed[2].expected_hash(&rehashed[2].previous_hash);
        let b = first_break(&rehashed, &[], &signer);
        assert_eq!((b.sequence, b.kind), (4, BreakKind::ChainBroken));

        let mut removed = events.clone();
        removed.remove(3);
        let b = first_break(&removed, &[], &signer);
        assert_eq!((b.sequence, b.kind), (4, BreakKind::MissingEvent));

        let mut swapped = events.clone();
        swapped.swap(1, 2);
        swapped[1].sequence = 2;
        swapped[2].sequence = 3;
        let b = first_break(&swapped, &[], &signer);
        assert_eq!(b.sequence, 2);

        let truncated = &events[..4];
        let b = first_break(truncated, std::slice::from_ref(&head), &signer);
        assert_eq!((b.sequence, b.kind), (5, BreakKind::Truncated));

        let mut forged = head.clone();
        forged.head_hash = events[4].hash.clone();
        let b = first_break(&events, &[forged], &signer);
        assert_eq!((b.sequence, b.kind), (6, BreakKind::BadSignature));

        let other = CheckpointSigner::from_seed(&[9; 32]);
        let b = first_break(
            &events,
            &[other.sign(6, &events[5].hash, Utc::now())],
            &signer,
        );
        assert_eq!(b.kind, BreakKind::UnknownKey);
    }

    #[test]
    fn a_range_verifies_from_a_checkpoint_when_earlier_events_are_gone() {
        let signer = CheckpointSigner::from_seed(&[7; 32]);
        let events = chain(6);
        let anchor = signer.sign(3, &events[2].hash, Utc::now());
        let mut v = Verifier::new(keys(&signer), Anchor::Checkpoint(anchor));
        for e in &events[3..] {
            v.event(e);
        }
        let report = v.finish(true);
        assert!(report.valid, "{report:?}");
        assert_eq!(
            (report.from, report.to, report.signed_through),
            (Some(4), Some(6), Some(3))
        );
    }
}
