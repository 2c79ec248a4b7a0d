//! Checks an entrypoint against the project before anything is written: the file exists, a
//! `file.py:function` defines the function at module top level, and a file run as a program
//! can be run. A static look at the text (the user's module is never imported).

use ferry_core::deployment::Entrypoint;

/// One file of the project, as the agent will find it in the bundle.
pub struct ProjectFile<'a> {
    /// Its contents.
    pub contents: &'a [u8],
    /// Whether any executable bit is set (the bundle keeps it).
    pub executable: bool,
}

/// Checks `entry` against its file. `None` = the file is not in the project: the caller says
/// where it looked. Errors are the message after `entrypoint: `.
pub fn check(entry: &Entrypoint, file: &ProjectFile<'_>) -> Result<(), String> {
    match entry {
        Entrypoint::Python { path, function } => {
            let source = String::from_utf8_lossy(file.contents);
            let defs = top_level_names(&source);
            if defs.names.iter().any(|n| n == function) {
                return Ok(());
            }
            let defined = if defs.functions.is_empty() {
                "it defines no function at top level".to_owned()
            } else {
                format!("defined: {}", defs.functions.join(", "))
            };
            Err(format!(
                "function '{function}' is not defined in {path} ({defined}); \
                 a flow is a function defined at the module's top level (`def {function}(...)`)"
            ))
        }
        Entrypoint::Executable { path } => {
            let python = path.ends_with(".py");
            let shebang = file.contents.starts_with(b"#!");
            if python && !(file.executable && shebang) {
                let main = top_level_names(&String::from_utf8_lossy(file.contents))
                    .functions
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "main".into());
                return Err(format!(
                    "{path} is a Python file: name its function (`{path}:{main}`) or make it \
                     executable (chmod +x) with a shebang (a first line like `#!/usr/bin/env python3`)"
                ));
            }
            if !file.executable {
                return Err(format!(
                    "{path} is not executable: make it executable (chmod +x {path}; the bundle keeps \
                     the bit), or give a Python entrypoint `file.py:function`"
                ));
            }
            Ok(())
        }
    }
}

/// The names a Python module binds at top level.
#[derive(Debug, Default, PartialEq)]
pub struct TopLevel {
    /// `def NAME(` / `async def NAME(`, in file order.
    pub functions: Vec<String>,
    /// Every bound name: functions, classes, assignments, imports.
    pub names: Vec<String>,
}

/// Scans module text for top-level bindings: lines at column 0 (`def`, `async def`, `class`,
/// `NAME =`, `NAME: T =`, `import`, `from … import`), and the same one level inside a
/// top-level `if`/`try`/`with` block (`try: from x import main except ImportError: def main`).
/// Lines inside triple-quoted strings are skipped.
pub fn top_level_names(source: &str) -> TopLevel {
    let mut out = TopLevel::default();
    let mut in_string: Option<&str> = None;
    // Indentation of the body of the current top-level compound statement, when it is one
    // whose body binds module names.
    let mut block: Option<Option<usize>> = None;
    for line in source.lines() {
        if let Some(q) = in_string {
            if line.matches(q).count() % 2 == 1 {
                in_string = None;
            }
            continue;
        }
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let binds = if indent == 0 {
            block = None;
            let header = [
                "if ", "elif ", "else:", "try:", "except", "finally:", "with ",
            ]
            .iter()
            .any(|k| body.starts_with(k));
            if header {
                block = Some(None);
            }
            true
        } else {
            match block {
                Some(None) => {
                    block = Some(Some(indent));
                    true
                }
                Some(Some(i)) => i == indent,
                None => false,
            }
        };
        if binds {
            scan_statement(body, &mut out);
        }
        for q in ["\"\"\"", "'''"] {
            if line.matches(q).count() % 2 == 1 {
                in_string = Some(q);
                break;
            }
        }
    }
    out
}

fn ident_prefix(s: &str) -> &str {
    let end = s
        .char_indices()
        .find(|(i, c)| !(c.is_alphanumeric() || *c == '_') || (*i == 0 && c.is_ascii_digit()))
        .map_or(s.len(), |(i, _)| i);
    &s[..end]
}

fn scan_statement(stmt: &str, out: &mut TopLevel) {
    let def = stmt
        .strip_prefix("async def ")
        .or_else(|| stmt.strip_prefix("def "));
    if let Some(rest) = def {
        let name = ident_prefix(rest.trim_start());
        if !name.is_empty() {
            out.functions.push(name.to_owned());
            out.names.push(name.to_owned());
        }
        return;
    }
    if let Some(rest) = stmt.strip_prefix("class ") {
        let name = ident_prefix(rest.trim_start());
        if !name.is_empty() {
            out.names.push(name.to_owned());
        }
        return;
    }
    let import = stmt.strip_prefix("import ").or_else(|| {
        stmt.split_once(" import ")
            .map(|(_, r)| r)
            .filter(|_| stmt.starts_with("from "))
    });
    if let Some(list) = import {
        let list = list.trim().trim_start_matches('(').trim_end_matches(')');
        for item in list.split(',') {
            let item = item.trim();
            let bound = item.rsplit_once(" as ").map_or(item, |(_, a)| a).trim();
            // `import a.b` binds `a`.
            let name = ident_prefix(bound);
            if !name.is_empty() {
                out.names.push(name.to_owned());
            }
        }
        return;
    }
    // `NAME = …`, `NAME: T = …`, `A = B = …`, `A, B = …`
    let mut rest = stmt;
    loop {
        let name = ident_prefix(rest);
        if name.is_empty() {
            return;
        }
        let after = rest[name.len()..].trim_start();
        if let Some(r) = after.strip_prefix(',') {
            if stmt.contains('=') {
                out.names.push(name.to_owned());
            }
            rest = r.trim_start();
            continue;
        }
        let assigned = (after.starts_with('=') && !after.starts_with("=="))
            || (after.starts_with(':') && after.contains('='));
        if assigned {
            out.names.push(name.to_owned());
            if let Some(r) = after.strip_prefix('=') {
                let r = r.trim_start();
                let next = ident_prefix(r);
                let after_next = r[next.len()..].trim_start();
                if !next.is_empty() && after_next.starts_with('=') && !after_next.starts_with("==")
                {
                    rest = r;
                    continue;
                }
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_a_module_binds_at_top_level() {
        let src = r#""""Docs.
def not_this():
"""
import os, sys as system
from pkg.mod import (alpha, beta as gamma)
import a.b

@flow(name="x")
def main(x=1):
    def inner():
        pass
    y = 2

async def other():
    pass

class Flow:
    def method(self):
        pass

VALUE = 3
typed: int = 4
first = second = 5
left, right = 1, 2
if VALUE == 3:
    pass
try:
    from fast import speedy
except ImportError:
    def speedy():
        pass
if __name__ == "__main__":
    main()
"#;
        let t = top_level_names(src);
        assert_eq!(t.functions, ["main", "other", "speedy"]);
        for n in [
            "os", "system", "alpha", "gamma", "a", "main", "other", "Flow", "VALUE", "typed",
            "first", "second", "left", "right", "speedy",
        ] {
            assert!(t.names.iter().any(|x| x == n), "{n}: {t:?}");
        }
        for n in [
            "not_this", "inner", "y", "method", "sys", "beta", "__name__",
        ] {
            assert!(!t.names.iter().any(|x| x == n), "{n}: {t:?}");
        }
    }

    fn file(contents: &str, executable: bool) -> ProjectFile<'_> {
        ProjectFile {
            contents: contents.as_bytes(),
            executable,
        }
    }

    #[test]
    fn a_missing_function_is_named_with_those_defined() {
        let e = Entrypoint::parse("flows/x.py:nothere").unwrap();
        let m = check(
            &e,
            &file(
                "def main():\n    pass\nasync def other():\n    pass\n",
                false,
            ),
        )
        .unwrap_err();
        assert!(
            m.starts_with("function 'nothere' is not defined in flows/x.py (defined: main, other)"),
            "{m}"
        );
        let ok = Entrypoint::parse("flows/x.py:main").unwrap();
        assert!(check(&ok, &file("def main():\n    pass\n", false)).is_ok());
    }

    #[test]
    fn a_python_file_without_function_gets_the_right_advice() {
        let e = Entrypoint::parse("flows/x.py").unwrap();
        let m = check(&e, &file("def run():\n    pass\n", false)).unwrap_err();
        assert!(
            m.starts_with("flows/x.py is a Python file: name its function (`flows/x.py:run`) or make it executable (chmod +x) with a shebang"),
            "{m}"
        );
        // Executable but no shebang: exec would fail the same way.
        assert!(check(&e, &file("def run():\n    pass\n", true)).is_err());
        assert!(check(&e, &file("#!/usr/bin/env python3\nprint(1)\n", true)).is_ok());
        let sh = Entrypoint::parse("bin/run.sh").unwrap();
        let m = check(&sh, &file("#!/bin/sh\n", false)).unwrap_err();
        assert!(m.contains("chmod +x bin/run.sh"), "{m}");
        assert!(check(&sh, &file("#!/bin/sh\n", true)).is_ok());
    }
}
