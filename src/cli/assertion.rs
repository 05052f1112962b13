//! `certassert assertion`: print one signed client assertion.

use super::{env, print, resolve_chain, KeyArg, Result};
use certassert::assertion::{
    self, EndpointVersion, Params, DEFAULT_AUTHORITY_HOST, DEFAULT_LIFETIME,
};
use certassert::encoding::unix_now;
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
    /// Directory (tenant) ID or verified domain [env: AZURE_TENANT_ID]
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// Application (client) ID [env: AZURE_CLIENT_ID]
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// RS256 (header x5t) or PS256 (header x5t#S256)
    #[arg(long, default_value = "RS256", value_parser = super::cert::parse_alg)]
    alg: Algorithm,
    /// Include the certificate chain as x5c (for subject name + issuer authentication)
    #[arg(long)]
    x5c: bool,
    /// Seconds the assertion stays valid (1–3600)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LIFETIME)]
    lifetime: u64,
    /// Authority host [env: AZURE_AUTHORITY_HOST] [default: https://login.microsoftonline.com]
    #[arg(long, value_name = "URL", conflicts_with = "token_url")]
    authority_host: Option<String>,
    /// Token endpoint of any RFC 7523 server; also the assertion's aud
    #[arg(long, value_name = "URL")]
    token_url: Option<String>,
    /// Override aud (default: the token endpoint)
    #[arg(long, value_name = "URL")]
    aud: Option<String>,
}

pub fn run(args: &AssertionArgs) -> Result<ExitCode> {
    let client_id = args.client_id.clone().or_else(|| env("AZURE_CLIENT_ID")).ok_or(
        "no client id: pass --client-id (the app registration's Application (client) ID) or set AZURE_CLIENT_ID",
    )?;
    let audience = match (&args.aud, &args.token_url) {
        (Some(aud), _) => aud.clone(),
        (None, Some(url)) => {
            assertion::check_url("--token-url", url)?;
            url.clone()
        }
        (None, None) => {
            let tenant = args.tenant.clone().or_else(|| env("AZURE_TENANT_ID")).ok_or(
                "no tenant: pass --tenant (the Directory (tenant) ID) or set AZURE_TENANT_ID, or give --token-url",
            )?;
            let host = args
                .authority_host
                .clone()
                .or_else(|| env("AZURE_AUTHORITY_HOST"))
                .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_string());
            assertion::token_endpoint(&host, &tenant, EndpointVersion::V2)?
        }
    };
    let params = Params {
        client_id: &client_id,
        audience: &audience,
        alg: args.alg,
        lifetime: args.lifetime,
        x5c: args.x5c,
    };
    params.validate()?;
    let signer = args.key.open()?;
    let now = unix_now();
    let chain = resolve_chain(args.cert.as_ref(), signer.as_ref(), now)?;
    let jwt = assertion::build(signer.as_ref(), &chain, &params, now)?;
    print(&format!("{jwt}\n"))?;
    Ok(ExitCode::SUCCESS)
}
