//! Ferry's code bundles: a flow's project directory packed as a gzip'd tar and stored
//! content-addressed by its sha256.
//!
//! # Format
//!
//! A bundle is a single-member gzip stream (fixed header: mtime 0, no file name, OS byte
//! 255) holding a GNU tar archive with:
//!
//! - one entry per regular file and per symlink, **sorted by path** (byte order of the
//!   UTF-8 relative path, `/`-separated). Directories are **not** stored: they are implied by
//!   the files under them, so empty directories are not bundled (as in git);
//! - mtime 0, uid/gid 0, empty user/group names;
//! - mode `0o755` for files with any executable bit, `0o644` otherwise, `0o777` for symlinks;
//! - long paths/link targets as GNU long-name entries.
//!
//! The same file contents, names and executable bits therefore always give byte-identical
//! bundles (for a given build of Ferry: the compressor is part of the output), so rebuilding
//! an unchanged project yields the same digest.
//!
//! # Packing ([`pack_dir`])
//!
//! The project directory is walked honouring `.gitignore` (even outside a git repository),
//! `.ignore` and `.ferryignore` files **inside the project directory** (ignore files in its
//! parents, `.git/info/exclude` and the user's global gitignore are not consulted, so the
//! bundle depends only on the directory's own contents). Hidden files are included; any
//! `.git` entry is always excluded, and so are `__pycache__/` and `.venv/` directories and
//! `*.pyc`/`*.pyo` files (rebuilt where the flow runs), and Ferry's own output: deployment
//! manifests (`.yaml`/`.yml` files that [`is_manifest`]), bundles written beside them
//! (`*.ferry-bundle.tar.gz`) and the paths given to [`pack_dir_excluding`], listed in
//! [`PackedBundle::left_out`]. Writing a manifest into the project therefore does not change
//! the next bundle. Symlinks are not followed: a symlink is stored as a
//! symlink if its target obeys the symlink rule below, otherwise packing fails with
//! [`BundleError::UnsafeSymlink`]. Sockets, fifos, devices and non-UTF-8 names fail with
//! [`BundleError::Unsupported`]. Size caps come from [`Limits`].
//!
//! # Unpacking ([`unpack_into`])
//!
//! Entries are streamed; each one is checked before it is written, and files are written
//! by this crate (never by `tar`'s own unpacker). An archive is refused
//! ([`BundleError::UnsafePath`]) if any entry:
//!
//! - has an absolute path, a `..` component, a root/drive-prefix component, or a non-UTF-8 path;
//! - has a parent that is a symlink created earlier in the archive (no writing *through* links);
//! - repeats a path already written;
//! - is a hard link (all hard links are refused), a character/block device, a fifo, or any
//!   type other than regular file, directory and symlink;
//! - is a symlink breaking the **symlink rule**: the target must be relative, its `..`
//!   components must all come first, and there may be no more of them than the link's depth
//!   (so `a/b/l -> ../x` is fine, `l -> ../x`, `l -> /etc`, `l -> d/../../x` are not). With
//!   link parents always real directories, this guarantees every link resolves inside the
//!   destination even when links point through other links.
//!
//! Total uncompressed bytes, entry count and input size are capped ([`Limits`]). Files are
//! created with `O_EXCL` semantics and modes `0o755`/`0o644` (the executable bit is kept).
//! On any error the destination is emptied again (and removed if this call created it), so a
//! half-unpacked bundle is never left behind.

#![warn(missing_docs)]

mod error;
mod pack;
mod unpack;

use sha2::{Digest, Sha256};

pub use error::{BundleError, Limit, UnsafeReason};
pub use pack::{
    is_manifest, pack_dir, pack_dir_excluding, pack_dir_with_limits, read_bundled_file,
    BundledFile, PackedBundle, BUNDLE_FILE_SUFFIX, MANIFEST_HEADER,
};
pub use unpack::{unpack_into, unpack_into_with_limits, UnpackStats};

/// Caps applied when packing and unpacking. [`Limits::default`] is what [`pack_dir`] and
/// [`unpack_into`] use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest gzip'd bundle, in bytes (default 256 MiB).
    pub max_compressed_bytes: u64,
    /// Largest total size of the files in a bundle, in bytes (default 1 GiB).
    pub max_uncompressed_bytes: u64,
    /// Most files + symlinks (+ directory entries, when unpacking) in a bundle (default 100 000).
    pub max_entries: u64,
}

impl Limits {
    /// The default caps.
    pub const DEFAULT: Limits = Limits {
        max_compressed_bytes: 256 * 1024 * 1024,
        max_uncompressed_bytes: 1024 * 1024 * 1024,
        max_entries: 100_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Lowercase hex sha256 of `bytes`: a bundle's address.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why a symlink target breaks the symlink rule.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkTargetProblem {
    Absolute,
    Escaping,
}

/// The symlink rule shared by pack and unpack: `target` must be non-empty and relative,
/// its `..` components must all come before any name, and there may be at most
/// `parent_depth` of them (the number of directories between the bundle root and the link).
pub(crate) fn check_link_target(
    parent_depth: usize,
    target: &str,
) -> Result<(), LinkTargetProblem> {
    if target.starts_with('/') || target.starts_with('\\') {
        return Err(LinkTargetProblem::Absolute);
    }
    if target.is_empty() || target.contains('\\') {
        return Err(LinkTargetProblem::Escaping);
    }
    // Also ask the platform: catches drive prefixes (`C:x`) where they mean something.
    for c in std::path::Path::new(target).components() {
        match c {
            std::path::Component::Prefix(_) | std::path::Component::RootDir => {
                return Err(LinkTargetProblem::Absolute)
            }
            std::path::Component::CurDir
            | std::path::Component::ParentDir
            | std::path::Component::Normal(_) => {}
        }
    }
    let mut ups = 0usize;
    let mut seen_name = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if seen_name => return Err(LinkTargetProblem::Escaping),
            ".." => {
                ups += 1;
                if ups > parent_depth {
                    return Err(LinkTargetProblem::Escaping);
                }
            }
            _ => seen_name = true,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_rule() {
        assert_eq!(check_link_target(0, "x"), Ok(()));
        assert_eq!(check_link_target(0, "."), Ok(()));
        assert_eq!(check_link_target(0, "./a/b"), Ok(()));
        assert_eq!(check_link_target(1, "../x"), Ok(()));
        assert_eq!(check_link_target(2, "../../x/y"), Ok(()));
        assert_eq!(check_link_target(1, ".."), Ok(()));
        assert_eq!(check_link_target(0, ".."), Err(LinkTargetProblem::Escaping));
        assert_eq!(
            check_link_target(1, "../.."),
            Err(LinkTargetProblem::Escaping)
        );
        assert_eq!(
            check_link_target(5, "a/../b"),
            Err(LinkTargetProblem::Escaping)
        );
        assert_eq!(check_link_target(5, ""), Err(LinkTargetProblem::Escaping));
        assert_eq!(
            check_link_target(5, "/etc"),
            Err(LinkTargetProblem::Absolute)
        );
        assert_eq!(
            check_link_target(5, "a\\..\\b"),
            Err(LinkTargetProblem::Escaping)
        );
    }

    #[test]
    fn digest() {
        let d = sha256_hex(b"abc");
        assert_eq!(
            d,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
