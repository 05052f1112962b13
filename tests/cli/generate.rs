//! `certassert completions` and `certassert man`: the bash script completes subcommands
//! and options when bash runs it, every shell's script names them, and the man page
//! renders through groff without a warning and documents every subcommand.

use crate::{ok, run};
use std::process::{Command, Stdio};

/// The subcommands every build has (the emulator's are checked where they exist).
const SUBCOMMANDS: &[&str] = &[
    "key",
    "cert",
    "assertion",
    "inspect",
    "token",
    "doctor",
    "completions",
    "man",
];

/// What bash's programmable completion offers for `words` (the last one being completed).
fn bash_completes(script: &std::path::Path, words: &str) -> Vec<String> {
    let program = format!(
        "source {script}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
         _certassert certassert \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("certassert.bash");
    std::fs::write(&script, ok(dir.path(), &["completions", "bash"])).unwrap();
    let top = bash_completes(&script, "certassert ''");
    for sub in SUBCOMMANDS {
        assert!(top.iter().any(|w| w == sub), "{sub} not offered: {top:?}");
    }
    let to = bash_completes(&script, "certassert to");
    assert_eq!(to, ["token"], "completing 'to'");
    let options = bash_completes(&script, "certassert token --");
    for option in [
        "--key",
        "--cert",
        "--tenant",
        "--client-id",
        "--scope",
        "--format",
    ] {
        assert!(
            options.iter().any(|w| w == option),
            "{option} not offered: {options:?}"
        );
    }
    let nested = bash_completes(&script, "certassert cert ''");
    for sub in ["create", "show"] {
        assert!(
            nested.iter().any(|w| w == sub),
            "cert {sub} not offered: {nested:?}"
        );
    }
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = ok(dir.path(), &["completions", shell]);
        for word in SUBCOMMANDS.iter().chain(&["--client-id", "--key"]) {
            assert!(
                script.contains(word.trim_start_matches('-')),
                "{shell}: {word} missing"
            );
        }
    }
    let out = run(dir.path(), &["completions", "tcsh"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'tcsh'") && err.contains("bash, zsh, fish, powershell"),
        "{err}"
    );
}

#[test]
fn man_page_renders_without_warnings_and_documents_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let roff = ok(dir.path(), &["man"]);
    assert!(
        roff.starts_with(".ie") || roff.starts_with(".TH"),
        "{}",
        &roff[..40]
    );
    assert!(roff.contains(".TH certassert 1"), "no title line");
    let mut groff = Command::new("groff")
        // -P-cbou: plain text, no escape sequences, no overstrike for bold or underline.
        .args(["-k", "-man", "-Tutf8", "-ww", "-P-cbou"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff (Debian: groff-base)");
    std::io::Write::write_all(&mut groff.stdin.take().unwrap(), roff.as_bytes()).unwrap();
    let out = groff.wait_with_output().unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.is_empty(),
        "groff: {warnings}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for section in [
        "CERTASSERT KEY GENERATE",
        "CERTASSERT CERT CREATE",
        "CERTASSERT CERT SHOW",
        "CERTASSERT ASSERTION",
        "CERTASSERT INSPECT",
        "CERTASSERT TOKEN",
        "CERTASSERT DOCTOR",
        "CERTASSERT COMPLETIONS",
    ] {
        assert!(text.contains(section), "no section {section}");
    }
    assert!(text.contains("--client-id"), "options are missing");
    assert!(
        text.contains("pkcs11:token=HSM"),
        "the description is missing"
    );
}
