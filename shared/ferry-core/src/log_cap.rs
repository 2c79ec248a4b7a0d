//! The size cap of a run's log, applied the same way by every [`LogSink`](crate::ports::LogSink).

use crate::ports::{LogLine, LogStream};

/// Most bytes a run's log keeps (its lines as stored: one JSON object and a newline each).
/// Once a log reaches it, a marker line says so and later lines are dropped: a runaway flow
/// cannot fill the disk or the bucket, and reading its log stays cheap.
pub const MAX_RUN_LOG_BYTES: u64 = 100 * 1024 * 1024;

/// Lines encoded for appending to a log under its cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CappedBatch {
    /// The JSON lines to append, each ending with `\n` (empty: nothing to write).
    pub body: Vec<u8>,
    /// Byte offset in the log where each written line ends (the marker included).
    pub line_ends: Vec<u64>,
    /// How many of the given lines were dropped by the cap.
    pub dropped: usize,
}

/// The marker line that closes a log at its cap.
pub fn cap_marker(cap: u64, at: chrono::DateTime<chrono::Utc>) -> LogLine {
    LogLine {
        at,
        stream: LogStream::Ferry,
        line: format!(
            "this run's log reached its cap of {cap} bytes: later lines are dropped (print less, or write large output to a file)"
        ),
    }
}

/// Encodes `lines` for a log that already holds `stored` bytes and keeps at most `cap`.
///
/// Lines are kept while the log is below `cap`; the line that takes it to `cap` or past is
/// followed by [`cap_marker`], and the lines after it are dropped. A log at or past `cap` takes
/// nothing more, so "the log is full" can be told from its size alone, by any writer.
pub fn encode_capped(
    lines: &[LogLine],
    stored: u64,
    cap: u64,
) -> Result<CappedBatch, serde_json::Error> {
    let mut batch = CappedBatch::default();
    let mut end = stored;
    for (i, line) in lines.iter().enumerate() {
        if end >= cap {
            batch.dropped = lines.len() - i;
            break;
        }
        end = push(&mut batch, line, end)?;
        if end >= cap {
            push(&mut batch, &cap_marker(cap, line.at), end)?;
            batch.dropped = lines.len() - i - 1;
            break;
        }
    }
    Ok(batch)
}

fn push(batch: &mut CappedBatch, line: &LogLine, end: u64) -> Result<u64, serde_json::Error> {
    let before = batch.body.len();
    serde_json::to_writer(&mut batch.body, line)?;
    batch.body.push(b'\n');
    let end = end + (batch.body.len() - before) as u64;
    batch.line_ends.push(end);
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(i: usize) -> LogLine {
        LogLine {
            at: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            stream: LogStream::Stdout,
            line: format!("line {i:04}"),
        }
    }

    #[test]
    fn lines_below_the_cap_are_kept_whole() {
        let lines: Vec<_> = (0..3).map(line).collect();
        let b = encode_capped(&lines, 0, 1 << 20).unwrap();
        assert_eq!(b.dropped, 0);
        assert_eq!(b.line_ends.len(), 3);
        assert_eq!(*b.line_ends.last().unwrap(), b.body.len() as u64);
        let text = std::str::from_utf8(&b.body).unwrap();
        let back: Vec<LogLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, lines);
    }

    #[test]
    fn the_line_reaching_the_cap_is_followed_by_the_marker_and_the_rest_dropped() {
        let one = encode_capped(&[line(0)], 0, u64::MAX).unwrap().body.len() as u64;
        let lines: Vec<_> = (0..10).map(line).collect();
        // Room for two lines and a bit: the third line reaches the cap.
        let b = encode_capped(&lines, 100, 100 + 2 * one + 1).unwrap();
        assert_eq!(b.line_ends.len(), 4, "three lines and the marker");
        assert_eq!(b.dropped, 7);
        let last: LogLine = serde_json::from_str(
            std::str::from_utf8(&b.body)
                .unwrap()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(last.stream, LogStream::Ferry);
        assert!(last.line.contains("cap"), "{}", last.line);
        assert_eq!(b.line_ends[0], 100 + one);
    }

    #[test]
    fn a_log_at_its_cap_takes_nothing() {
        let lines: Vec<_> = (0..3).map(line).collect();
        let b = encode_capped(&lines, 500, 500).unwrap();
        assert!(b.body.is_empty() && b.line_ends.is_empty());
        assert_eq!(b.dropped, 3);
    }
}
