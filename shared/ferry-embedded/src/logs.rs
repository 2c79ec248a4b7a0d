//! Run logs as files: `<root>/<run-id>.jsonl` holds the lines (one JSON object each) and
//! `<root>/<run-id>.idx` indexes them: for line `n`, the little-endian u64 at byte `8 n` is the
//! offset in the `.jsonl` where that line ends. A page of lines from any offset is then two
//! positioned reads — its index entries and its bytes — whatever the size of the log.
//!
//! Appends write the lines first and their index entries second, so a reader that goes by the
//! index never sees a partly written line. An append that failed between the two leaves lines
//! the index does not cover; the next append indexes them (and drops a torn last line) first.
//! A `.jsonl` without an `.idx` (written before the index existed) is read by scanning it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ferry_core::ids::RunId;
use ferry_core::log_cap::{encode_capped, MAX_RUN_LOG_BYTES};
use ferry_core::ports::{LogError, LogLine, LogPage, LogSink};

/// Size of one index entry.
const ENTRY: u64 = 8;
/// Appends to one run are serialized through one of this many locks (picked by run id).
const LOCK_STRIPES: usize = 16;

/// Run logs as indexed JSON-lines files (see the module docs), capped at
/// [`MAX_RUN_LOG_BYTES`] per run unless [`FsLogSink::with_max_bytes`] says otherwise.
#[derive(Debug, Clone)]
pub struct FsLogSink {
    root: PathBuf,
    max_bytes: u64,
    locks: Arc<[tokio::sync::Mutex<()>; LOCK_STRIPES]>,
}

impl FsLogSink {
    /// A sink rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_bytes: MAX_RUN_LOG_BYTES,
            locks: Arc::new(std::array::from_fn(|_| tokio::sync::Mutex::new(()))),
        }
    }

    /// The same sink keeping at most `max_bytes` of each run's log.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    fn path(&self, run: RunId) -> PathBuf {
        self.root.join(format!("{run}.jsonl"))
    }

    fn index_path(&self, run: RunId) -> PathBuf {
        self.root.join(format!("{run}.idx"))
    }
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> LogError {
    LogError {
        source: Box::new(e),
    }
}

/// A log file that does not match its index (an `InvalidData` I/O error naming the file).
fn corrupt(log: &Path, what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("run log {} is corrupt: {what}", log.display()),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f).await.map_err(err)?
}

#[async_trait]
impl LogSink for FsLogSink {
    async fn append(&self, run: RunId, lines: &[LogLine]) -> Result<(), LogError> {
        if lines.is_empty() {
            return Ok(());
        }
        let stripe = (run.as_uuid().as_u128() % LOCK_STRIPES as u128) as usize;
        let _one_writer = self.locks[stripe].lock().await;
        let (root, log, index, cap) = (
            self.root.clone(),
            self.path(run),
            self.index_path(run),
            self.max_bytes,
        );
        let lines = lines.to_vec();
        blocking(move || {
            std::fs::create_dir_all(&root).map_err(err)?;
            append_indexed(&log, &index, &lines, cap)
        })
        .await
    }

    async fn read(&self, run: RunId, offset: u64, limit: usize) -> Result<LogPage, LogError> {
        let (log, index) = (self.path(run), self.index_path(run));
        blocking(move || {
            let mut idx = match File::open(&index) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return read_unindexed(&log, offset, limit)
                }
                Err(e) => return Err(err(e)),
            };
            let idx_len = idx.metadata().map_err(err)?.len();
            let mut file = match File::open(&log) {
                Ok(f) => f,
                // The first append creates the index, then the log.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && idx_len == 0 => {
                    return read_unindexed(&log, offset, limit)
                }
                Err(e) => return Err(err(e)),
            };
            read_page(&mut file, &mut idx, idx_len, offset, limit).map_err(|e| match e {
                PageError::Io(e) => err(e),
                PageError::Corrupt(what) => err(corrupt(&log, what)),
            })
        })
        .await
    }

    fn location(&self, run: RunId) -> String {
        self.path(run).display().to_string()
    }
}

/// Appends `lines` (under the cap) to `log` and their end offsets to `index`.
fn append_indexed(log: &Path, index: &Path, lines: &[LogLine], cap: u64) -> Result<(), LogError> {
    // The index is created before the log: a log without an index predates the index.
    let mut idx = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(index)
        .map_err(err)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(log)
        .map_err(err)?;
    let stored = repair(&mut file, &mut idx).map_err(err)?;
    let batch = encode_capped(lines, stored, cap).map_err(err)?;
    if batch.dropped > 0 {
        tracing::debug!(log = %log.display(), dropped = batch.dropped, cap, "run log at its cap: lines dropped");
    }
    if batch.body.is_empty() {
        return Ok(());
    }
    file.seek(SeekFrom::Start(stored)).map_err(err)?;
    file.write_all(&batch.body).map_err(err)?;
    let entries: Vec<u8> = batch
        .line_ends
        .iter()
        .flat_map(|e| e.to_le_bytes())
        .collect();
    idx.seek(SeekFrom::End(0)).map_err(err)?;
    idx.write_all(&entries).map_err(err)?;
    Ok(())
}

/// Brings the index level with the log and returns where the log's last complete line ends:
/// lines an interrupted append wrote but did not index are indexed, a torn last line or index
/// entry is cut off, entries past the end of the log are dropped.
fn repair(file: &mut File, idx: &mut File) -> std::io::Result<u64> {
    let idx_len = idx.metadata()?.len();
    let mut entries = idx_len / ENTRY;
    if idx_len % ENTRY != 0 {
        idx.set_len(entries * ENTRY)?;
    }
    let log_len = file.metadata()?.len();
    let mut end = 0;
    // Entries beyond the log (the log was cut by hand) are dropped.
    while entries > 0 {
        end = entry(idx, entries - 1)?;
        if end <= log_len {
            break;
        }
        entries -= 1;
        end = 0;
    }
    idx.set_len(entries * ENTRY)?;
    if log_len == end {
        return Ok(end);
    }
    // Unindexed complete lines are indexed; a torn last line is dropped.
    file.seek(SeekFrom::Start(end))?;
    let mut tail = BufReader::new(&mut *file);
    let mut new_entries = Vec::new();
    let mut buf = Vec::new();
    let mut pos = end;
    loop {
        buf.clear();
        let n = tail.read_until(b'\n', &mut buf)? as u64;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        pos += n;
        new_entries.extend_from_slice(&pos.to_le_bytes());
    }
    idx.seek(SeekFrom::End(0))?;
    idx.write_all(&new_entries)?;
    file.set_len(pos)?;
    Ok(pos)
}

/// Index entry `n`: where line `n` ends.
fn entry(idx: &mut (impl Read + Seek), n: u64) -> std::io::Result<u64> {
    let mut b = [0u8; ENTRY as usize];
    idx.seek(SeekFrom::Start(n * ENTRY))?;
    idx.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[derive(Debug)]
enum PageError {
    Io(std::io::Error),
    Corrupt(String),
}

impl From<std::io::Error> for PageError {
    fn from(e: std::io::Error) -> Self {
        PageError::Io(e)
    }
}

/// Lines `offset..offset + limit` of an indexed log: reads `limit + 1` index entries and the
/// page's bytes, nothing else.
fn read_page(
    log: &mut (impl Read + Seek),
    idx: &mut (impl Read + Seek),
    idx_len: u64,
    offset: u64,
    limit: usize,
) -> Result<LogPage, PageError> {
    let indexed = idx_len / ENTRY;
    let take = (limit as u64).min(indexed.saturating_sub(offset));
    if take == 0 {
        return Ok(LogPage {
            lines: Vec::new(),
            next_offset: offset,
        });
    }
    // The entry before the page says where it starts.
    let first = offset.saturating_sub(1);
    let mut raw = vec![0u8; ((offset + take - first) * ENTRY) as usize];
    idx.seek(SeekFrom::Start(first * ENTRY))?;
    idx.read_exact(&mut raw)?;
    let ends: Vec<u64> = raw
        .chunks_exact(ENTRY as usize)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let (start, ends) = if offset == 0 {
        (0, &ends[..])
    } else {
        (ends[0], &ends[1..])
    };
    let end = *ends.last().unwrap_or(&start);
    if end < start {
        return Err(PageError::Corrupt(format!(
            "index entries of lines {offset}.. go backwards"
        )));
    }
    let mut bytes = vec![0u8; (end - start) as usize];
    log.seek(SeekFrom::Start(start))?;
    log.read_exact(&mut bytes)?;
    let mut lines = Vec::with_capacity(ends.len());
    let mut from = start;
    for &to in ends {
        let raw = bytes
            .get((from - start) as usize..(to - start) as usize)
            .ok_or_else(|| PageError::Corrupt(format!("index entry {to} is out of order")))?;
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        lines.push(
            serde_json::from_slice(raw)
                .map_err(|e| PageError::Corrupt(format!("line at byte {from}: {e}")))?,
        );
        from = to;
    }
    Ok(LogPage {
        next_offset: offset + lines.len() as u64,
        lines,
    })
}

/// A log without an index (written before the index existed): scanned line by line, holding
/// only the page in memory.
fn read_unindexed(log: &Path, offset: u64, limit: usize) -> Result<LogPage, LogError> {
    let mut page = LogPage {
        lines: Vec::new(),
        next_offset: offset,
    };
    let file = match File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(page),
        Err(e) => return Err(err(e)),
    };
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut n = 0u64;
    while page.lines.len() < limit {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(err)? == 0 || buf.last() != Some(&b'\n') {
            // Only complete lines count: a batch being appended right now is read next time.
            break;
        }
        if n >= offset {
            page.lines
                .push(serde_json::from_slice(&buf[..buf.len() - 1]).map_err(err)?);
            page.next_offset = n + 1;
        }
        n += 1;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ferry_core::ports::LogStream;

    fn line(i: u64) -> LogLine {
        LogLine {
            at: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            stream: LogStream::Stdout,
            line: format!("line {i} {}", "x".repeat(80)),
        }
    }

    /// Counts the bytes read through it.
    struct Counting<R> {
        inner: R,
        read: u64,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    async fn big_log(lines: u64) -> (tempfile::TempDir, FsLogSink, RunId) {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsLogSink::new(dir.path());
        let run = RunId::adhoc(chrono::Utc::now(), [1; 10]);
        let batch: Vec<_> = (0..lines).map(line).collect();
        for chunk in batch.chunks(5_000) {
            sink.append(run, chunk).await.unwrap();
        }
        (dir, sink, run)
    }

    #[tokio::test]
    async fn a_page_at_a_large_offset_reads_only_its_own_bytes() {
        let (_dir, sink, run) = big_log(100_000).await;
        let log_len = std::fs::metadata(sink.path(run)).unwrap().len();
        assert!(log_len > 10_000_000, "the log is big: {log_len} bytes");
        let mut log = Counting {
            inner: File::open(sink.path(run)).unwrap(),
            read: 0,
        };
        let mut idx = Counting {
            inner: File::open(sink.index_path(run)).unwrap(),
            read: 0,
        };
        let idx_len = idx.inner.metadata().unwrap().len();
        let page = read_page(&mut log, &mut idx, idx_len, 99_000, 100).unwrap();
        assert_eq!(page.lines, (99_000..99_100).map(line).collect::<Vec<_>>());
        assert_eq!(page.next_offset, 99_100);
        let one_line = log_len / 100_000;
        assert!(
            log.read <= 100 * (one_line + 2),
            "read {} bytes of the log for a 100-line page",
            log.read
        );
        assert_eq!(idx.read, 101 * ENTRY, "read the page's index entries only");
    }

    #[tokio::test]
    async fn a_page_after_the_start_of_the_log_does_not_touch_the_lines_before_it() {
        let (_dir, sink, run) = big_log(1_000).await;
        // Garble the first line (invalid UTF-8, not JSON): only a reader that reads from the
        // start of the file trips over it.
        let mut f = OpenOptions::new().write(true).open(sink.path(run)).unwrap();
        f.write_all(&[0xff, 0xfe, 0xfd]).unwrap();
        let page = sink.read(run, 900, 10).await.unwrap();
        assert_eq!(page.lines, (900..910).map(line).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn lines_an_interrupted_append_left_unindexed_are_indexed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsLogSink::new(dir.path());
        let run = RunId::adhoc(chrono::Utc::now(), [2; 10]);
        sink.append(run, &[line(0)]).await.unwrap();
        // An append that wrote its lines (and half a line) but not their index entries.
        let mut f = OpenOptions::new()
            .append(true)
            .open(sink.path(run))
            .unwrap();
        let mut body = serde_json::to_vec(&line(1)).unwrap();
        body.push(b'\n');
        body.extend_from_slice(b"{\"at\":");
        f.write_all(&body).unwrap();
        assert_eq!(sink.read(run, 0, 10).await.unwrap().lines.len(), 1);
        sink.append(run, &[line(2)]).await.unwrap();
        let page = sink.read(run, 0, 10).await.unwrap();
        assert_eq!(page.lines, vec![line(0), line(1), line(2)]);
    }

    #[tokio::test]
    async fn a_log_written_before_the_index_is_read_and_then_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsLogSink::new(dir.path());
        let run = RunId::adhoc(chrono::Utc::now(), [3; 10]);
        let mut body = Vec::new();
        for i in 0..5 {
            serde_json::to_writer(&mut body, &line(i)).unwrap();
            body.push(b'\n');
        }
        std::fs::write(sink.path(run), &body).unwrap();
        let page = sink.read(run, 2, 2).await.unwrap();
        assert_eq!(page.lines, vec![line(2), line(3)]);
        assert_eq!(page.next_offset, 4);
        sink.append(run, &[line(5)]).await.unwrap();
        let page = sink.read(run, 3, 10).await.unwrap();
        assert_eq!(page.lines, vec![line(3), line(4), line(5)]);
    }
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    #[tokio::test]
    async fn fs_log_sink_keeps_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let sink = super::FsLogSink::new(dir.path()).with_max_bytes(700);
        ferry_app::conformance::log_sink_cap_suite(Arc::new(sink), 700).await;
    }
}
