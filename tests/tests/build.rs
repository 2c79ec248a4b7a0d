//! `ferry deployment build` and manifests as a newcomer meets them (issue 11, items 5, 10, 11):
//! the entrypoint is checked at build, durations take units, Prefect's spellings work,
//! manifests are written offline, round-trip every flag and stay out of the next bundle.

use std::path::Path;

use ferry_tests::{write_project, Server};

/// Files in `dir`, recursively, relative and sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

const FLOW: &str =
    "import os\n\n\ndef main(n=1):\n    print(n)\n\n\nasync def other():\n    pass\n";

#[test]
fn build_refuses_an_entrypoint_whose_function_or_file_is_missing_and_writes_nothing() {
    let s = Server::start();
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    let before = files_in(s.work.path());

    let err = s.fails(&[
        "deployment",
        "build",
        "flows/x.py:nothere",
        "-n",
        "a",
        "--path",
        "proj",
    ]);
    assert!(
        err.contains("function 'nothere' is not defined in flows/x.py (defined: main, other)"),
        "{err}"
    );

    let err = s.fails(&[
        "deployment",
        "build",
        "flows/gone.py:main",
        "-n",
        "a",
        "--path",
        "proj",
    ]);
    assert!(
        err.contains("entrypoint: flows/gone.py does not exist"),
        "{err}"
    );
    let root = std::fs::canonicalize(s.path("proj")).unwrap();
    assert!(
        err.contains(&format!("project directory {}", root.display())),
        "names the project root: {err}"
    );

    // A Python file without `:function` is not an executable to chmod: the advice says both ways.
    let err = s.fails(&[
        "deployment",
        "build",
        "flows/x.py",
        "-n",
        "a",
        "--path",
        "proj",
    ]);
    assert!(
        err.contains(
            "flows/x.py is a Python file: name its function (`flows/x.py:main`) or make it executable (chmod +x) with a shebang"
        ),
        "{err}"
    );

    assert_eq!(
        files_in(s.work.path()),
        before,
        "a refused build writes nothing"
    );
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());

    // The right entrypoint builds and applies.
    s.ok(&[
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "a",
        "--path",
        "proj",
        "-a",
    ]);
    assert_eq!(s.json(&["deployment", "ls"]).as_array().unwrap().len(), 1);
}
