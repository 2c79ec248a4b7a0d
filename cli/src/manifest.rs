use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ferry_core::DeploymentSpec;

/// Reads a deployment manifest (YAML); unknown or mistyped fields are errors naming the field.
pub fn read(path: &Path) -> Result<DeploymentSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    // The path of the value at fault leads the message (`entrypoint: ...`,
    // `schedules[0].time_zone: unknown field ...`), whatever the value's own error says.
    serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).map_err(|e| {
        let at = match e.path().to_string() {
            p if p == "." => String::new(),
            p => format!("{p}: "),
        };
        anyhow::anyhow!(
            "{}: malformed deployment manifest: {at}{} (the fields are in docs/manifest.md)",
            path.display(),
            e.inner()
        )
    })
}

/// Where the bundle of the manifest at `path` is kept: beside it, `<stem>.ferry-bundle.tar.gz`
/// (`deploy/etl.yaml` → `deploy/etl.ferry-bundle.tar.gz`).
pub fn bundle_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "manifest".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}{}", ferry_bundle::BUNDLE_FILE_SUFFIX))
}

/// Writes a manifest and its bundle beside it (see [`bundle_path`]), each atomically, creating
/// the directory they go in. The bundle is written first: a manifest on disk always has its
/// bundle.
pub fn write(path: &Path, spec: &DeploymentSpec, bundle: &[u8]) -> Result<()> {
    let yaml = serde_yaml_ng::to_string(spec).context("encoding the manifest")?;
    let bundle_file = bundle_path(path);
    let bundle_name = bundle_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = format!(
        "{}: `ferry deployment apply {}`\n\
         # Its code bundle is {bundle_name} beside it (uploaded by apply). Fields: docs/manifest.md\n{yaml}",
        ferry_bundle::MANIFEST_HEADER,
        path.display()
    );
    let text = text + &unset_fields(spec);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    write_atomically(&bundle_file, bundle)?;
    write_atomically(path, text.as_bytes())
}

/// The optional fields `spec` leaves unset, as commented-out lines to uncomment: a manifest
/// shows every field the CLI can set.
fn unset_fields(spec: &DeploymentSpec) -> String {
    let fields: [(bool, &str, &str); 8] = [
        (
            spec.version.is_none(),
            "version: 1.2.3",
            "free-form, e.g. a git SHA (-v)",
        ),
        (
            spec.description.is_none(),
            "description: nightly ETL",
            "(-d)",
        ),
        (spec.tags.is_empty(), "tags: [etl]", "(-t)"),
        (
            spec.env.is_empty(),
            "env: {MODE: fast}",
            "environment of the flow process (-e)",
        ),
        (
            spec.timeout_seconds.is_none(),
            "timeout_seconds: 3600",
            "a run taking longer is killed and Failed (--timeout 1h)",
        ),
        (
            spec.concurrency_limit.is_none(),
            "concurrency_limit: 1",
            "most runs of this deployment at once (--concurrency-limit)",
        ),
        (
            spec.infra_block.is_none(),
            "infra_block: ecs/prod",
            "a task of its own per run on this profile (-ib)",
        ),
        (
            spec.infra_overrides.is_empty(),
            "infra_overrides: {cpu: 1024, memory: 2048}",
            "changes to the profile's task (--override)",
        ),
    ];
    let mut out = String::new();
    for (unset, example, meaning) in fields {
        if unset {
            if out.is_empty() {
                out.push_str("# Not set (uncomment to set; docs/manifest.md):\n");
            }
            out.push_str(&format!("# {example:<44} # {meaning}\n"));
        }
    }
    out
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mistyped_field_inside_a_schedule_is_an_error_naming_it_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etl-deployment.yaml");
        let yaml = "flow: etl\nname: nightly\nentrypoint: flows/etl.py:main\nschedules:\n  \
                    - cron: \"0 9 * * *\"\n    time_zone: Europe/Berlin\n";
        std::fs::write(&path, yaml).unwrap();
        let e = super::read(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field `time_zone`"), "{e}");
        assert!(
            e.contains("expected one of") && e.contains("`timezone`"),
            "{e}"
        );
        assert!(e.contains("schedules[0]"), "{e}");
        assert!(e.contains("etl-deployment.yaml"), "{e}");
    }

    #[test]
    fn unset_fields_are_written_as_comments_that_parse_when_uncommented() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy/m.yaml");
        let spec: ferry_core::DeploymentSpec = serde_yaml_ng::from_str(
            "flow: etl\nname: n\nentrypoint: flows/etl.py:main\ntimeout_seconds: 60\n",
        )
        .unwrap();
        super::write(&path, &spec, b"bundle").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# concurrency_limit: 1"), "{text}");
        assert!(
            !text.contains("# timeout_seconds"),
            "set fields are not repeated: {text}"
        );
        assert_eq!(super::read(&path).unwrap(), spec);
        assert_eq!(
            std::fs::read(dir.path().join("deploy/m.ferry-bundle.tar.gz")).unwrap(),
            b"bundle"
        );
        // Uncommented, every hint is a valid field.
        let uncommented: String = text
            .lines()
            .filter(|l| {
                !l.starts_with("# Ferry") && !l.starts_with("# Its") && !l.starts_with("# Not")
            })
            .map(|l| {
                l.strip_prefix("# ")
                    .map_or(l, |r| r.split(" #").next().unwrap())
                    .trim_end()
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, &uncommented).unwrap();
        let all = super::read(&path).unwrap_or_else(|e| panic!("{e:#}\n{uncommented}"));
        assert_eq!(all.concurrency_limit, Some(1));
        assert!(!all.infra_overrides.is_empty());
    }

    #[test]
    fn a_bad_entrypoint_in_a_manifest_is_an_error_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "flow: etl\nname: n\nentrypoint: ../up.sh\n").unwrap();
        let e = super::read(&path).unwrap_err().to_string();
        assert!(e.contains("entrypoint: "), "{e}");
        assert!(e.contains("relative to the project directory"), "{e}");
    }
}
