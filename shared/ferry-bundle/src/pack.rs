//! Packing a project directory into a deterministic bundle.

use std::cell::Cell;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use flate2::{Compression, GzBuilder};
use ignore::WalkBuilder;

use crate::{check_link_target, sha256_hex, BundleError, Limit, Limits, LinkTargetProblem};

/// A packed bundle, ready to be stored under its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedBundle {
    /// The gzip'd tar.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
    /// Number of entries bundled (regular files + symlinks).
    pub files: usize,
}

enum Kind {
    File { executable: bool },
    Symlink { target: String },
}

struct Item {
    /// `/`-separated, relative to the root.
    rel: String,
    /// Where it is on disk.
    abs: PathBuf,
    kind: Kind,
}

/// Packs `root` into a bundle with the default [`Limits`]. See the crate docs for the
/// format and what is included.
///
/// # Errors
/// [`BundleError::UnsafeSymlink`] for a symlink leaving `root`, [`BundleError::Unsupported`]
/// for sockets, fifos, devices and non-UTF-8 names, [`BundleError::TooLarge`] over the caps,
/// [`BundleError::Walk`] / [`BundleError::Io`] when reading fails.
pub fn pack_dir(root: &Path) -> Result<PackedBundle, BundleError> {
    pack_dir_with_limits(root, &Limits::DEFAULT)
}

/// [`pack_dir`] with explicit caps.
///
/// # Errors
/// As [`pack_dir`].
pub fn pack_dir_with_limits(root: &Path, limits: &Limits) -> Result<PackedBundle, BundleError> {
    let meta = fs::metadata(root).map_err(|e| BundleError::io(root, e))?;
    if !meta.is_dir() {
        return Err(BundleError::io(
            root,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        ));
    }

    let items = collect(root, limits)?;
    let files = items.len();

    let capped = CappedVec {
        buf: Vec::new(),
        max: limits.max_compressed_bytes,
        tripped: Rc::new(Cell::new(false)),
    };
    let tripped = capped.tripped.clone();
    let too_big = || BundleError::TooLarge {
        limit: Limit::PackCompressedBytes,
        max: limits.max_compressed_bytes,
    };
    let tar_err = |path: &Path, e: io::Error| {
        if tripped.get() {
            too_big()
        } else {
            BundleError::io(path, e)
        }
    };

    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(capped, Compression::default());
    let mut builder = tar::Builder::new(gz);
    let mut remaining = limits.max_uncompressed_bytes;
    for item in &items {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match &item.kind {
            Kind::File { executable } => {
                let data = read_capped(&item.abs, remaining, limits)?;
                remaining -= data.len() as u64;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, &item.rel, data.as_slice())
                    .map_err(|e| tar_err(&item.abs, e))?;
            }
            Kind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, &item.rel, target)
                    .map_err(|e| tar_err(&item.abs, e))?;
            }
        }
    }
    let gz = builder.into_inner().map_err(|e| tar_err(root, e))?;
    let capped = gz.finish().map_err(|e| tar_err(root, e))?;
    let bytes = capped.buf;
    Ok(PackedBundle {
        sha256: sha256_hex(&bytes),
        bytes,
        files,
    })
}

/// Walks `root` and returns what to bundle, sorted by path.
fn collect(root: &Path, limits: &Limits) -> Result<Vec<Item>, BundleError> {
    let mut walk = WalkBuilder::new(root);
    walk.standard_filters(false)
        .hidden(false)
        .parents(false)
        .ignore(true)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(".ferryignore")
        .filter_entry(|e| e.file_name() != ".git");

    let mut items = Vec::new();
    let mut total: u64 = 0;
    for dent in walk.build() {
        let dent = dent.map_err(BundleError::Walk)?;
        if dent.depth() == 0 {
            continue;
        }
        let abs = dent.path().to_path_buf();
        let Some(ft) = dent.file_type() else {
            return Err(BundleError::Unsupported {
                path: abs,
                what: "its file type cannot be determined",
            });
        };
        if ft.is_dir() {
            continue;
        }
        let rel = relative(root, &abs)?;
        let kind = if ft.is_symlink() {
            let target = fs::read_link(&abs).map_err(|e| BundleError::io(&abs, e))?;
            let Some(target_str) = target.to_str() else {
                return Err(BundleError::Unsupported {
                    path: abs,
                    what: "it is a symlink whose target is not valid UTF-8",
                });
            };
            let parent_depth = rel.split('/').count() - 1;
            match check_link_target(parent_depth, target_str) {
                Ok(()) => {}
                Err(LinkTargetProblem::Absolute | LinkTargetProblem::Escaping) => {
                    return Err(BundleError::UnsafeSymlink { path: abs, target });
                }
            }
            Kind::Symlink {
                target: target_str.to_owned(),
            }
        } else if ft.is_file() {
            let meta = fs::symlink_metadata(&abs).map_err(|e| BundleError::io(&abs, e))?;
            total = total.saturating_add(meta.len());
            if total > limits.max_uncompressed_bytes {
                return Err(BundleError::TooLarge {
                    limit: Limit::PackUncompressedBytes,
                    max: limits.max_uncompressed_bytes,
                });
            }
            Kind::File {
                executable: is_executable(&meta),
            }
        } else {
            return Err(BundleError::Unsupported {
                path: abs,
                what: "it is not a regular file, directory or symlink (socket, fifo or device)",
            });
        };
        items.push(Item { rel, abs, kind });
        if items.len() as u64 > limits.max_entries {
            return Err(BundleError::TooLarge {
                limit: Limit::PackEntries,
                max: limits.max_entries,
            });
        }
    }
    items.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(items)
}

/// `abs` relative to `root`, UTF-8, joined with `/`.
fn relative(root: &Path, abs: &Path) -> Result<String, BundleError> {
    let rel = abs
        .strip_prefix(root)
        .map_err(|_| BundleError::Unsupported {
            path: abs.to_path_buf(),
            what: "it is not under the project directory",
        })?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => match s.to_str() {
                Some(s) => parts.push(s),
                None => {
                    return Err(BundleError::Unsupported {
                        path: abs.to_path_buf(),
                        what: "its name is not valid UTF-8",
                    })
                }
            },
            Component::CurDir => {}
            _ => {
                return Err(BundleError::Unsupported {
                    path: abs.to_path_buf(),
                    what: "it is not under the project directory",
                })
            }
        }
    }
    Ok(parts.join("/"))
}

/// Reads a file whole, failing with [`Limit::PackUncompressedBytes`] past `remaining`
/// (the file may have grown since it was listed).
fn read_capped(path: &Path, remaining: u64, limits: &Limits) -> Result<Vec<u8>, BundleError> {
    let file = fs::File::open(path).map_err(|e| BundleError::io(path, e))?;
    let mut data = Vec::new();
    file.take(remaining.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| BundleError::io(path, e))?;
    if data.len() as u64 > remaining {
        return Err(BundleError::TooLarge {
            limit: Limit::PackUncompressedBytes,
            max: limits.max_uncompressed_bytes,
        });
    }
    Ok(data)
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// An in-memory sink that fails once it holds more than `max` bytes.
struct CappedVec {
    buf: Vec<u8>,
    max: u64,
    tripped: Rc<Cell<bool>>,
}

impl Write for CappedVec {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if (self.buf.len() + data.len()) as u64 > self.max {
            self.tripped.set(true);
            return Err(io::Error::other("compressed size cap exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
