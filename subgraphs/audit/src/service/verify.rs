//! Verification of the log in the database: the chain and the checkpoints of a range, read a
//! chunk at a time into the one [`Verifier`], anchored just before the range.

use sea_orm::{DbErr, EntityTrait as _};

use super::{Audit, checkpoint_record};
use crate::{
    chain::{Anchor, BreakKind, TrustedKeys, Verification, Verifier},
    entity::{checkpoint, event},
};

/// Events read from the database at a time while verifying or exporting.
const READ_CHUNK: u64 = 1000;

impl Audit {
    pub async fn trusted_keys(&self) -> Result<TrustedKeys, DbErr> {
        let mut trusted = TrustedKeys::default();
        for key in self.keys().await? {
            if let Err(err) = trusted.add(&key.public_key) {
                tracing::error!(key_id = %key.key_id, %err, "a stored audit key is unusable");
            }
        }
        Ok(trusted)
    }

    /// Checks the chain and the checkpoints from `from` (default: the oldest event kept) to
    /// `to` (default: the last), reading the log a chunk at a time.
    pub async fn verify(&self, from: Option<i64>, to: Option<i64>) -> Result<Verification, DbErr> {
        let keys = self.trusted_keys().await?;
        let Some((oldest, last)) = self.bounds().await? else {
            // No events: every checkpoint still stands for a log that is now gone.
            let mut verifier = Verifier::new(keys, Anchor::Genesis);
            for c in self.checkpoint_range(1, None).await? {
                verifier.checkpoint(&c);
            }
            return Ok(verifier.finish(true));
        };
        let from = from.unwrap_or(oldest).max(1);
        let to_the_end = to.is_none_or(|to| to >= last);
        let to = to.unwrap_or(last).min(last);
        if from > to {
            // Nothing in this range.
            return Ok(Verifier::new(keys, Anchor::Genesis).finish(false));
        }
        let mut verifier = self.verifier_from(keys, from).await?;
        let checkpoints = self
            .checkpoint_range(from, (!to_the_end).then_some(to))
            .await?;
        let mut checkpoints = checkpoints.into_iter().peekable();
        let mut cursor = from;
        while cursor <= to && !verifier.is_broken() {
            let chunk = self.event_range(cursor, to, READ_CHUNK).await?;
            let Some(end) = chunk.last().map(|e| e.sequence) else {
                break;
            };
            for event in &chunk {
                // Checkpoints whose event is missing come before the next event: the
                // verifier reports the gap first.
                while let Some(c) = checkpoints.next_if(|c| c.sequence < event.sequence) {
                    verifier.checkpoint(&c);
                }
                verifier.event(event);
                while let Some(c) = checkpoints.next_if(|c| c.sequence == event.sequence) {
                    verifier.checkpoint(&c);
                }
            }
            cursor = end + 1;
        }
        for c in checkpoints {
            verifier.checkpoint(&c);
        }
        Ok(verifier.finish(to_the_end))
    }

    /// A verifier anchored just before `from`: the start of the log, the stored event
    /// `from - 1`, or the signed checkpoint at `from - 1` when that event is gone.
    pub async fn verifier_from(&self, keys: TrustedKeys, from: i64) -> Result<Verifier, DbErr> {
        if from <= 1 {
            return Ok(Verifier::new(keys, Anchor::Genesis));
        }
        let before = from - 1;
        if let Some(c) = checkpoint::Entity::find_by_id(before).one(&self.db).await? {
            return Ok(Verifier::new(
                keys,
                Anchor::Checkpoint(checkpoint_record(c)),
            ));
        }
        if let Some(e) = event::Entity::find_by_id(before).one(&self.db).await? {
            return Ok(Verifier::new(
                keys,
                Anchor::Event {
                    sequence: e.sequence,
                    hash: e.hash,
                },
            ));
        }
        let mut verifier = Verifier::new(keys, Anchor::Genesis);
        verifier.fail(
            from,
            BreakKind::NoAnchor,
            format!(
                "event {before} is not in the log and no signed checkpoint stands for it: events before {from} were removed outside retention"
            ),
        );
        Ok(verifier)
    }
}
