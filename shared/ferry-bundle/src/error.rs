//! The one error type of this crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong packing, verifying or unpacking a code bundle.
///
/// Each message says what happened and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Unpack: an archive entry would land outside the destination, or is a kind of
    /// entry bundles never contain. Nothing from the archive is kept.
    #[error(
        "refusing to unpack code bundle: entry `{path}` {reason}; ferry deployment build never \
         produces such entries, so the bundle is corrupt or was tampered with — rebuild it with \
         `ferry deployment build` and redeploy (nothing from it was kept)"
    )]
    UnsafePath {
        /// The entry's path exactly as stored in the archive (lossily decoded).
        path: String,
        /// Which rule it broke.
        reason: UnsafeReason,
    },
    /// Pack: a symlink in the project points outside it (or in a way bundles cannot express).
    #[error(
        "cannot bundle symlink `{path}` -> `{target}`: a bundled symlink must use a relative \
         target that stays inside the project directory, with `..` only at its start; make the \
         link relative, replace it with a copy of what it points to, or add it to .ferryignore"
    )]
    UnsafeSymlink {
        /// The link, as found under the project directory.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// Pack: a file the bundle format cannot carry (socket, fifo, device, non-UTF-8 name).
    #[error("cannot bundle `{path}`: {what}; remove it or add it to .ferryignore")]
    Unsupported {
        /// The offending path under the project directory.
        path: PathBuf,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A size or entry-count cap was exceeded (see [`Limit`] for which one).
    #[error("{}: more than {max} {}; {}", .limit.what(), .limit.unit(), .limit.fix())]
    TooLarge {
        /// Which cap.
        limit: Limit,
        /// The cap's value.
        max: u64,
    },
    /// Unpack: the destination directory already has something in it.
    #[error(
        "cannot unpack code bundle into `{path}`: the directory is not empty; unpack into a \
         fresh empty (or not yet existing) directory"
    )]
    DestNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("I/O error on `{path}`")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Pack: walking the project directory (or reading an ignore file) failed.
    #[error(
        "cannot read the project directory (check permissions, or add the path to .ferryignore)"
    )]
    Walk(#[source] ignore::Error),
    /// Unpack: the bytes are not a valid gzip'd tar archive.
    #[error(
        "code bundle is not a valid gzip'd tar archive (the download may be truncated: retry, \
         or rebuild and redeploy with `ferry deployment build`)"
    )]
    Malformed(#[source] io::Error),
}

impl BundleError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        BundleError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why an archive entry was refused by [`crate::unpack_into`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsafeReason {
    /// The path is absolute (`/x`).
    Absolute,
    /// The path has a `..` component.
    ParentDir,
    /// The path has a root or drive-prefix component, or one the platform cannot represent.
    BadComponent,
    /// The path is empty (or only `.`), for an entry that needs a name.
    Empty,
    /// The path is not valid UTF-8.
    NotUtf8,
    /// A parent of the path is a symlink created earlier in the same archive.
    ThroughSymlink {
        /// The symlink the path passes through.
        link: String,
    },
    /// The path was already written by an earlier entry.
    Duplicate,
    /// A symlink whose target is absolute.
    AbsoluteSymlink {
        /// The target.
        target: String,
    },
    /// A symlink whose target climbs out of the destination (or uses `..` after a name,
    /// which could climb out through another link).
    EscapingSymlink {
        /// The target.
        target: String,
    },
    /// A hard link (bundles never contain any).
    HardLink {
        /// What it links to.
        target: String,
    },
    /// A character/block device or fifo.
    SpecialFile {
        /// Which kind.
        kind: &'static str,
    },
    /// Some other tar entry type (sparse file, global header, ...).
    UnsupportedType {
        /// The raw tar type byte.
        byte: u8,
    },
}

impl fmt::Display for UnsafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeReason::Absolute => f.write_str("has an absolute path"),
            UnsafeReason::ParentDir => f.write_str("has a `..` path component"),
            UnsafeReason::BadComponent => {
                f.write_str("has a root, drive-prefix or otherwise invalid path component")
            }
            UnsafeReason::Empty => f.write_str("has an empty path"),
            UnsafeReason::NotUtf8 => f.write_str("has a path that is not valid UTF-8"),
            UnsafeReason::ThroughSymlink { link } => {
                write!(f, "would be written through the symlink `{link}`")
            }
            UnsafeReason::Duplicate => f.write_str("appears more than once"),
            UnsafeReason::AbsoluteSymlink { target } => {
                write!(f, "is a symlink to the absolute path `{target}`")
            }
            UnsafeReason::EscapingSymlink { target } => write!(
                f,
                "is a symlink to `{target}`, which leaves the bundle directory"
            ),
            UnsafeReason::HardLink { target } => write!(f, "is a hard link (to `{target}`)"),
            UnsafeReason::SpecialFile { kind } => write!(f, "is a {kind}"),
            UnsafeReason::UnsupportedType { byte } => {
                write!(f, "has unsupported tar entry type {byte:#04x}")
            }
        }
    }
}

/// Which cap a [`BundleError::TooLarge`] hit. Caps are set by [`crate::Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Pack: the project's files add up to more than the uncompressed cap.
    PackUncompressedBytes,
    /// Pack: the gzip'd bundle is over the compressed cap.
    PackCompressedBytes,
    /// Pack: the project has too many files.
    PackEntries,
    /// Unpack: the bundle given is over the compressed cap.
    UnpackCompressedBytes,
    /// Unpack: the archive expands to more than the uncompressed cap.
    UnpackUncompressedBytes,
    /// Unpack: the archive has too many entries.
    UnpackEntries,
}

impl Limit {
    fn what(self) -> &'static str {
        match self {
            Limit::PackUncompressedBytes => "project directory is too large to bundle",
            Limit::PackCompressedBytes => "code bundle is too large",
            Limit::PackEntries => "project directory has too many files to bundle",
            Limit::UnpackCompressedBytes => "code bundle is too large to unpack",
            Limit::UnpackUncompressedBytes => {
                "code bundle expands too much to unpack (possible decompression bomb)"
            }
            Limit::UnpackEntries => "code bundle has too many entries to unpack",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Limit::PackEntries | Limit::UnpackEntries => "entries",
            Limit::PackCompressedBytes | Limit::UnpackCompressedBytes => "bytes compressed",
            Limit::PackUncompressedBytes | Limit::UnpackUncompressedBytes => "bytes uncompressed",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Limit::PackUncompressedBytes | Limit::PackCompressedBytes | Limit::PackEntries => {
                "add large or generated files and directories (data, virtualenvs, node_modules, \
                 build outputs) to .ferryignore"
            }
            Limit::UnpackCompressedBytes
            | Limit::UnpackUncompressedBytes
            | Limit::UnpackEntries => {
                "nothing was kept; if the bundle is genuine, shrink the project with .ferryignore \
                 and redeploy with `ferry deployment build`"
            }
        }
    }
}
