use std::path::PathBuf;

use async_trait::async_trait;
use ferry_core::ids::RunId;
use ferry_core::ports::{LogError, LogLine, LogPage, LogSink};
use tokio::io::AsyncWriteExt;

/// Run logs as JSON-lines files `<root>/<run-id>.jsonl`, appended in one write per batch.
#[derive(Debug, Clone)]
pub struct FsLogSink {
    root: PathBuf,
}

impl FsLogSink {
    /// A sink rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    fn path(&self, run: RunId) -> PathBuf {
        self.root.join(format!("{run}.jsonl"))
    }
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> LogError {
    LogError {
        source: Box::new(e),
    }
}

#[async_trait]
impl LogSink for FsLogSink {
    async fn append(&self, run: RunId, lines: &[LogLine]) -> Result<(), LogError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(lines.len() * 64);
        for l in lines {
            serde_json::to_writer(&mut buf, l).map_err(err)?;
            buf.push(b'\n');
        }
        tokio::fs::create_dir_all(&self.root).await.map_err(err)?;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(run))
            .await
            .map_err(err)?;
        f.write_all(&buf).await.map_err(err)?;
        f.flush().await.map_err(err)?;
        Ok(())
    }

    async fn read(&self, run: RunId, offset: u64, limit: usize) -> Result<LogPage, LogError> {
        let text = match tokio::fs::read_to_string(self.path(run)).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e)),
        };
        let mut lines = Vec::new();
        let mut next = offset;
        // Only complete lines count: a batch being appended right now is read next time.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        for raw in complete.lines().skip(offset as usize).take(limit) {
            lines.push(serde_json::from_str(raw).map_err(err)?);
            next += 1;
        }
        Ok(LogPage {
            lines,
            next_offset: next,
        })
    }

    fn location(&self, run: RunId) -> String {
        self.path(run).display().to_string()
    }
}
