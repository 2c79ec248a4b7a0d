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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    write_atomically(&bundle_file, bundle)?;
    write_atomically(path, text.as_bytes())
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
    fn a_bad_entrypoint_in_a_manifest_is_an_error_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "flow: etl\nname: n\nentrypoint: ../up.sh\n").unwrap();
        let e = super::read(&path).unwrap_err().to_string();
        assert!(e.contains("entrypoint: "), "{e}");
        assert!(e.contains("relative to the project directory"), "{e}");
    }
}
