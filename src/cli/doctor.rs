//! `certassert doctor`: check everything that makes Entra answer AADSTS700027 & co.
//! before Entra does — key/certificate pairing, validity, key usage, a sign-and-verify
//! round trip through the backend, the exact thumbprints to upload — and, given a
//! tenant and client id, one real token request whose error is explained.

use super::{flags, stored_chain, AppArgs, EndpointArgs, KeyArg, Result};
use certassert::cert::Certificate;
use certassert::encoding::{hex, random, rfc3339, unix_now};
use certassert::entra::{Client, Credential, Grant, HttpOptions, Target, TokenRequest};
use certassert::{signer, Algorithm};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "\
Exit status 0 when nothing failed (warnings allowed), 1 otherwise. --format json prints
{\"ok\",\"checks\":[{\"status\" (ok|info|warn|fail),\"check\",\"detail\"}]}.

Examples:
  certassert doctor --key app.key.pem --cert app.cert.pem
  certassert doctor --key 'pkcs11:token=app;object=app' --tenant T --client-id C")]
pub struct DoctorArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Certificate registered with the app [env: CERTASSERT_CERT, else the profile's cert, else
    /// the one stored with the key]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    app: AppArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Scope for the test token request
    #[arg(
        long,
        value_name = "S",
        default_value = "https://graph.microsoft.com/.default"
    )]
    scope: String,
    /// Extra CA certificate(s) to trust (PEM) [default: the profile's ca_file]
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    #[command(flatten)]
    format: super::flags::FormatArg,
}

struct Report {
    text: String,
    failed: bool,
    format: super::flags::Format,
    checks: Vec<serde_json::Value>,
}

impl Report {
    fn line(&mut self, status: &str, what: &str, detail: impl AsRef<str>) {
        if status == "FAIL" {
            self.failed = true;
        }
        self.text
            .push_str(&format!("{status:<5} {what:<12} {}\n", detail.as_ref()));
        self.checks.push(serde_json::json!({
            "status": status.to_lowercase(),
            "check": what,
            "detail": detail.as_ref(),
        }));
    }

    /// The report so far: its lines, or `{"ok", "checks":[{"status","check","detail"}]}`.
    fn print(&self) -> Result<()> {
        match self.format {
            super::flags::Format::Text => super::print(&self.text)?,
            super::flags::Format::Json => {
                let v = serde_json::json!({ "ok": !self.failed, "checks": self.checks });
                super::print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
            }
        }
        Ok(())
    }
}

pub fn run(args: &DoctorArgs) -> Result<ExitCode> {
    let mut r = Report {
        text: String::new(),
        failed: false,
        format: args.format.get(),
        checks: Vec::new(),
    };
    let now = unix_now();
    let profile = args.key.profile()?;
    let profile = profile.as_ref();
    let keyref = args.key.keyref(profile)?;
    if let Some(p) = profile {
        r.line(
            "info",
            "profile",
            format!(
                "\"{}\" from {} (flags and environment override it)",
                p.name,
                p.file().display()
            ),
        );
    }
    let signer = match args.key.open_ref(&keyref) {
        Ok(s) => {
            let algs: Vec<&str> = s.algorithms().iter().map(|a| a.as_str()).collect();
            r.line(
                "ok",
                "key",
                format!(
                    "{keyref:?} ({} backend; signs {})",
                    keyref.backend(),
                    algs.join(", ")
                ),
            );
            s
        }
        Err(e) => {
            r.line("FAIL", "key", e.to_string());
            r.print()?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let chain = match super::cert_path(args.cert.as_ref(), profile) {
        Some(path) => Certificate::load_chain(&path)
            .map(Some)
            .map_err(|e| e.to_string()),
        None => stored_chain(signer.as_ref()).map_err(|e| e.to_string()),
    };
    let chain = match chain {
        Ok(Some(c)) => c,
        Ok(None) => {
            r.line(
                "FAIL",
                "certificate",
                "none given and none stored with the key: pass --cert PATH",
            );
            r.print()?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            r.line("FAIL", "certificate", e);
            r.print()?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let leaf = &chain[0];
    r.line(
        "ok",
        "certificate",
        format!("{} (issuer {})", leaf.subject(), leaf.issuer()),
    );
    match leaf.check_key(signer.as_ref()) {
        Ok(()) => r.line(
            "ok",
            "pairing",
            "the certificate holds this key's public key",
        ),
        Err(e) => r.line("FAIL", "pairing", e.to_string()),
    }
    match leaf.check_validity(now) {
        Err(e) => r.line("FAIL", "validity", e.to_string()),
        Ok(()) => {
            let days = (leaf.not_after() - now) / 86_400;
            let detail = format!(
                "{} to {} ({days} days left)",
                rfc3339(leaf.not_before()),
                rfc3339(leaf.not_after())
            );
            if days < 30 {
                r.line(
                    "warn",
                    "validity",
                    format!("{detail}: create and upload its successor now"),
                );
            } else {
                r.line("ok", "validity", detail);
            }
        }
    }
    match leaf.key_usage() {
        None => r.line("ok", "key usage", "no keyUsage extension (any use allowed)"),
        Some(ku) if ku.contains(&"digitalSignature") => r.line("ok", "key usage", ku.join(", ")),
        Some(ku) => r.line(
            "warn",
            "key usage",
            format!(
                "{} without digitalSignature: strict verifiers refuse its signatures",
                ku.join(", ")
            ),
        ),
    }
    if let Some(bits) = leaf.rsa_bits() {
        if bits < 2048 {
            r.line(
                "FAIL",
                "key size",
                format!("RSA {bits}: Entra requires at least 2048 bits"),
            );
        }
    }
    let message = format!("certassert doctor {}", hex(&random::<16>(), false));
    for alg in [Algorithm::Rs256, Algorithm::Ps256] {
        if !signer.algorithms().contains(&alg) {
            r.line("warn", "signing", format!("{alg}: not offered by this key"));
            continue;
        }
        let t = std::time::Instant::now();
        match signer.sign(alg, message.as_bytes()) {
            Ok(sig) => match signer::verify(leaf.spki_der(), alg, message.as_bytes(), &sig) {
                Ok(()) => r.line("ok", "signing", format!("{alg}: signed through the backend in {:.1} ms, verifies with the certificate", t.elapsed().as_secs_f64() * 1000.0)),
                Err(e) => r.line("FAIL", "signing", format!("{alg}: {e} (the key signs, but not for this certificate: Entra would answer AADSTS700027)")),
            },
            Err(e) => r.line("FAIL", "signing", format!("{alg}: {e}")),
        }
    }
    r.line(
        "info",
        "upload",
        format!("thumbprint (portal, hex SHA-1) {}", leaf.thumbprint_hex()),
    );
    r.line("info", "", format!("x5t (RS256 header)   {}", leaf.x5t()));
    r.line(
        "info",
        "",
        format!("x5t#S256 (PS256)     {}", leaf.x5t_s256()),
    );
    let client_id = args.app.client_id(profile).ok();
    let tenant_known = args.app.tenant(profile).is_some() || args.endpoint.token_url.is_some();
    match (client_id, tenant_known) {
        (Some(client_id), true) => {
            let target = Target::Scopes(vec![args.scope.clone()]);
            let request = args
                .endpoint
                .token_endpoint(&args.app, profile, target.version())
                .map(|endpoint| TokenRequest {
                    endpoint,
                    client_id,
                    target,
                    grant: Grant::ClientCredentials,
                    claims: None,
                });
            match request {
                Err(e) => r.line("FAIL", "token", e.to_string()),
                Ok(request) => {
                    let client = Client::new(
                        HttpOptions {
                            ca_file: flags::ca_file(args.ca_file.as_ref(), profile),
                            ..HttpOptions::default()
                        },
                        None,
                    );
                    let credential = Credential {
                        signer: signer.as_ref(),
                        chain: &chain,
                        alg: flags::alg(None, profile),
                        x5c: flags::x5c(false, profile)?,
                        lifetime: certassert::assertion::DEFAULT_LIFETIME,
                    };
                    match client.acquire(&credential, &request) {
                        Ok(o) => r.line(
                            "ok",
                            "token",
                            format!(
                                "{} answered with a token for {} (expires {})",
                                request.endpoint,
                                args.scope,
                                rfc3339(o.token.expires_on)
                            ),
                        ),
                        Err(e) => r.line(
                            "FAIL",
                            "token",
                            format!(
                                "{}: {}",
                                request.endpoint,
                                flags::entra(e, &args.app, &args.endpoint, profile)
                            )
                            .replace('\n', "\n                   "),
                        ),
                    }
                }
            }
        }
        _ => r.line(
            "info",
            "token",
            "pass --tenant and --client-id (or --token-url) to try a token request",
        ),
    }
    r.print()?;
    Ok(if r.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
