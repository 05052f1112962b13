//! The README's examples paste: every block marked `<!-- readme-test: NAME … -->` is run
//! as it is written, with the built `certassert` first on PATH, in a scratch directory
//! (TMPDIR inside it, so a block's `mktemp -d` stays there too) that links the
//! checkout's `softhsm/` for the blocks that provision a token.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The fenced block after the marker `<!-- readme-test: name`, without its fences.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let marker = format!("<!-- readme-test: {name} ");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no block marked {marker:?}"))
        .1;
    let fence = after.find("```").expect("a fenced block after the marker");
    let body = &after[fence..];
    let start = body.find('\n').expect("a fence line") + 1;
    let end = body[start..].find("```").expect("a closing fence") + start;
    body[start..end].to_string()
}

/// Run `script` with bash (-e, -u, pipefail) the way a user pasting it would, but in
/// `dir` with the built binary first on PATH.
fn bash(dir: &Path, script: &str) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_certassert"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm"),
        dir.join("softhsm"),
    )
    .ok();
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("PATH", path)
        .env("TMPDIR", &tmp)
        .env("HOME", dir);
    // The blocks provision their own SoftHSM2 token (and say where its config is).
    common::without_certassert_env(&mut cmd).env_remove("SOFTHSM2_CONF");
    cmd.output().expect("bash runs")
}

fn assert_ran(name: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "README block {name} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// An assertion printed by a block: one JWT line whose header names the certificate.
fn assert_has_assertion(name: &str, stdout: &str) {
    let jwt = stdout
        .lines()
        .find(|l| l.starts_with("eyJ") && l.split('.').count() == 3)
        .unwrap_or_else(|| panic!("README block {name} printed no assertion:\n{stdout}"));
    let header = jwt.split('.').next().unwrap();
    use base64::Engine as _;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert!(header["x5t"].is_string(), "{header}");
}

#[test]
fn the_software_block_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ran("software", &bash(dir.path(), &block("software")));
    assert!(dir.path().join("app.key.pem").exists());
    assert!(
        out.contains("\"keyCredentials\"") || out.contains("customKeyIdentifier"),
        "{out}"
    );
    assert_has_assertion("software", &out);
}

#[cfg(feature = "pkcs11")]
#[test]
fn the_softhsm_block_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ran("softhsm", &bash(dir.path(), &block("softhsm")));
    assert!(dir.path().join("app.cert.pem").exists());
    assert_has_assertion("softhsm", &out);
}

#[test]
fn the_inspect_example_says_what_the_readme_shows() {
    let text = block("inspect");
    let mut lines = text.lines();
    let command = lines
        .next()
        .and_then(|l| l.strip_prefix("$ "))
        .expect("the block starts with a $ command");
    let shown: Vec<&str> = lines.skip_while(|l| !l.starts_with("error")).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = bash(dir.path(), command);
    assert_eq!(out.status.code(), Some(1), "inspect exits 1 on errors");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("error"))
        .collect();
    assert_eq!(said, shown);
}

/// Every example in `--help` pastes: a key reference with `;`, `?` or `&` is quoted (an
/// unquoted `;` ends the command), and an example longer than the help's width is
/// continued with a backslash, never wrapped mid-command. The help texts are the
/// reviewed snapshots under tests/cmd/ (the cli test checks them against the binary).
#[test]
fn help_examples_paste() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd");
    let mut problems = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap().flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_none_or(|e| e != "stdout") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                // Examples are indented; prose may start with the command's name too.
                if !line.starts_with("  ") || !line.trim_start().starts_with("certassert ") {
                    continue;
                }
                for word in line.split_whitespace() {
                    let is_ref = ["pkcs11:", "piv:", "tpm:", "file:"]
                        .iter()
                        .any(|p| word.starts_with(p));
                    if is_ref && word.contains([';', '?', '&']) {
                        problems.push(format!("{}: unquoted {word}", path.display()));
                    }
                }
                // trycmd shows a trailing backslash as '/'.
                let continued = line.ends_with('\\') || line.ends_with(" /");
                // A line right after an example, as indented or more, that is not
                // another example is the rest of this one, wrapped by the help's width.
                let next = lines.get(i + 1).copied().unwrap_or("");
                let indent = |l: &str| l.len() - l.trim_start().len();
                if !continued
                    && !next.trim().is_empty()
                    && indent(next) >= indent(line)
                    && !next.trim_start().starts_with("certassert ")
                    && !next.trim_start().starts_with('#')
                {
                    problems.push(format!("{}: wrapped mid-command: {line}", path.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
