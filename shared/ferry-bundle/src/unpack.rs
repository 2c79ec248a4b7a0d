//! Safe extraction of a bundle into a directory.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use flate2::read::GzDecoder;

use crate::{check_link_target, BundleError, Limit, Limits, LinkTargetProblem, UnsafeReason};

/// What [`unpack_into`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Regular files written.
    pub files: usize,
    /// Symlinks created.
    pub symlinks: usize,
    /// Total bytes of file content written.
    pub bytes: u64,
}

/// Unpacks a bundle into `dest` with the default [`Limits`]. `dest` must be an empty
/// directory or not exist yet (it is then created, with its parents).
///
/// Check the digest first with `ferry_core::digest::BundleDigest::verify` (the one digest rule; the code store does it on every read); this function checks every entry
/// against the rules in the crate docs regardless. On error, everything written is removed
/// again: `dest` is left empty, or removed if this call created it.
///
/// # Errors
/// [`BundleError::UnsafePath`] for an entry breaking the safety rules,
/// [`BundleError::TooLarge`] over the caps, [`BundleError::DestNotEmpty`],
/// [`BundleError::Malformed`] for bytes that are not a gzip'd tar, [`BundleError::Io`].
pub fn unpack_into(bytes: &[u8], dest: &Path) -> Result<UnpackStats, BundleError> {
    unpack_into_with_limits(bytes, dest, &Limits::DEFAULT)
}

/// [`unpack_into`] with explicit caps.
///
/// # Errors
/// As [`unpack_into`].
pub fn unpack_into_with_limits(
    bytes: &[u8],
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackStats, BundleError> {
    if bytes.len() as u64 > limits.max_compressed_bytes {
        return Err(BundleError::TooLarge {
            limit: Limit::UnpackCompressedBytes,
            max: limits.max_compressed_bytes,
        });
    }
    let created = prepare_dest(dest)?;
    let mut unpacker = Unpacker {
        dest,
        limits,
        dirs: HashSet::new(),
        leaves: HashSet::new(),
        symlinks: HashSet::new(),
        stats: UnpackStats::default(),
    };
    match unpacker.run(bytes) {
        Ok(()) => Ok(unpacker.stats),
        Err(e) => {
            cleanup(dest, created);
            Err(e)
        }
    }
}

/// Makes sure `dest` is an empty directory; returns whether it had to be created.
fn prepare_dest(dest: &Path) -> Result<bool, BundleError> {
    match fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let mut rd = fs::read_dir(dest).map_err(|e| BundleError::io(dest, e))?;
            if rd.next().is_some() {
                return Err(BundleError::DestNotEmpty {
                    path: dest.to_path_buf(),
                });
            }
            Ok(false)
        }
        Ok(_) => Err(BundleError::io(
            dest,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| BundleError::io(dest, e))?;
            Ok(true)
        }
        Err(e) => Err(BundleError::io(dest, e)),
    }
}

/// Best-effort removal of everything under `dest` (which was empty before), and of `dest`
/// itself if we created it. Symlinks are removed, never followed.
fn cleanup(dest: &Path, created: bool) {
    if let Ok(rd) = fs::read_dir(dest) {
        for child in rd.flatten() {
            let path = child.path();
            let is_real_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            let _ = if is_real_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
    if created {
        let _ = fs::remove_dir(dest);
    }
}

struct Unpacker<'a> {
    dest: &'a Path,
    limits: &'a Limits,
    /// Directories known to exist as real directories (relative, `/`-joined).
    dirs: HashSet<String>,
    /// Files and symlinks written.
    leaves: HashSet<String>,
    /// Symlinks written.
    symlinks: HashSet<String>,
    stats: UnpackStats,
}

impl Unpacker<'_> {
    fn run(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        // Backstop on the decompressed stream as a whole (headers, long names, padding
        // included), on top of the per-entry checks below.
        let stream_cap = self
            .limits
            .max_uncompressed_bytes
            .saturating_add(self.limits.max_entries.saturating_mul(4096))
            .saturating_add(1 << 20);
        let tripped = Rc::new(Cell::new(false));
        let reader = CappedReader {
            inner: GzDecoder::new(bytes),
            remaining: stream_cap,
            tripped: tripped.clone(),
        };
        let max_uncompressed = self.limits.max_uncompressed_bytes;
        let malformed = |e: io::Error| {
            if tripped.get() {
                BundleError::TooLarge {
                    limit: Limit::UnpackUncompressedBytes,
                    max: max_uncompressed,
                }
            } else {
                BundleError::Malformed(e)
            }
        };

        let mut archive = tar::Archive::new(reader);
        let mut count: u64 = 0;
        for entry in archive.entries().map_err(malformed)? {
            let entry = entry.map_err(malformed)?;
            count += 1;
            if count > self.limits.max_entries {
                return Err(BundleError::TooLarge {
                    limit: Limit::UnpackEntries,
                    max: self.limits.max_entries,
                });
            }
            self.entry(entry, &malformed)?;
        }
        // Read to the end so the gzip trailer (CRC, length) is checked too.
        let mut reader = archive.into_inner();
        io::copy(&mut reader, &mut io::sink()).map_err(malformed)?;
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        malformed: &dyn Fn(io::Error) -> BundleError,
    ) -> Result<(), BundleError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: UnsafeReason| BundleError::UnsafePath {
            path: shown.clone(),
            reason,
        };
        let parts = parse_path(&raw).map_err(refuse)?;
        let rel = parts.join("/");
        let entry_type = entry.header().entry_type();

        match entry_type {
            tar::EntryType::Directory => {
                if parts.is_empty() {
                    return Ok(()); // `./`: the destination itself
                }
                self.check_parents(&parts).map_err(refuse)?;
                if self.leaves.contains(&rel) {
                    return Err(refuse(UnsafeReason::Duplicate));
                }
                self.ensure_dirs(&parts)
                    .map_err(|e| e.into_error(&refuse))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.check_leaf(&parts, &rel).map_err(refuse)?;
                let size = entry.size();
                let total = self.stats.bytes.saturating_add(size);
                if total > self.limits.max_uncompressed_bytes {
                    return Err(BundleError::TooLarge {
                        limit: Limit::UnpackUncompressedBytes,
                        max: self.limits.max_uncompressed_bytes,
                    });
                }
                let executable = entry.header().mode().map_err(malformed)? & 0o111 != 0;
                self.ensure_dirs(&parts[..parts.len() - 1])
                    .map_err(|e| e.into_error(&refuse))?;
                let path = self.path_of(&parts);
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| BundleError::io(&path, e))?;
                self.leaves.insert(rel);
                let written = copy_entry(&mut entry, &mut file, &path, malformed)?;
                if written != size {
                    return Err(malformed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry `{shown}` is truncated"),
                    )));
                }
                set_mode(&file, executable).map_err(|e| BundleError::io(&path, e))?;
                self.stats.files += 1;
                self.stats.bytes = total;
            }
            tar::EntryType::Symlink => {
                self.check_leaf(&parts, &rel).map_err(refuse)?;
                let target_raw = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let target_shown = String::from_utf8_lossy(&target_raw).into_owned();
                let Ok(target) = std::str::from_utf8(&target_raw) else {
                    return Err(refuse(UnsafeReason::EscapingSymlink {
                        target: target_shown,
                    }));
                };
                match check_link_target(parts.len() - 1, target) {
                    Ok(()) => {}
                    Err(LinkTargetProblem::Absolute) => {
                        return Err(refuse(UnsafeReason::AbsoluteSymlink {
                            target: target_shown,
                        }))
                    }
                    Err(LinkTargetProblem::Escaping) => {
                        return Err(refuse(UnsafeReason::EscapingSymlink {
                            target: target_shown,
                        }))
                    }
                }
                self.ensure_dirs(&parts[..parts.len() - 1])
                    .map_err(|e| e.into_error(&refuse))?;
                let path = self.path_of(&parts);
                make_symlink(target, &path).map_err(|e| BundleError::io(&path, e))?;
                self.leaves.insert(rel.clone());
                self.symlinks.insert(rel);
                self.stats.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                return Err(refuse(UnsafeReason::HardLink { target }));
            }
            tar::EntryType::Char => {
                return Err(refuse(UnsafeReason::SpecialFile {
                    kind: "character device",
                }))
            }
            tar::EntryType::Block => {
                return Err(refuse(UnsafeReason::SpecialFile {
                    kind: "block device",
                }))
            }
            tar::EntryType::Fifo => return Err(refuse(UnsafeReason::SpecialFile { kind: "fifo" })),
            other => {
                return Err(refuse(UnsafeReason::UnsupportedType {
                    byte: other.as_byte(),
                }))
            }
        }
        Ok(())
    }

    /// Checks for a file or symlink: named, not through a symlink, not a repeat.
    fn check_leaf(&self, parts: &[String], rel: &str) -> Result<(), UnsafeReason> {
        if parts.is_empty() {
            return Err(UnsafeReason::Empty);
        }
        self.check_parents(parts)?;
        if self.leaves.contains(rel) || self.dirs.contains(rel) {
            return Err(UnsafeReason::Duplicate);
        }
        Ok(())
    }

    /// No proper ancestor of the path may be a symlink from this archive.
    fn check_parents(&self, parts: &[String]) -> Result<(), UnsafeReason> {
        for i in 1..parts.len() {
            let prefix = parts[..i].join("/");
            if self.symlinks.contains(&prefix) {
                return Err(UnsafeReason::ThroughSymlink { link: prefix });
            }
        }
        Ok(())
    }

    /// Creates `parts` (and its ancestors) as real directories, one level at a time,
    /// refusing to reuse anything that is not a real directory.
    fn ensure_dirs(&mut self, parts: &[String]) -> Result<(), DirError> {
        for i in 1..=parts.len() {
            let prefix = parts[..i].join("/");
            if self.dirs.contains(&prefix) {
                continue;
            }
            let path = self.path_of(&parts[..i]);
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta =
                        fs::symlink_metadata(&path).map_err(|e| DirError::Io(path.clone(), e))?;
                    if meta.file_type().is_symlink() {
                        return Err(DirError::Unsafe(UnsafeReason::ThroughSymlink {
                            link: prefix,
                        }));
                    }
                    if !meta.is_dir() {
                        return Err(DirError::Unsafe(UnsafeReason::Duplicate));
                    }
                }
                Err(e) => return Err(DirError::Io(path, e)),
            }
            self.dirs.insert(prefix);
        }
        Ok(())
    }

    fn path_of(&self, parts: &[String]) -> PathBuf {
        let mut p = self.dest.to_path_buf();
        p.extend(parts);
        p
    }
}

enum DirError {
    Unsafe(UnsafeReason),
    Io(PathBuf, io::Error),
}

impl DirError {
    fn into_error(self, refuse: &dyn Fn(UnsafeReason) -> BundleError) -> BundleError {
        match self {
            DirError::Unsafe(r) => refuse(r),
            DirError::Io(path, e) => BundleError::io(path, e),
        }
    }
}

/// Splits an archive path into validated normal components (`.` and empty ones dropped).
fn parse_path(raw: &[u8]) -> Result<Vec<String>, UnsafeReason> {
    let s = std::str::from_utf8(raw).map_err(|_| UnsafeReason::NotUtf8)?;
    if s.starts_with('/') || s.starts_with('\\') {
        return Err(UnsafeReason::Absolute);
    }
    let mut parts = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(UnsafeReason::ParentDir),
            _ => {
                if part.contains('\0') {
                    return Err(UnsafeReason::BadComponent);
                }
                // The platform must see exactly one plain name (on Windows this rejects
                // `C:`, `a\..` and the like).
                let mut cs = Path::new(part).components();
                match (cs.next(), cs.next()) {
                    (Some(Component::Normal(n)), None) if n == part => {}
                    (Some(Component::ParentDir), _) => return Err(UnsafeReason::ParentDir),
                    (Some(Component::RootDir | Component::Prefix(_)), _) => {
                        return Err(UnsafeReason::Absolute)
                    }
                    _ => return Err(UnsafeReason::BadComponent),
                }
                parts.push(part.to_owned());
            }
        }
    }
    Ok(parts)
}

fn copy_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &mut fs::File,
    path: &Path,
    malformed: &dyn Fn(io::Error) -> BundleError,
) -> Result<u64, BundleError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(malformed(e)),
        };
        file.write_all(&buf[..n])
            .map_err(|e| BundleError::io(path, e))?;
        written += n as u64;
    }
    Ok(written)
}

#[cfg(unix)]
fn set_mode(file: &fs::File, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(if executable {
        0o755
    } else {
        0o644
    }))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _executable: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, _path: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symlinks in code bundles are only supported on Unix",
    ))
}

/// A reader that fails once more than `remaining` bytes have been read through it.
struct CappedReader<R> {
    inner: R,
    remaining: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // Probe: is there anything beyond the cap?
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.tripped.set(true);
                    Err(io::Error::other("decompressed size cap exceeded"))
                }
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}
