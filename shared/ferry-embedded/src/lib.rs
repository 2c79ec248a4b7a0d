//! Embedded adapters of Ferry's ports for one machine with no cloud: a SQLite store (WAL, so a
//! server and several agents can share one file) and filesystem code and log stores, all under
//! `FERRY_HOME` — and the `process/NAME` task launcher (a local `ferry agent execute` process
//! per launched run) — and the secret store (`secret:NAME` references).

mod code;
mod launcher;
mod logs;
mod secrets;
mod sqlite;

pub use code::FsCodeStore;
pub use launcher::ProcessLauncher;
pub use logs::FsLogSink;
pub use secrets::{FileSecretStore, SecretStoreError, MAX_SECRET_BYTES};
pub use sqlite::SqliteStore;
