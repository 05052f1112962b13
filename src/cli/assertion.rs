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
    /// Certificate registered with the app; default: the one stored with the key [env: CERTASSERT_CERT]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    app: AppArgs,
    /// RS256 (header x5t) or PS256 (header x5t#S256)
    #[arg(long, default_value = "RS256", value_parser = super::cert::parse_alg)]
    alg: Algorithm,
    /// Include the certificate chain as x5c (for subject name + issuer authentication)
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
    let client_id = args.app.client_id()?;
    let audience = match &args.aud {
        Some(aud) => {
            check_url(UrlRole::Audience, aud)
                .map_err(|e| flags::endpoint(e, &args.app, &args.endpoint))?;
            aud.clone()
        }
        None => args
            .endpoint
            .token_endpoint(&args.app, EndpointVersion::V2)?,
    };
    let params = Params {
        client_id: &client_id,
        audience: &audience,
        alg: args.alg,
        lifetime: args.lifetime,
        x5c: args.x5c,
    };
    params
        .validate()
        .map_err(|e| flags::assertion(e, &args.app))?;
    let signer = args.key.open()?;
    let now = unix_now();
    let chain = resolve_chain(args.cert.as_ref(), signer.as_ref(), now)?;
    let jwt = assertion::build(signer.as_ref(), &chain, &params, now)
        .map_err(|e| flags::assertion(e, &args.app))?;
    print(&format!("{jwt}\n"))?;
    Ok(ExitCode::SUCCESS)
}
