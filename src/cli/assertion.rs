//! `certassert assertion`: print one signed client assertion, or write it to a file
//! (`--out`) and keep that file fresh (`--every`) for the Azure SDKs'
//! `WorkloadIdentityCredential`, which sends the file's bytes as `client_assertion`.
//!
//! The file is written atomically (a new 0600 file in the same directory, renamed over
//! the old one), holds the JWS alone with no newline, and is never a symbolic link or
//! another user's file. With `--every` the file is rewritten (new `jti`, new times) until
//! SIGTERM or SIGINT; then the command exits 0, leaving the last file, which is still
//! valid. The SDKs read the file again only when what they read is 10 minutes old
//! (azure-identity for Python 1.27 and the Rust `azure_identity` 1.0: 600 s) and send what
//! they read until then, so an assertion must stay valid for the rewrite interval plus
//! [`SDK_REREAD`]: `--every` defaults to 300 s and the lifetime to
//! 1,200 s (300 + 600 + 300 s of margin), and an `--every` closer than that to the
//! lifetime is refused. A failure to sign or write ends the command with the error (exit
//! 1), leaving the file with its last assertion; a supervisor restarts it.

use super::{flags, print, resolve_chain, AppArgs, EndpointArgs, KeyArg, Result};
use certassert::assertion::{self, Params, DEFAULT_LIFETIME, MAX_LIFETIME};
use certassert::encoding::unix_now;
use certassert::entra::authority::{check_url, UrlRole};
use certassert::entra::EndpointVersion;
use certassert::Algorithm;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The longest an SDK keeps sending a token file's content after reading it: Python's
/// azure-identity (1.27) and the Rust `azure_identity` (1.0) both re-read it after 600 s.
pub const SDK_REREAD: u64 = 600;
/// `--every` given without a value.
const DEFAULT_EVERY: u64 = 300;
/// The lifetime with `--every` when `--lifetime` is not given: the interval, the SDKs'
/// re-read and 300 s for clock skew and a late rewrite (1,200 s for the default 300).
fn default_lifetime_every(every: u64) -> u64 {
    (every + SDK_REREAD + 300).clamp(1200, MAX_LIFETIME)
}

#[derive(Args)]
#[command(after_help = "\
The assertion's aud is the token endpoint it will be posted to:
  {authority-host}/{tenant}/oauth2/v2.0/token, or --token-url, or --aud.

--out writes the assertion alone (no newline) to a 0600 file, atomically; --every keeps
rewriting it (new jti and times) until SIGTERM or Ctrl-C, then exits 0 leaving a valid
file: point AZURE_FEDERATED_TOKEN_FILE at it for any Azure SDK's
WorkloadIdentityCredential. The SDKs re-read the file every 10 minutes and send what
they read until then, so with --every the lifetime defaults to the interval + 600 s +
300 s of margin (1200 s for the default 300) and must be at least the interval + 600 s.

Examples:
  certassert assertion --key app.key.pem --cert app.cert.pem --tenant contoso.com --client-id ID
  certassert assertion --key app.key.pem --tenant T --client-id C --alg PS256 --x5c
  certassert assertion --key app.key.pem --client-id C --token-url https://idp.example/oauth2/token
  certassert assertion --key tpm:key=app.tss2.pem --cert app.cert.pem --tenant T --client-id C \\
      --out /run/certassert/token --every")]
pub struct AssertionArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Certificate registered with the app [env: CERTASSERT_CERT, else the profile's cert, else
    /// the one stored with the key]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    app: AppArgs,
    /// RS256 (header x5t) or PS256 (header x5t#S256) [default: the profile's alg, else RS256]
    #[arg(long, value_parser = super::cert::parse_alg)]
    alg: Option<Algorithm>,
    /// Include the certificate chain as x5c (for subject name + issuer authentication)
    /// [env: AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=true]
    #[arg(long)]
    x5c: bool,
    /// Seconds the assertion stays valid (1–3600) [default: 600; with --every: the interval + 900, at least 1200]
    #[arg(long, value_name = "SECS")]
    lifetime: Option<u64>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Override aud (default: the token endpoint)
    #[arg(long, value_name = "URL")]
    aud: Option<String>,
    /// Write the assertion to this file (0600, atomically, no newline) instead of stdout
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Rewrite --out every SECS seconds until SIGTERM/SIGINT [default: 300]
    #[arg(long, value_name = "SECS", requires = "out", num_args = 0..=1,
          default_missing_value = "300")]
    every: Option<u64>,
}

/// The lifetime to sign with, and the rewrite interval: `--every` must leave each file
/// valid for the interval plus [`SDK_REREAD`].
fn schedule(args: &AssertionArgs) -> Result<(u64, Option<u64>)> {
    let Some(every) = args.every else {
        return Ok((args.lifetime.unwrap_or(DEFAULT_LIFETIME), None));
    };
    if every == 0 {
        return Err(format!(
            "--every 0: choose an interval in seconds, e.g. --every {DEFAULT_EVERY}"
        )
        .into());
    }
    let lifetime = args
        .lifetime
        .unwrap_or_else(|| default_lifetime_every(every));
    if every + SDK_REREAD > lifetime {
        return Err(format!(
            "--every {every}: an SDK may send a file's content up to {SDK_REREAD} s after reading it, so each \
             assertion must stay valid {every} + {SDK_REREAD} s; choose --lifetime {} or more (at most \
             {MAX_LIFETIME}), or a shorter --every (default {DEFAULT_EVERY} with a lifetime of 1200)",
            every + SDK_REREAD
        )
        .into());
    }
    Ok((lifetime, Some(every)))
}

pub fn run(args: &AssertionArgs) -> Result<ExitCode> {
    let profile = args.key.profile()?;
    let profile = profile.as_ref();
    let client_id = args.app.client_id(profile)?;
    let (lifetime, every) = schedule(args)?;
    let audience = match &args.aud {
        Some(aud) => {
            check_url(UrlRole::Audience, aud)
                .map_err(|e| flags::endpoint(e, &args.app, &args.endpoint, profile))?;
            aud.clone()
        }
        None => args
            .endpoint
            .token_endpoint(&args.app, profile, EndpointVersion::V2)?,
    };
    let params = Params {
        client_id: &client_id,
        audience: &audience,
        alg: flags::alg(args.alg, profile),
        lifetime,
        x5c: flags::x5c(args.x5c, profile)?,
    };
    params
        .validate()
        .map_err(|e| flags::assertion(e, &args.app, profile))?;
    // Signals are ours while --every runs: the TPM's interrupt hook would end the
    // process with the signal's status; the signer is dropped (and flushed) on return.
    #[cfg(feature = "tpm")]
    if every.is_some() {
        certassert::signer::tpm::set_interrupt_cleanup(false);
    }
    let signer = args.key.open(profile)?;
    // After the key is open: a PIN prompt stays interruptible by Ctrl-C.
    let stop = every.map(|_| stop_signals()).transpose()?;
    let sign = || -> Result<String> {
        let now = unix_now();
        let chain = resolve_chain(args.cert.as_ref(), profile, signer.as_ref(), now)?;
        assertion::build(signer.as_ref(), &chain, &params, now)
            .map_err(|e| flags::assertion(e, &args.app, profile))
    };
    let Some(out) = &args.out else {
        print(&format!("{}\n", sign()?))?;
        return Ok(ExitCode::SUCCESS);
    };
    loop {
        write_atomically(out, sign()?.as_bytes())?;
        let (Some(every), Some(stop)) = (every, &stop) else {
            return Ok(ExitCode::SUCCESS);
        };
        match stop.recv_timeout(Duration::from_secs(every)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            // A signal (or the watcher gone): the last file stays, valid.
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// A channel that receives once SIGTERM or SIGINT arrives.
fn stop_signals() -> Result<std::sync::mpsc::Receiver<()>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot watch for SIGTERM/SIGINT: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("certassert-stop".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = tx.send(());
            }
        })
        .map_err(|e| format!("cannot watch for SIGTERM/SIGINT: {e}"))?;
    Ok(rx)
}

/// Replace `path` with `data`: an owner-only file, atomically; a symbolic link, something
/// that is not a regular file, or another user's file is refused and left as it is
/// ([`certassert::output::replace`]).
fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    certassert::output::replace(path, data, certassert::output::Replace::PRIVATE)
        .map_err(|e| format!("--out {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AssertionArgs,
    }

    fn schedule_of(extra: &[&str]) -> std::result::Result<(u64, Option<u64>), String> {
        let mut argv = vec!["t", "--key", "k.pem", "--tenant", "T", "--client-id", "C"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        schedule(&cli.args).map_err(|e| e.to_string())
    }

    #[test]
    fn every_keeps_each_file_valid_across_the_sdks_reread() {
        assert_eq!(schedule_of(&[]), Ok((600, None)));
        assert_eq!(schedule_of(&["--out", "f"]), Ok((600, None)));
        assert_eq!(
            schedule_of(&["--out", "f", "--every"]),
            Ok((1200, Some(300)))
        );
        assert_eq!(
            schedule_of(&["--out", "f", "--every", "60"]),
            Ok((1200, Some(60)))
        );
        assert_eq!(
            schedule_of(&["--out", "f", "--every", "600"]),
            Ok((1500, Some(600)))
        );
        assert_eq!(
            schedule_of(&["--out", "f", "--every", "3000"]),
            Ok((3600, Some(3000)))
        );
        assert!(schedule_of(&["--out", "f", "--every", "3001"]).is_err());
        assert_eq!(
            schedule_of(&["--out", "f", "--every", "600", "--lifetime", "1200"]),
            Ok((1200, Some(600)))
        );
        assert!(schedule_of(&["--out", "f", "--every", "600", "--lifetime", "1199"]).is_err());
        assert!(schedule_of(&["--out", "f", "--every", "0"]).is_err());
        assert!(schedule_of(&["--every", "300"]).is_err());
        // Every default keeps a file valid for the interval and the 600 s re-read.
        for every in 1..=3000 {
            let (lifetime, _) =
                schedule_of(&["--out", "f", "--every", &every.to_string()]).unwrap();
            assert!(
                lifetime >= every + SDK_REREAD && lifetime <= MAX_LIFETIME,
                "{every}"
            );
        }
    }
}
