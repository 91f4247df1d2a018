//! `keygraph audit export` and `keygraph audit verify`: the log as NDJSON, and its offline
//! check with nothing but the file and the audit service's public key.
//!
//! An export is one JSON object per line: a header, then (for a range that does not start
//! at the log's beginning) the checkpoint the range starts from, then the events in
//! sequence order, each followed by the checkpoints that sign it.

use std::io::{BufRead, Write};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    chain::{
        Anchor, BreakKind, CheckpointRecord, EventRecord, TrustedKeys, Verification, Verifier,
    },
    service::Audit,
};

/// The `format` of an export's header line.
pub const FORMAT: &str = "keygraph-audit-export";
pub const VERSION: u32 = 1;

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Line {
    Header(Header),
    Checkpoint(CheckpointRecord),
    Event(Box<EventRecord>),
}

/// The first line: what the file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub exported_at: DateTime<Utc>,
    /// First and last sequence of the events that follow (none when the log was empty).
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub events: u64,
    pub checkpoints: u64,
}

/// Writes events `from..=to` (default: everything the log holds) with their checkpoints.
/// An export that runs to the head first signs a checkpoint there, so the whole file is
/// covered by a signature.
pub async fn export(
    audit: &Audit,
    from: Option<i64>,
    to: Option<i64>,
    out: &mut impl Write,
) -> anyhow::Result<ExportSummary> {
    let bounds = audit.bounds().await?;
    let range = bounds.map(|(oldest, last)| {
        (
            from.unwrap_or(oldest).max(oldest),
            to.unwrap_or(last).min(last),
        )
    });
    if range.is_some_and(|(_, to)| bounds.is_some_and(|(_, last)| to == last)) {
        audit.checkpoint().await?;
    }
    let range = range.filter(|(from, to)| from <= to);
    let mut summary = ExportSummary {
        events: 0,
        checkpoints: 0,
    };
    let mut write = |line: &Line| -> anyhow::Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    write(&Line::Header(Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        exported_at: Utc::now(),
        from: range.map(|(f, _)| f),
        to: range.map(|(_, t)| t),
    }))?;
    let Some((from, to)) = range else {
        return Ok(summary);
    };
    if from > 1
        && let Some(anchor) = audit.checkpoint_at(from - 1).await?
    {
        write(&Line::Checkpoint(anchor))?;
        summary.checkpoints += 1;
    }
    let checkpoints = audit.checkpoint_range(from, Some(to)).await?;
    let mut checkpoints = checkpoints.into_iter().peekable();
    let mut cursor = from;
    while cursor <= to {
        let chunk = audit.event_range(cursor, to, 1000).await?;
        let Some(end) = chunk.last().map(|e| e.sequence) else {
            break;
        };
        for event in chunk {
            let sequence = event.sequence;
            while let Some(c) = checkpoints.next_if(|c| c.sequence < sequence) {
                write(&Line::Checkpoint(c))?;
                summary.checkpoints += 1;
            }
            write(&Line::Event(Box::new(event)))?;
            summary.events += 1;
            while let Some(c) = checkpoints.next_if(|c| c.sequence == sequence) {
                write(&Line::Checkpoint(c))?;
                summary.checkpoints += 1;
            }
        }
        cursor = end + 1;
    }
    for c in checkpoints {
        write(&Line::Checkpoint(c))?;
        summary.checkpoints += 1;
    }
    out.flush()?;
    Ok(summary)
}

/// Checks an export against `keys`: the header, the chain from its start (the beginning of
/// the log, or the signed checkpoint before its first event) and every checkpoint.
pub fn verify(input: impl BufRead, keys: TrustedKeys) -> anyhow::Result<Verification> {
    anyhow::ensure!(
        !keys.is_empty(),
        "no public key to check the checkpoints with"
    );
    let mut lines = input.lines().enumerate();
    let (_, first) = lines
        .next()
        .context("the file is empty: it is not an audit export")?;
    let header = match serde_json::from_str::<Line>(&first.context("reading line 1")?) {
        Ok(Line::Header(header)) if header.format == FORMAT => header,
        _ => anyhow::bail!("line 1 is not the header of a {FORMAT}"),
    };
    anyhow::ensure!(
        header.version == VERSION,
        "this export is version {}; this build reads version {VERSION}",
        header.version
    );
    let mut verifier: Option<Verifier> = None;
    let mut keys = Some(keys);
    let mut last_event: Option<i64> = None;
    for (index, line) in lines {
        let number = index + 1;
        let text = line.with_context(|| format!("reading line {number}"))?;
        if text.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&text)
            .with_context(|| format!("line {number} is not an event or a checkpoint"))?;
        let v = match &mut verifier {
            Some(v) => v,
            None => {
                let keys = keys.take().unwrap_or_default();
                let from = header.from.unwrap_or(1);
                let anchored = match &parsed {
                    Line::Checkpoint(c) if from > 1 && c.sequence == from - 1 => {
                        Some(Verifier::new(keys.clone(), Anchor::Checkpoint(c.clone())))
                    }
                    _ => None,
                };
                let fresh = anchored.is_some();
                let v = verifier.insert(anchored.unwrap_or_else(|| {
                    let mut v = Verifier::new(keys, Anchor::Genesis);
                    if from > 1 {
                        v.fail(
                            from,
                            BreakKind::NoAnchor,
                            format!(
                                "the export starts at event {from} but holds no signed checkpoint at {}",
                                from - 1
                            ),
                        );
                    }
                    v
                }));
                if fresh {
                    continue;
                }
                v
            }
        };
        match parsed {
            Line::Header(_) => anyhow::bail!("line {number} is a second header"),
            Line::Event(e) => {
                last_event = Some(e.sequence);
                v.event(&e);
            }
            Line::Checkpoint(c) => v.checkpoint(&c),
        }
        if v.is_broken() {
            break;
        }
    }
    let mut verifier =
        verifier.unwrap_or_else(|| Verifier::new(keys.take().unwrap_or_default(), Anchor::Genesis));
    if let Some(to) = header.to
        && last_event.is_none_or(|last| last < to)
    {
        let ends = last_event.unwrap_or(header.from.unwrap_or(1) - 1);
        verifier.fail(
            ends + 1,
            BreakKind::Truncated,
            format!("the export says it holds events up to {to}, but they end at {ends}"),
        );
    }
    Ok(verifier.finish(true))
}

/// Public keys from `--key` values: base64url raw keys, or files holding the audit service's
/// `/.well-known/audit-keys.json` (or a bare key).
pub fn trusted_keys(values: &[String]) -> anyhow::Result<TrustedKeys> {
    let mut keys = TrustedKeys::default();
    for value in values {
        let path = std::path::Path::new(value);
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(json) => {
                    let listed = json["keys"].as_array().cloned().unwrap_or_default();
                    anyhow::ensure!(
                        !listed.is_empty(),
                        "{} has no `keys`: expected the audit service's /.well-known/audit-keys.json",
                        path.display()
                    );
                    for key in listed {
                        let x = key["x"]
                            .as_str()
                            .with_context(|| format!("{}: a key without `x`", path.display()))?;
                        keys.add(x).map_err(anyhow::Error::msg)?;
                    }
                }
                Err(_) => {
                    keys.add(text.trim())
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                }
            }
        } else {
            keys.add(value).map_err(|e| {
                anyhow::anyhow!("--key {e} (give a base64url public key or a file holding one)")
            })?;
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{CheckpointSigner, GENESIS_HASH, to_micros};

    fn file(events: usize, signer: &CheckpointSigner) -> Vec<String> {
        let now = to_micros(Utc::now());
        let mut lines = vec![
            serde_json::to_string(&Line::Header(Header {
                format: FORMAT.into(),
                version: VERSION,
                exported_at: now,
                from: Some(1),
                to: Some(events as i64),
            }))
            .expect("header"),
        ];
        let mut previous = GENESIS_HASH.to_owned();
        for sequence in 1..=events as i64 {
            let mut e = EventRecord {
                sequence,
                id: uuid::Uuid::now_v7(),
                occurred_at: now,
                received_at: now,
                service: "auth".into(),
                action: "auth.login.failed".into(),
                actor_id: None,
                target_type: "account".into(),
                target_id: None,
                outcome: "failure".into(),
                metadata: serde_json::json!({}),
                request_id: None,
                client_address: None,
                previous_hash: previous.clone(),
                hash: String::new(),
            };
            e.hash = e.expected_hash(&previous);
            previous.clone_from(&e.hash);
            lines.push(serde_json::to_string(&Line::Event(Box::new(e))).expect("event"));
        }
        let head = signer.sign(events as i64, &previous, now);
        lines.push(serde_json::to_string(&Line::Checkpoint(head)).expect("checkpoint"));
        lines
    }

    fn check(lines: &[String], signer: &CheckpointSigner) -> anyhow::Result<Verification> {
        let keys = trusted_keys(&[signer.public_key()])?;
        verify(lines.join("\n").as_bytes(), keys)
    }

    #[test]
    fn an_export_verifies_and_a_cut_one_does_not() {
        let signer = CheckpointSigner::from_seed(&[5; 32]);
        let lines = file(4, &signer);
        let report = check(&lines, &signer).expect("verifies");
        assert!(report.valid, "{report:?}");
        assert_eq!((report.events_checked, report.signed_through), (4, Some(4)));

        // The last event cut out (the checkpoint after it kept): truncation.
        let mut cut = lines.clone();
        cut.remove(4);
        let report = check(&cut, &signer).expect("read");
        let found = report.first_break.expect("a break");
        assert_eq!((found.sequence, found.kind), (4, BreakKind::Truncated));

        // The tail and its checkpoint both cut, the header left: still caught.
        let short = lines[..3].to_vec();
        let found = check(&short, &signer)
            .expect("read")
            .first_break
            .expect("a break");
        assert_eq!(found.kind, BreakKind::Truncated, "{found:?}");
    }

    #[test]
    fn what_is_not_an_export_is_refused_with_a_reason() {
        let signer = CheckpointSigner::from_seed(&[5; 32]);
        let err = check(&["{\"hello\": 1}".to_owned()], &signer).expect_err("no header");
        assert!(err.to_string().contains("not the header"), "{err}");
        let err = check(&[], &signer).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let mut lines = file(2, &signer);
        lines.insert(2, "not json".into());
        let err = check(&lines, &signer).expect_err("garbage line");
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = trusted_keys(&["not a key".to_owned()]).expect_err("bad key");
        assert!(err.to_string().contains("--key"), "{err}");
    }
}
