//! Embedded adapters of Ferry's ports for one machine with no cloud: a SQLite store (WAL, so a
//! server and several agents can share one file) and filesystem code and log stores, all under
//! `FERRY_HOME`.

mod code;
mod logs;
mod sqlite;

pub use code::FsCodeStore;
pub use logs::FsLogSink;
pub use sqlite::SqliteStore;
