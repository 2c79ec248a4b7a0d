//! Embedded adapters of Ferry's ports for one machine with no cloud: a SQLite store (WAL, so a
//! server and several agents can share one file) and filesystem code and log stores, all under
//! `FERRY_HOME` — and the `process/NAME` task launcher (a local `ferry agent execute` process
//! per launched run).

mod code;
mod launcher;
mod logs;
mod sqlite;

pub use code::FsCodeStore;
pub use launcher::ProcessLauncher;
pub use logs::FsLogSink;
pub use sqlite::SqliteStore;
