//! `certassert inspect`: decode a JWT and lint it as an Entra client assertion.

use super::{print, Result};
use certassert::cert::Certificate;
use certassert::encoding::unix_now;
use certassert::input::Limit;
use certassert::inspect::{inspect, render, Expect};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "\
Each problem is named with the AADSTS error Entra would answer (5002723 no thumbprint,
700027 wrong thumbprint or signature, 700023 audience, 700021 issuer/subject, 700024 times,
5002738 algorithm). Exit status 1 when Entra would refuse the assertion. --format json
prints {\"header\",\"claims\",\"findings\":[{\"severity\" (error|warning),\"aadsts\",\"message\"}]}.

Examples:
  certassert inspect eyJhbGciOi…
  certassert assertion … | certassert inspect --cert app.cert.pem -")]
pub struct InspectArgs {
    /// The JWT, or - (or nothing) to read it from standard input (at most 64 KiB)
    jwt: Option<String>,
    /// Certificate registered with the app: check that x5t names it and the signature verifies
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    /// The client_id the token request carries (checked against iss/sub)
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// The token endpoint the assertion is posted to (checked against aud)
    #[arg(long, value_name = "URL")]
    aud: Option<String>,
    #[command(flatten)]
    format: super::flags::FormatArg,
}

pub fn run(args: &InspectArgs) -> Result<ExitCode> {
    let jwt = match args.jwt.as_deref() {
        Some(text) if text != "-" => text.to_string(),
        _ => {
            let text = certassert::input::read_stdin(Limit::TEXT)
                .and_then(certassert::input::into_text)
                .map_err(|e| format!("cannot read the JWT from standard input: {e}"))?;
            if text.trim().is_empty() {
                return Err("no JWT given: pass it as an argument or on standard input".into());
            }
            text.to_string()
        }
    };
    let cert = args
        .cert
        .as_ref()
        .map(|p| Certificate::load_chain(p))
        .transpose()?;
    let expect = Expect {
        now: unix_now(),
        cert: cert.as_ref().map(|c| &c[0]),
        client_id: args.client_id.as_deref(),
        audience: args.aud.as_deref(),
    };
    let report = inspect(&jwt, &expect)?;
    if args.format.get() == super::flags::Format::Json {
        print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        print(&render(&report))?;
    }
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
