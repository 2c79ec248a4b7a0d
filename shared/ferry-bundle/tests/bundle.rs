//! Pack/unpack round trips, determinism, ignore rules and hostile archives.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_bundle::{
    pack_dir, pack_dir_with_limits, sha256_hex, unpack_into, unpack_into_with_limits, BundleError,
    Limit, Limits, UnsafeReason,
};
use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// All files and symlinks under `root`, relative, sorted, with `/` separators.
fn listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.push(rel.to_str().unwrap().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn roundtrip(project: &Path) -> (TempDir, PathBuf) {
    let packed = pack_dir(project).unwrap();
    assert_eq!(packed.sha256, sha256_hex(&packed.bytes));
    let out = TempDir::new().unwrap();
    let dest = out.path().join("dest");
    unpack_into(&packed.bytes, &dest).unwrap();
    (out, dest)
}

/// A raw tar header whose path/link bytes are set directly, bypassing `tar`'s checks.
fn raw_header(path: &[u8], kind: EntryType, size: u64, link: Option<&[u8]>) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path);
    if let Some(link) = link {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    h.set_mode(0o644);
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn file(path: &str, data: &[u8]) -> (Header, Vec<u8>) {
    (
        raw_header(path.as_bytes(), EntryType::Regular, data.len() as u64, None),
        data.to_vec(),
    )
}

fn symlink(path: &str, target: &str) -> (Header, Vec<u8>) {
    (
        raw_header(
            path.as_bytes(),
            EntryType::Symlink,
            0,
            Some(target.as_bytes()),
        ),
        Vec::new(),
    )
}

fn gz(raw: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(raw).unwrap();
    enc.finish().unwrap()
}

fn archive(entries: Vec<(Header, Vec<u8>)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (h, data) in entries {
        b.append(&h, data.as_slice()).unwrap();
    }
    gz(&b.into_inner().unwrap())
}

/// A sandbox: `dest` to unpack into and an `outside` sibling that must never appear.
struct Sandbox {
    tmp: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        fs::create_dir(tmp.path().join("dest")).unwrap();
        Sandbox { tmp }
    }
    fn dest(&self) -> PathBuf {
        self.tmp.path().join("dest")
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    /// Unpacks, expects an error, and checks `dest` was emptied again.
    fn reject(&self, bytes: &[u8]) -> BundleError {
        let err = unpack_into(bytes, &self.dest()).expect_err("archive must be rejected");
        assert_eq!(
            listing(&self.dest()),
            Vec::<String>::new(),
            "dest not emptied"
        );
        assert!(!err.to_string().is_empty());
        err
    }
    fn assert_no_escape(&self, names: &[&str]) {
        for n in names {
            let p = self.root().join(n);
            assert!(
                fs::symlink_metadata(&p).is_err(),
                "{} was written",
                p.display()
            );
        }
        let mut top: Vec<_> = fs::read_dir(self.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert!(
            top.iter().all(|n| n == "dest" || n == "outside"),
            "unexpected: {top:?}"
        );
    }
}

fn unsafe_reason(err: BundleError) -> UnsafeReason {
    match err {
        BundleError::UnsafePath { reason, .. } => reason,
        other => panic!("expected UnsafePath, got {other:?}"),
    }
}

// ---------------------------------------------------------------- packing

fn sample_project() -> TempDir {
    let t = TempDir::new().unwrap();
    let r = t.path();
    write(r, "flow.py", b"print('hi')\n");
    write(r, "lib/util.py", b"X = 1\n");
    write(r, "lib/deep/z.py", b"Z = 2\n");
    write(r, ".env.example", b"A=1\n");
    t
}

#[test]
fn pack_is_deterministic_across_mtime_and_location() {
    let a = sample_project();
    let first = pack_dir(a.path()).unwrap();
    assert_eq!(first.sha256, sha256_hex(&first.bytes));
    assert_eq!(first.sha256.len(), 64);
    assert_eq!(first.files, 4);

    // Touch every file (rewrite with same content, move mtime far back).
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    for rel in ["flow.py", "lib/util.py", "lib/deep/z.py", ".env.example"] {
        let p = a.path().join(rel);
        let content = fs::read(&p).unwrap();
        fs::write(&p, &content).unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let second = pack_dir(a.path()).unwrap();
    assert_eq!(first.bytes, second.bytes);
    assert_eq!(first.sha256, second.sha256);

    // Same contents elsewhere, created in another order: same bundle.
    let b = TempDir::new().unwrap();
    write(b.path(), "lib/deep/z.py", b"Z = 2\n");
    write(b.path(), ".env.example", b"A=1\n");
    write(b.path(), "lib/util.py", b"X = 1\n");
    write(b.path(), "flow.py", b"print('hi')\n");
    assert_eq!(pack_dir(b.path()).unwrap().sha256, first.sha256);

    // A content change changes the digest.
    write(b.path(), "lib/util.py", b"X = 2\n");
    assert_ne!(pack_dir(b.path()).unwrap().sha256, first.sha256);
}

#[test]
fn archive_layout_is_normalised() {
    let p = sample_project();
    let packed = pack_dir(p.path()).unwrap();
    // gzip header: magic, deflate, no flags, mtime 0, OS unknown.
    assert_eq!(&packed.bytes[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&packed.bytes[4..8], &[0, 0, 0, 0]);
    assert_eq!(packed.bytes[9], 255);

    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(packed.bytes.as_slice()));
    let mut paths = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.entry_type(), EntryType::Regular);
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        assert!(matches!(h.mode().unwrap(), 0o644 | 0o755));
        paths.push(String::from_utf8(e.path_bytes().into_owned()).unwrap());
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert_eq!(
        paths,
        [".env.example", "flow.py", "lib/deep/z.py", "lib/util.py"]
    );
}

#[test]
fn ignore_files_and_git_dir_are_honoured() {
    let t = TempDir::new().unwrap();
    let r = t.path();
    write(r, ".gitignore", b"*.log\nbuild/\n");
    write(r, ".ferryignore", b"secrets.txt\ndata/\n");
    write(r, ".ignore", b"scratch.py\n");
    write(r, "flow.py", b"ok");
    write(r, "run.log", b"nope");
    write(r, "build/out.bin", b"nope");
    write(r, "secrets.txt", b"nope");
    write(r, "data/big.csv", b"nope");
    write(r, "scratch.py", b"nope");
    write(r, ".hidden/keep.txt", b"hidden files are kept");
    write(r, ".git/config", b"[core]");
    write(r, ".git/HEAD", b"ref: refs/heads/main");
    write(r, "pkg/.gitignore", b"gen_*.py\n");
    write(r, "pkg/gen_a.py", b"nope");
    write(r, "pkg/real.py", b"ok");
    write(r, "pkg/.git", b"gitdir: ../.git/modules/pkg"); // submodule-style .git file

    let (_keep, dest) = roundtrip(r);
    assert_eq!(
        listing(&dest),
        vec![
            ".ferryignore",
            ".gitignore",
            ".hidden/keep.txt",
            ".ignore",
            "flow.py",
            "pkg/.gitignore",
            "pkg/real.py",
        ]
    );
}

#[cfg(unix)]
#[test]
fn executable_bit_survives_round_trip() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new().unwrap();
    write(t.path(), "run.sh", b"#!/bin/sh\necho hi\n");
    write(t.path(), "data.txt", b"x");
    write(t.path(), "odd.txt", b"y");
    fs::set_permissions(t.path().join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(t.path().join("odd.txt"), fs::Permissions::from_mode(0o600)).unwrap();

    let (_keep, dest) = roundtrip(t.path());
    let mode = |n: &str| fs::metadata(dest.join(n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("data.txt"), 0o644);
    assert_eq!(mode("odd.txt"), 0o644);

    // Only the exec bit matters to the digest, not the rest of the mode.
    let before = pack_dir(t.path()).unwrap().sha256;
    fs::set_permissions(t.path().join("run.sh"), fs::Permissions::from_mode(0o751)).unwrap();
    fs::set_permissions(t.path().join("odd.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(pack_dir(t.path()).unwrap().sha256, before);
    fs::set_permissions(t.path().join("odd.txt"), fs::Permissions::from_mode(0o744)).unwrap();
    assert_ne!(pack_dir(t.path()).unwrap().sha256, before);
}

#[cfg(unix)]
#[test]
fn safe_relative_symlinks_round_trip() {
    use std::os::unix::fs::symlink as ln;
    let t = TempDir::new().unwrap();
    let r = t.path();
    write(r, "lib/v1/tool.sh", b"tool");
    ln("v1", r.join("lib/current")).unwrap();
    fs::create_dir(r.join("bin")).unwrap();
    ln("../lib/v1/tool.sh", r.join("bin/tool")).unwrap();
    ln("bin/tool", r.join("top")).unwrap();

    let packed = pack_dir(r).unwrap();
    assert_eq!(packed.files, 4);
    let out = TempDir::new().unwrap();
    let dest = out.path().join("dest");
    let stats = unpack_into(&packed.bytes, &dest).unwrap();
    assert_eq!(stats.files, 1);
    assert_eq!(stats.symlinks, 3);
    assert_eq!(stats.bytes, 4);
    assert_eq!(
        fs::read_link(dest.join("lib/current")).unwrap(),
        Path::new("v1")
    );
    assert_eq!(
        fs::read_link(dest.join("bin/tool")).unwrap(),
        Path::new("../lib/v1/tool.sh")
    );
    assert_eq!(fs::read(dest.join("top")).unwrap(), b"tool");
    assert_eq!(fs::read(dest.join("lib/current/tool.sh")).unwrap(), b"tool");
}

#[cfg(unix)]
#[test]
fn pack_rejects_symlinks_leaving_the_project() {
    use std::os::unix::fs::symlink as ln;
    for target in ["../outside", "/etc/passwd", "sub/../../x"] {
        let t = TempDir::new().unwrap();
        let proj = t.path().join("proj");
        write(&proj, "flow.py", b"ok");
        ln(target, proj.join("escape")).unwrap();
        match pack_dir(&proj) {
            Err(e @ BundleError::UnsafeSymlink { .. }) => {
                assert!(e.to_string().contains(".ferryignore"), "{e}");
            }
            other => panic!("{target}: expected UnsafeSymlink, got {other:?}"),
        }
        // ... and ignoring it is the fix.
        write(&proj, ".ferryignore", b"escape\n");
        assert_eq!(pack_dir(&proj).unwrap().files, 2);
    }
}

#[test]
fn pack_size_caps() {
    let t = TempDir::new().unwrap();
    // Incompressible-ish bytes from an LCG.
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    write(t.path(), "blob.bin", &noise);

    let small_compressed = Limits {
        max_compressed_bytes: 50_000,
        ..Limits::DEFAULT
    };
    let err = pack_dir_with_limits(t.path(), &small_compressed).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::TooLarge {
                limit: Limit::PackCompressedBytes,
                max: 50_000
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(".ferryignore"));

    let small_raw = Limits {
        max_uncompressed_bytes: 100_000,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        pack_dir_with_limits(t.path(), &small_raw),
        Err(BundleError::TooLarge {
            limit: Limit::PackUncompressedBytes,
            ..
        })
    ));

    write(t.path(), "a", b"1");
    let few = Limits {
        max_entries: 1,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        pack_dir_with_limits(t.path(), &few),
        Err(BundleError::TooLarge {
            limit: Limit::PackEntries,
            ..
        })
    ));
    assert!(pack_dir(t.path()).is_ok());
}

#[test]
fn long_paths_round_trip() {
    let t = TempDir::new().unwrap();
    let long = format!("{}/{}.py", "d".repeat(80), "f".repeat(90));
    write(t.path(), &long, b"long");
    let (_keep, dest) = roundtrip(t.path());
    assert_eq!(listing(&dest), vec![long.clone()]);
    assert_eq!(fs::read(dest.join(&long)).unwrap(), b"long");
}

// ---------------------------------------------------------------- verify / unpack basics

#[test]
fn dest_must_be_empty_and_is_created_when_missing() {
    let p = sample_project();
    let packed = pack_dir(p.path()).unwrap();
    let out = TempDir::new().unwrap();
    write(out.path(), "full/x", b"already here");
    assert!(matches!(
        unpack_into(&packed.bytes, &out.path().join("full")),
        Err(BundleError::DestNotEmpty { .. })
    ));
    assert_eq!(
        fs::read(out.path().join("full/x")).unwrap(),
        b"already here"
    );

    let nested = out.path().join("a/b/c");
    let stats = unpack_into(&packed.bytes, &nested).unwrap();
    assert_eq!(stats.files, 4);
    assert_eq!(fs::read(nested.join("lib/deep/z.py")).unwrap(), b"Z = 2\n");
}

#[test]
fn failed_unpack_removes_a_dest_it_created() {
    let out = TempDir::new().unwrap();
    let dest = out.path().join("new");
    let bytes = archive(vec![file("ok.txt", b"fine"), file("../evil", b"x")]);
    assert!(unpack_into(&bytes, &dest).is_err());
    assert!(!dest.exists());
    assert!(!out.path().join("evil").exists());
}

#[test]
fn garbage_is_malformed() {
    let s = Sandbox::new();
    assert!(matches!(
        s.reject(b"definitely not gzip"),
        BundleError::Malformed(_)
    ));
    // Truncated bundle.
    let p = sample_project();
    let packed = pack_dir(p.path()).unwrap();
    let cut = &packed.bytes[..packed.bytes.len() / 2];
    assert!(matches!(s.reject(cut), BundleError::Malformed(_)));
}

#[test]
fn benign_hand_built_archive_with_dot_prefixes() {
    let s = Sandbox::new();
    let mut dir = raw_header(b"./", EntryType::Directory, 0, None);
    dir.set_mode(0o755);
    dir.set_cksum();
    let bytes = archive(vec![
        (dir, Vec::new()),
        (
            raw_header(b"./sub/", EntryType::Directory, 0, None),
            Vec::new(),
        ),
        file("./sub/a.txt", b"a"),
        symlink("sub/link", "a.txt"),
        symlink("sub/up", ".."),
        symlink("here", "."),
    ]);
    let stats = unpack_into(&bytes, &s.dest()).unwrap();
    assert_eq!(stats.files, 1);
    assert_eq!(stats.symlinks, 3);
    assert_eq!(fs::read(s.dest().join("sub/link")).unwrap(), b"a");
}

// ---------------------------------------------------------------- hostile archives

#[test]
fn rejects_parent_dir_path() {
    let s = Sandbox::new();
    let err = s.reject(&archive(vec![file("ok.txt", b"ok"), file("../evil", b"x")]));
    assert_eq!(unsafe_reason(err), UnsafeReason::ParentDir);
    s.assert_no_escape(&["evil"]);
}

#[test]
fn rejects_absolute_path() {
    let s = Sandbox::new();
    let target = s.root().join("abs_evil");
    let bytes = archive(vec![file(target.to_str().unwrap(), b"x")]);
    let err = s.reject(&bytes);
    assert_eq!(unsafe_reason(err), UnsafeReason::Absolute);
    s.assert_no_escape(&["abs_evil"]);
}

#[test]
fn rejects_dotdot_inside_path() {
    let s = Sandbox::new();
    let err = s.reject(&archive(vec![
        file("a/ok.txt", b"ok"),
        file("a/../../evil", b"x"),
    ]));
    assert_eq!(unsafe_reason(err), UnsafeReason::ParentDir);
    s.assert_no_escape(&["evil"]);
}

#[test]
fn rejects_symlink_to_absolute_dir_then_file_under_it() {
    let s = Sandbox::new();
    let outside = s.root().join("outside");
    fs::create_dir(&outside).unwrap();
    let bytes = archive(vec![
        symlink("link", outside.to_str().unwrap()),
        file("link/passwd", b"pwned"),
    ]);
    let err = s.reject(&bytes);
    assert!(matches!(
        unsafe_reason(err),
        UnsafeReason::AbsoluteSymlink { .. }
    ));
    assert!(!outside.join("passwd").exists());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    // The classic form, literally /etc.
    let err = s.reject(&archive(vec![
        symlink("etc", "/etc"),
        file("etc/ferry-bundle-test-must-not-exist", b"pwned"),
    ]));
    assert!(matches!(
        unsafe_reason(err),
        UnsafeReason::AbsoluteSymlink { .. }
    ));
    assert!(!Path::new("/etc/ferry-bundle-test-must-not-exist").exists());
    s.assert_no_escape(&[]);
}

#[test]
fn rejects_escaping_relative_symlinks() {
    for (link, target) in [
        ("x", "../.."),
        ("x", ".."),
        ("d/x", "../../evil"),
        ("x", "d/../../evil"),
    ] {
        let s = Sandbox::new();
        let err = s.reject(&archive(vec![symlink(link, target), file("x2", b"x")]));
        assert!(
            matches!(unsafe_reason(err), UnsafeReason::EscapingSymlink { .. }),
            "{link} -> {target}"
        );
        s.assert_no_escape(&["evil"]);
    }
}

#[test]
fn rejects_writing_through_an_archive_symlink() {
    // An allowed in-bounds link, then entries that try to go through it.
    let s = Sandbox::new();
    let err = s.reject(&archive(vec![symlink("a", "."), file("a/x", b"x")]));
    assert_eq!(
        unsafe_reason(err),
        UnsafeReason::ThroughSymlink {
            link: "a".to_owned()
        }
    );

    let err = s.reject(&archive(vec![
        symlink("a", "."),
        file("a/../../evil", b"x"),
    ]));
    assert_eq!(unsafe_reason(err), UnsafeReason::ParentDir);

    // sub/up -> .. is in bounds, but sub/up/.. would not be; no entry may pass through it.
    let err = s.reject(&archive(vec![
        symlink("sub/up", ".."),
        file("sub/up/evil", b"x"),
    ]));
    assert!(matches!(
        unsafe_reason(err),
        UnsafeReason::ThroughSymlink { .. }
    ));

    // A file entry on top of an existing link is a duplicate, not a write through it.
    let err = s.reject(&archive(vec![
        file("real.txt", b"r"),
        symlink("l", "real.txt"),
        file("l", b"overwrite"),
    ]));
    assert_eq!(unsafe_reason(err), UnsafeReason::Duplicate);
    s.assert_no_escape(&["evil"]);
}

#[test]
fn rejects_hard_links() {
    let s = Sandbox::new();
    let err = s.reject(&archive(vec![
        file("ok.txt", b"ok"),
        (
            raw_header(b"h", EntryType::Link, 0, Some(b"/etc/passwd")),
            Vec::new(),
        ),
    ]));
    assert_eq!(
        unsafe_reason(err),
        UnsafeReason::HardLink {
            target: "/etc/passwd".to_owned()
        }
    );
    // Even an in-bundle hard link is refused.
    let err = s.reject(&archive(vec![
        file("ok.txt", b"ok"),
        (
            raw_header(b"h", EntryType::Link, 0, Some(b"ok.txt")),
            Vec::new(),
        ),
    ]));
    assert!(matches!(unsafe_reason(err), UnsafeReason::HardLink { .. }));
    s.assert_no_escape(&[]);
}

#[test]
fn rejects_devices_and_fifos() {
    for (kind, name) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
    ] {
        let s = Sandbox::new();
        let err = s.reject(&archive(vec![(
            raw_header(b"dev", kind, 0, None),
            Vec::new(),
        )]));
        assert_eq!(unsafe_reason(err), UnsafeReason::SpecialFile { kind: name });
        s.assert_no_escape(&[]);
    }
}

#[test]
fn rejects_gzip_bomb_over_the_cap() {
    // 64 MiB of zeros compresses to ~64 KiB; cap unpacking at 8 MiB.
    let chunk = vec![0u8; 8 * 1024 * 1024];
    let mut entries = Vec::new();
    for i in 0..8 {
        entries.push(file(&format!("zeros{i}"), &chunk));
    }
    let bytes = archive(entries);
    assert!(bytes.len() < 1024 * 1024, "{}", bytes.len());
    let limits = Limits {
        max_uncompressed_bytes: 8 * 1024 * 1024 + 100,
        ..Limits::DEFAULT
    };
    let s = Sandbox::new();
    let err = unpack_into_with_limits(&bytes, &s.dest(), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::TooLarge {
                limit: Limit::UnpackUncompressedBytes,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(listing(&s.dest()), Vec::<String>::new());
}

#[test]
fn rejects_declared_size_over_default_cap_before_reading() {
    // A header claiming 2 GiB, with none of the data behind it.
    let h = raw_header(b"huge", EntryType::Regular, 2 * 1024 * 1024 * 1024, None);
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&[0u8; 4096]);
    let s = Sandbox::new();
    let err = s.reject(&gz(&raw));
    assert!(
        matches!(
            err,
            BundleError::TooLarge {
                limit: Limit::UnpackUncompressedBytes,
                max
            } if max == Limits::DEFAULT.max_uncompressed_bytes
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_too_many_entries_and_oversized_input() {
    let entries = (0..20).map(|i| file(&format!("f{i}"), b"x")).collect();
    let bytes = archive(entries);
    let s = Sandbox::new();
    let few = Limits {
        max_entries: 10,
        ..Limits::DEFAULT
    };
    let err = unpack_into_with_limits(&bytes, &s.dest(), &few).unwrap_err();
    assert!(matches!(
        err,
        BundleError::TooLarge {
            limit: Limit::UnpackEntries,
            max: 10
        }
    ));
    assert_eq!(listing(&s.dest()), Vec::<String>::new());

    let tiny = Limits {
        max_compressed_bytes: 10,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        unpack_into_with_limits(&bytes, &s.dest(), &tiny),
        Err(BundleError::TooLarge {
            limit: Limit::UnpackCompressedBytes,
            ..
        })
    ));
}

#[test]
fn decompressed_stream_backstop() {
    // A GNU long-name entry of 4 MiB: no file data at all, but a big stream.
    let name = vec![b'n'; 4 * 1024 * 1024];
    let mut h = Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_size(name.len() as u64);
    h.set_entry_type(EntryType::GNULongName);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&name);
    raw.extend_from_slice(&file("x", b"x").0.as_bytes()[..]);
    raw.extend_from_slice(&[0u8; 2048]);
    let limits = Limits {
        max_uncompressed_bytes: 1024,
        max_entries: 1,
        ..Limits::DEFAULT
    };
    let s = Sandbox::new();
    let err = unpack_into_with_limits(&gz(&raw), &s.dest(), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::TooLarge {
                limit: Limit::UnpackUncompressedBytes,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(listing(&s.dest()), Vec::<String>::new());
}
