//! `certassert assertion`: print one signed client assertion.

use super::{flags, print, resolve_chain, AppArgs, EndpointArgs, KeyArg, Result};
use certassert::assertion::{self, Params, DEFAULT_LIFETIME};
use certassert::encoding::unix_now;
use certassert::entra::authority::{check_url, UrlRole};
use certassert::entra::EndpointVersion;
use certassert::Algorithm;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "\
The assertion's aud is the token endpoint it will be posted to:
  {authority-host}/{tenant}/oauth2/v2.0/token, or --token-url, or --aud.

Examples:
  certassert assertion --key app.key.pem --cert app.cert.pem --tenant contoso.com --client-id ID
  certassert assertion --key app.key.pem --tenant T --client-id C --alg PS256 --x5c
  certassert assertion --key app.key.pem --client-id C --token-url https://idp.example/oauth2/token")]
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
    /// Seconds the assertion stays valid (1–3600)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LIFETIME)]
    lifetime: u64,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Override aud (default: the token endpoint)
    #[arg(long, value_name = "URL")]
    aud: Option<String>,
}

pub fn run(args: &AssertionArgs) -> Result<ExitCode> {
    let profile = args.key.profile()?;
    let profile = profile.as_ref();
    let client_id = args.app.client_id(profile)?;
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
        lifetime: args.lifetime,
        x5c: flags::x5c(args.x5c, profile)?,
    };
    params
        .validate()
        .map_err(|e| flags::assertion(e, &args.app, profile))?;
    let signer = args.key.open(profile)?;
    let now = unix_now();
    let chain = resolve_chain(args.cert.as_ref(), profile, signer.as_ref(), now)?;
    let jwt = assertion::build(signer.as_ref(), &chain, &params, now)
        .map_err(|e| flags::assertion(e, &args.app, profile))?;
    print(&format!("{jwt}\n"))?;
    Ok(ExitCode::SUCCESS)
}
