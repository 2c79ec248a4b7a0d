use std::path::Path;

use anyhow::{Context, Result};
use ferry_core::DeploymentSpec;

/// Reads a deployment manifest (YAML); unknown or mistyped fields are errors naming the field.
pub fn read(path: &Path) -> Result<DeploymentSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: malformed deployment manifest: {e} (see `ferry deployment build --help` for the fields)",
            path.display()
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
}
