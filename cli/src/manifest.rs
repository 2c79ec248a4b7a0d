use std::path::Path;

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
            "{}: malformed deployment manifest: {at}{} (see `ferry deployment build --help` for the fields)",
            path.display(),
            e.inner()
        )
    })
}

/// Writes a manifest, atomically.
pub fn write(path: &Path, spec: &DeploymentSpec) -> Result<()> {
    let yaml = serde_yaml_ng::to_string(spec).context("encoding the manifest")?;
    let text = format!(
        "# Ferry deployment manifest: `ferry deployment apply {}`\n{yaml}",
        path.display()
    );
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
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
