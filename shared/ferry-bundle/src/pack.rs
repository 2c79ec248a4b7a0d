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
    /// Files of the project left out because they are Ferry's own output: deployment
    /// manifests, bundles written beside them (`*.ferry-bundle.tar.gz`) and the paths the caller
    /// excluded. Relative, `/`-separated, sorted. (The junk that is always left out —
    /// `__pycache__/`, `*.pyc`, `.venv/` and any other virtualenv, `.git` — is not listed.)
    pub left_out: Vec<String>,
}

/// The suffix of a bundle written beside a manifest (`deploy/etl.yaml` →
/// `deploy/etl.ferry-bundle.tar.gz`): never packed into another bundle.
pub const BUNDLE_FILE_SUFFIX: &str = ".ferry-bundle.tar.gz";

/// The first line of every manifest `ferry deployment build` writes starts with this.
pub const MANIFEST_HEADER: &str = "# Ferry deployment manifest";

/// Directory names never packed: they are rebuilt where the flow runs and differ from machine
/// to machine (so the digest of an unchanged project would change).
const JUNK_DIRS: [&str; 3] = [".git", "__pycache__", ".venv"];
/// A directory holding this file is a Python virtualenv (`venv/`, `env/`, …, whatever its
/// name): never packed, like `.venv/` (its interpreter links point outside the project).
const VENV_MARKER: &str = "pyvenv.cfg";
/// File-name suffixes never packed (compiled Python).
const JUNK_SUFFIXES: [&str; 2] = [".pyc", ".pyo"];

/// Whether `contents` (of a `.yaml`/`.yml` file) is a Ferry deployment manifest: written by
/// `ferry deployment build` (its header line), or by hand with the three required top-level
/// keys `flow:`, `name:` and `entrypoint:`.
pub fn is_manifest(contents: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(contents) else {
        return false;
    };
    if text.starts_with(MANIFEST_HEADER) {
        return true;
    }
    ["flow:", "name:", "entrypoint:"]
        .iter()
        .all(|key| text.lines().any(|l| l.starts_with(key)))
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
    pack(root, limits, &[])
}

/// [`pack_dir`], also leaving out `exclude`: paths that may not exist yet, such as the
/// manifest about to be written (paths outside `root` change nothing).
///
/// # Errors
/// As [`pack_dir`].
pub fn pack_dir_excluding(root: &Path, exclude: &[PathBuf]) -> Result<PackedBundle, BundleError> {
    pack(root, &Limits::DEFAULT, exclude)
}

fn pack(root: &Path, limits: &Limits, exclude: &[PathBuf]) -> Result<PackedBundle, BundleError> {
    let meta = fs::metadata(root).map_err(|e| BundleError::io(root, e))?;
    if !meta.is_dir() {
        return Err(BundleError::io(
            root,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        ));
    }

    let (items, left_out) = collect(root, limits, exclude)?;
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
        left_out,
    })
}

/// Walks `root` and returns what to bundle, sorted by path, and what was left out as Ferry's
/// own output.
fn collect(
    root: &Path,
    limits: &Limits,
    exclude: &[PathBuf],
) -> Result<(Vec<Item>, Vec<String>), BundleError> {
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
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            let dir = e.file_type().is_some_and(|t| t.is_dir());
            !(name == ".git"
                || (dir && JUNK_DIRS.contains(&name.as_ref()))
                || (dir && e.depth() > 0 && e.path().join(VENV_MARKER).is_file())
                || (!dir && JUNK_SUFFIXES.iter().any(|s| name.ends_with(s))))
        });
    let canonical_root = fs::canonicalize(root).map_err(|e| BundleError::io(root, e))?;
    let excluded: Vec<PathBuf> = exclude.iter().filter_map(|p| canonical_target(p)).collect();
    let mut left_out = Vec::new();

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
            if ferrys_own(&canonical_root.join(&rel), &rel, &excluded)? {
                left_out.push(rel);
                continue;
            }
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
    left_out.sort();
    Ok((items, left_out))
}

/// `path` made absolute, its directory part free of `.`, `..` and symlinks (the file itself
/// need not exist).
fn canonical_target(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = fs::canonicalize(path) {
        return Some(p);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::canonicalize(parent).ok().map(|p| p.join(name))
}

/// Whether a project file is Ferry's own output: an excluded path, a bundle written beside a
/// manifest, or a deployment manifest (a `.yaml`/`.yml` file up to 1 MiB that [`is_manifest`]).
fn ferrys_own(abs: &Path, rel: &str, excluded: &[PathBuf]) -> Result<bool, BundleError> {
    if excluded.iter().any(|p| p == abs) || rel.ends_with(BUNDLE_FILE_SUFFIX) {
        return Ok(true);
    }
    if !(rel.ends_with(".yaml") || rel.ends_with(".yml")) {
        return Ok(false);
    }
    let meta = fs::metadata(abs).map_err(|e| BundleError::io(abs, e))?;
    if meta.len() > 1024 * 1024 {
        return Ok(false);
    }
    let contents = fs::read(abs).map_err(|e| BundleError::io(abs, e))?;
    Ok(is_manifest(&contents))
}

/// One file read out of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledFile {
    /// Its contents.
    pub contents: Vec<u8>,
    /// Whether it is stored with the executable mode.
    pub executable: bool,
}

/// Reads the file at `path` (relative, `/`-separated) out of a bundle's bytes, following
/// symlinks inside the bundle; `None` when the bundle has no such file. For checks before a
/// bundle is used (is the entrypoint in it?); unpacking is [`crate::unpack_into`].
///
/// # Errors
/// [`BundleError::Io`] when the bytes are not a readable tar.gz.
pub fn read_bundled_file(bytes: &[u8], path: &str) -> Result<Option<BundledFile>, BundleError> {
    let here = Path::new("bundle");
    let mut wanted = normalize(path);
    // A few links deep at most: a loop of links finds nothing.
    for _ in 0..8 {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let entries = archive.entries().map_err(|e| BundleError::io(here, e))?;
        let mut link = None;
        for entry in entries {
            let mut entry = entry.map_err(|e| BundleError::io(here, e))?;
            let name = entry.path().map_err(|e| BundleError::io(here, e))?;
            if normalize(&name.to_string_lossy()) != wanted {
                continue;
            }
            match entry.header().entry_type() {
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(|e| BundleError::io(here, e))?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let dir = wanted.rsplit_once('/').map_or("", |(d, _)| d);
                    link = Some(normalize(&format!("{dir}/{target}")));
                    break;
                }
                tar::EntryType::Regular => {
                    let executable = entry.header().mode().unwrap_or(0) & 0o111 != 0;
                    let mut contents = Vec::new();
                    entry
                        .read_to_end(&mut contents)
                        .map_err(|e| BundleError::io(here, e))?;
                    return Ok(Some(BundledFile {
                        contents,
                        executable,
                    }));
                }
                _ => return Ok(None),
            }
        }
        match link {
            Some(next) => wanted = next,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// `a/./b/../c` → `a/c`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, contents: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    #[test]
    fn manifests_bundles_and_python_junk_stay_out_so_the_digest_holds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "flows/etl.py", "def main():\n    pass\n");
        write(root, "config/settings.yaml", "flow: not a manifest\n");
        let first = pack_dir_excluding(root, &[root.join("etl.yaml")]).unwrap();
        assert!(first.left_out.is_empty(), "{:?}", first.left_out);
        assert_eq!(first.files, 2);

        // What a build writes into the project, what Python leaves behind, a hand-written
        // manifest: none of it changes the bundle.
        write(
            root,
            "etl.yaml",
            &format!("{MANIFEST_HEADER}: `ferry deployment apply etl.yaml`\nflow: etl\n"),
        );
        write(root, "etl.ferry-bundle.tar.gz", "bytes");
        write(
            root,
            "deploy/prod.yml",
            "# by hand\nflow: etl\nname: prod\nentrypoint: flows/etl.py:main\n",
        );
        write(root, "flows/__pycache__/etl.cpython-312.pyc", "junk");
        write(root, "flows/old.pyc", "junk");
        write(root, ".venv/bin/python", "junk");
        write(root, "venv/pyvenv.cfg", "home = /usr/bin\n");
        write(root, "venv/bin/python", "junk");
        write(root, "out.txt", "soon excluded");
        let second = pack_dir_excluding(
            root,
            &[root.join("out.txt"), root.join("../elsewhere.yaml")],
        )
        .unwrap();
        assert_eq!(second.sha256, first.sha256);
        assert_eq!(
            second.left_out,
            [
                "deploy/prod.yml",
                "etl.ferry-bundle.tar.gz",
                "etl.yaml",
                "out.txt"
            ]
        );
        // A relative exclusion names the same file.
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(&root.join("out.txt"), &cwd);
        assert_eq!(
            pack_dir_excluding(root, &[rel]).unwrap().sha256,
            first.sha256
        );
    }

    /// `target` relative to `base` (both absolute).
    fn pathdiff(target: &Path, base: &Path) -> PathBuf {
        let t: Vec<_> = target.components().collect();
        let b: Vec<_> = base.components().collect();
        let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        for c in &t[common..] {
            out.push(c);
        }
        out
    }

    #[test]
    fn a_file_is_read_out_of_a_bundle_through_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "flows/etl.py", "def main():\n    pass\n");
        write(root, "bin/run.sh", "#!/bin/sh\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755))
                .unwrap();
            std::os::unix::fs::symlink("../flows/etl.py", root.join("bin/etl.py")).unwrap();
        }
        let packed = pack_dir(root).unwrap();
        let f = read_bundled_file(&packed.bytes, "flows/etl.py")
            .unwrap()
            .unwrap();
        assert_eq!(f.contents, b"def main():\n    pass\n");
        assert!(!f.executable);
        #[cfg(unix)]
        {
            assert!(
                read_bundled_file(&packed.bytes, "bin/run.sh")
                    .unwrap()
                    .unwrap()
                    .executable
            );
            let linked = read_bundled_file(&packed.bytes, "./bin/etl.py")
                .unwrap()
                .unwrap();
            assert_eq!(linked.contents, f.contents);
        }
        assert_eq!(
            read_bundled_file(&packed.bytes, "flows/gone.py").unwrap(),
            None
        );
        assert!(read_bundled_file(b"not a bundle", "x").is_err());
    }

    #[test]
    fn hand_written_and_built_manifests_are_recognised() {
        assert!(is_manifest(b"# Ferry deployment manifest: x\nflow: a\n"));
        assert!(is_manifest(b"flow: a\nname: b\nentrypoint: c.py:main\n"));
        assert!(!is_manifest(b"flow: a\nname: b\n"));
        assert!(!is_manifest(
            b"settings:\n  flow: a\n  name: b\n  entrypoint: c\n"
        ));
        assert!(!is_manifest(&[0xff, 0xfe]));
    }
}
