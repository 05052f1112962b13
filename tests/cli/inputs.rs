//! Every file the command reads, given what is not a file of that kind (`/dev/zero`, a
//! directory, a FIFO) or a file over its size limit, fails quickly with one clear error
//! naming the file and what it is (or the limit) — never hangs, never reads without end.
//! Standard input (`inspect -`) is read with the same limit. Each run has a deadline: a
//! command that blocks on a FIFO is killed and the test fails.
//!
//! The limits (`certassert::input`): key files, TSS2 key files and certificate files
//! 1 MiB, CA files 4 MiB, JWTs and `@FILE` values 64 KiB, secret files 4 KiB.

use super::*;
use std::io::Write as _;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Run `cmd`, killing it if it is still running after 15 s (then the test fails).
fn run_bounded(cmd: &mut Command, stdin: Stdio) -> Output {
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("certassert starts");
    let deadline = Instant::now() + Duration::from_secs(15);
    // The pipes are drained on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{:?} still running after 15 s: it hangs", cmd.get_args());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The inputs: a name, the size limit, and the arguments that make the command read `path`.
fn inputs(p: &Path) -> Vec<(&'static str, usize, Vec<String>)> {
    let app = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(["--tenant", TENANT, "--client-id", CLIENT].map(String::from))
            .collect()
    };
    // An encrypted key, so its password file is read.
    openssl(
        p,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "k.pem",
            "-out",
            "enc.pem",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:right",
        ],
    );
    let mut inputs = vec![
        (
            "--key",
            MIB,
            app(&["assertion", "--cert", "c.pem", "--key", "{}"]),
        ),
        (
            "--cert",
            MIB,
            vec!["cert".into(), "show".into(), "--cert".into(), "{}".into()],
        ),
        (
            "--ca-file",
            4 * MIB,
            app(&[
                "token",
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--scope",
                "api://x/.default",
                "--no-cache",
                "--token-url",
                "http://127.0.0.1:9/token",
                "--ca-file",
                "{}",
            ]),
        ),
        (
            "--user-assertion @FILE",
            64 * KIB,
            app(&[
                "token",
                "--key",
                "k.pem",
                "--scope",
                "api://x/.default",
                "--grant",
                "on-behalf-of",
                "--user-assertion",
                "@{}",
            ]),
        ),
        (
            "password-source=file:",
            4 * KIB,
            app(&[
                "assertion",
                "--cert",
                "c.pem",
                "--key",
                "file:enc.pem?password-source=file:{}",
            ]),
        ),
    ];
    if cfg!(feature = "tpm") {
        inputs.push((
            "tpm:key=",
            MIB,
            app(&[
                "assertion",
                "--cert",
                "c.pem",
                "--key",
                "tpm:key={}?tcti=swtpm:host=127.0.0.1,port=9",
            ]),
        ));
    }
    if cfg!(feature = "emulator") {
        inputs.push((
            "emulator --register",
            MIB,
            vec![
                "emulator".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--register".into(),
                format!("{CLIENT}={{}}"),
            ],
        ));
    }
    inputs
}

/// Give each input `path`; each must fail with an error naming the file and saying `says`.
fn refused(p: &Path, path: &Path, says: &[&str]) {
    for (name, _, args) in inputs(p) {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{}", path.to_str().unwrap()))
            .collect();
        let out = run_bounded(certassert(p).args(&args), Stdio::null());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name} {path:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()),
            "{name} names the file: {stderr}"
        );
        for s in says {
            assert!(stderr.contains(s), "{name} {path:?} says {s:?}: {stderr}");
        }
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let (_d, p) = setup();
    let fifo = p.join("fifo");
    mkfifo(&fifo);
    refused(&p, &fifo, &["is a FIFO", "not a regular file"]);
}

#[test]
fn dev_zero_is_refused() {
    let (_d, p) = setup();
    refused(
        &p,
        Path::new("/dev/zero"),
        &["is a character device", "not a regular file"],
    );
}

#[test]
fn a_directory_is_refused() {
    let (_d, p) = setup();
    let dir = p.join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    refused(&p, &dir, &["is a directory", "not a regular file"]);
}

#[test]
fn a_file_over_its_limit_is_refused_and_one_at_the_limit_is_read() {
    let (_d, p) = setup();
    for (name, limit, args) in inputs(&p) {
        for (size, over) in [(limit + 1, true), (limit, false)] {
            let path = p.join(format!("size-{size}"));
            std::fs::write(&path, vec![b'a'; size]).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("{}", path.to_str().unwrap()))
                .collect();
            let out = run_bounded(certassert(&p).args(&args), Stdio::null());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{name} {size}: {stderr}");
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
            let limit_text = if limit >= MIB {
                format!("{} MiB", limit / MIB)
            } else {
                format!("{} KiB", limit / KIB)
            };
            assert_eq!(
                stderr.contains("larger than"),
                over,
                "{name}, {size} bytes (limit {limit_text}): {stderr}"
            );
            if over {
                assert!(
                    stderr.contains(&limit_text),
                    "{name} names its limit: {stderr}"
                );
            }
        }
    }
}

fn inspect_stdin(p: &Path, stdin: Stdio) -> String {
    let out = run_bounded(certassert(p).args(["inspect", "-"]), stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn standard_input_is_read_up_to_its_limit() {
    let (_d, p) = setup();
    for (size, over) in [(64 * KIB + 1, true), (64 * KIB, false)] {
        let path = p.join("jwt");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![b'a'; size])
            .unwrap();
        let stderr = inspect_stdin(&p, std::fs::File::open(&path).unwrap().into());
        assert_eq!(
            stderr.contains("larger than 64 KiB"),
            over,
            "{size}: {stderr}"
        );
        assert!(
            stderr.contains("standard input") == over,
            "{size}: {stderr}"
        );
    }
}

#[test]
fn standard_input_from_dev_zero_is_bounded() {
    let (_d, p) = setup();
    let stderr = inspect_stdin(&p, std::fs::File::open("/dev/zero").unwrap().into());
    assert!(
        stderr.contains("standard input") && stderr.contains("larger than 64 KiB"),
        "{stderr}"
    );
}
