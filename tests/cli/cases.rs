//! The trycmd cases in `tests/cmd/` (see the crate comment for their layout and how to
//! regenerate them), and the rules every case follows.

use std::path::{Path, PathBuf};

/// The case directories this build runs: the feature-specific ones by the build's features.
fn case_dirs() -> Vec<&'static str> {
    let mut dirs = vec!["help", "args"];
    dirs.push(if cfg!(feature = "pkcs11") {
        "pkcs11"
    } else {
        "no-pkcs11"
    });
    dirs.push(if cfg!(feature = "tpm") {
        "tpm"
    } else {
        "no-tpm"
    });
    // The top-level help lists the emulator and demo commands only when they are built.
    dirs.push(if cfg!(feature = "emulator") {
        "emulator"
    } else {
        "no-emulator"
    });
    dirs.push(if cfg!(feature = "serve") {
        "serve"
    } else {
        "no-serve"
    });
    dirs
}

fn cmd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd")
}

/// The `.toml` files of `dir`, sorted.
fn tomls(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(cmd_dir().join(dir))
        .unwrap_or_else(|e| panic!("tests/cmd/{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    out.sort();
    out
}

#[test]
fn cmd_cases() {
    let cases = trycmd::TestCases::new();
    cases.default_bin_path(env!("CARGO_BIN_EXE_certassert"));
    for dir in case_dirs() {
        cases.case(format!("tests/cmd/{dir}/*.toml"));
    }
    cases.run();
}

/// Each case runs in an empty environment and checks both outputs whole; a failing case
/// (exit 1, other than a lint report) says one `error:` line, last, with nothing on stdout.
/// The runs equal their snapshots, so checking the snapshots checks the runs.
#[test]
fn every_case_checks_its_whole_output() {
    let mut count = 0;
    for dir in case_dirs() {
        for toml in tomls(dir) {
            count += 1;
            let name = toml.display();
            let text = std::fs::read_to_string(&toml).unwrap();
            let has = |line: &str| text.lines().any(|l| l.trim() == line);
            let field = |key: &str| text.lines().any(|l| l.starts_with(&format!("{key} = ")));
            assert!(has("env.inherit = false"), "{name}: env.inherit = false");
            for (key, ext) in [("stdout", "stdout"), ("stderr", "stderr")] {
                assert!(
                    field(key) || toml.with_extension(ext).exists(),
                    "{name}: no {key} = … nor .{ext} file: trycmd would not check it"
                );
            }
            // A failure (exit 1) other than a report on stdout (`inspect`'s, `stderr = ""`).
            if has("status.code = 1") && !field("stderr") {
                assert!(
                    has("stdout = \"\""),
                    "{name}: a failure prints nothing on stdout"
                );
                let stderr = std::fs::read_to_string(toml.with_extension("stderr")).unwrap();
                assert_eq!(stderr.matches("error: ").count(), 1, "{name}: {stderr}");
                assert!(
                    stderr
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .starts_with("error: "),
                    "{name}: {stderr}"
                );
            }
        }
    }
    assert!(count > 40, "{count} cases"); // 45 in a build with none of pkcs11, tpm, emulator
                                          // The directories of the other feature set exist too (their cases run in that build).
    for dir in [
        "pkcs11",
        "no-pkcs11",
        "tpm",
        "no-tpm",
        "emulator",
        "no-emulator",
    ] {
        assert!(!tomls(dir).is_empty(), "tests/cmd/{dir}");
    }
}

/// Help texts fit 100 columns, whatever the terminal (clap wraps at max_term_width = 100).
#[test]
fn help_fits_100_columns() {
    for toml in tomls("help") {
        let Ok(help) = std::fs::read_to_string(toml.with_extension("stdout")) else {
            continue;
        };
        for line in help.lines() {
            assert!(line.chars().count() <= 100, "{}: {line}", toml.display());
        }
    }
}
