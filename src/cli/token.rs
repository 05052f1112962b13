//! `certassert token`: get an access token (cache, grant, retries) and print it as the
//! caller wants: the bare token, JSON, the shape of `az account get-access-token`, or a
//! kubectl `ExecCredential` (client.authentication.k8s.io/v1).

use super::{env, flags, print, resolve_chain, AppArgs, EndpointArgs, KeyArg, Result};
use certassert::assertion::DEFAULT_LIFETIME;
use certassert::config::Profile;
use certassert::encoding::{rfc3339, unix_now};
use certassert::entra::request::merge_claims;
use certassert::entra::{Cache, Client, Credential, Grant, HttpOptions, Target, TokenRequest};
use certassert::secret::Secret;
use certassert::Algorithm;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GrantArg {
    ClientCredentials,
    AuthorizationCode,
    OnBehalfOf,
    RefreshToken,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// The access token alone
    Raw,
    /// access_token, token_type, expires_in, expires_on, scope|resource
    Json,
    /// The shape of `az account get-access-token`
    Az,
    /// A kubectl ExecCredential (client.authentication.k8s.io/v1) for a kubeconfig exec plugin
    ExecCredential,
}

#[derive(Args)]
#[command(after_help = "\
--scope selects the v2 endpoint ({authority-host}/{tenant}/oauth2/v2.0/token); --resource the
v1 endpoint ({authority-host}/{tenant}/oauth2/token). Client-credentials tokens are cached
per user ($XDG_RUNTIME_DIR/certassert, else ~/.cache/certassert; CERTASSERT_CACHE_DIR
overrides) and reused while more than 5 minutes remain. Refresh tokens are never stored.
--code, --code-verifier, --user-assertion and --refresh-token also read @FILE, or their
environment variables, to keep them out of argv.

Examples:
  certassert token --key app.key.pem --cert app.cert.pem --tenant T --client-id C \\
      --scope https://graph.microsoft.com/.default
  certassert token --key 'pkcs11:token=app;object=app' --tenant T --client-id C \\
      --resource https://vault.azure.net --format az
  certassert token --key app.key.pem --tenant T --client-id C --grant on-behalf-of \\
      --user-assertion @incoming.jwt --scope https://graph.microsoft.com/User.Read
  certassert token --key tpm:key=app.tss2.pem --cert app.cert.pem --tenant T --client-id C \\
      --scope 6dae42f8-4368-4678-94ff-3960e28e3630/.default --format exec-credential")]
pub struct TokenArgs {
    #[command(flatten)]
    pub key: KeyArg,
    /// Certificate registered with the app [env: CERTASSERT_CERT, else the profile's cert, else
    /// the one stored with the key]
    #[arg(long, value_name = "PATH")]
    pub cert: Option<PathBuf>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Scope(s) for the v2 endpoint, e.g. https://graph.microsoft.com/.default
    #[arg(long, value_name = "S", num_args = 1.., conflicts_with = "resource")]
    pub scope: Vec<String>,
    /// Resource for the v1 endpoint, e.g. https://vault.azure.net
    #[arg(long, value_name = "R")]
    pub resource: Option<String>,
    /// The OAuth 2.0 grant
    #[arg(long, value_enum, default_value = "client-credentials")]
    pub grant: GrantArg,
    /// Authorization code to redeem (or @FILE) [env: CERTASSERT_CODE]
    #[arg(long, value_name = "C")]
    pub code: Option<String>,
    /// Redirect URI the code was issued for
    #[arg(long, value_name = "U")]
    pub redirect_uri: Option<String>,
    /// PKCE code_verifier (or @FILE) [env: CERTASSERT_CODE_VERIFIER]
    #[arg(long, value_name = "V")]
    pub code_verifier: Option<String>,
    /// On-behalf-of: the access token the caller sent to this API (or @FILE) [env: CERTASSERT_USER_ASSERTION]
    #[arg(long, value_name = "JWT")]
    pub user_assertion: Option<String>,
    /// Refresh token to redeem (or @FILE) [env: CERTASSERT_REFRESH_TOKEN]
    #[arg(long, value_name = "RT")]
    pub refresh_token: Option<String>,
    /// Claims challenge (JSON, or base64 as in WWW-Authenticate), merged with the cp1 capability
    #[arg(long, value_name = "JSON")]
    pub claims: Option<String>,
    /// RS256 (header x5t) or PS256 (header x5t#S256) [default: the profile's alg, else RS256]
    #[arg(long, value_parser = super::cert::parse_alg)]
    pub alg: Option<Algorithm>,
    /// Send the certificate chain as x5c (subject name + issuer authentication)
    /// [env: AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=true]
    #[arg(long)]
    pub x5c: bool,
    /// Seconds each assertion stays valid (1–3600)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LIFETIME)]
    pub lifetime: u64,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Extra CA certificate(s) to trust (PEM), on top of the system roots [default: the
    /// profile's ca_file]
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Neither read nor write the token cache
    #[arg(long)]
    pub no_cache: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "raw")]
    pub format: Format,
}

/// A secret from the flag (literal or @FILE) or else the environment variable.
fn secret(flag: &Option<String>, var: &str, name: &str) -> Result<Option<Secret>> {
    let value = match flag {
        Some(v) => match v.strip_prefix('@') {
            Some(path) => {
                certassert::input::read_text_file(path.as_ref(), certassert::input::Limit::TEXT)
                    .map_err(|e| format!("{name} @{path}: {e}"))?
                    .trim()
                    .to_string()
            }
            None => v.clone(),
        },
        None => match env(var) {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    if value.trim().is_empty() {
        let given = match flag.as_deref().and_then(|v| v.strip_prefix('@')) {
            Some(path) => format!("{name} @{path}: the file is empty"),
            None => format!("{name}: the value is empty"),
        };
        return Err(format!("{given}; nothing was sent").into());
    }
    Ok(Some(Secret::new(value)))
}

fn required(value: Option<Secret>, what: &str) -> Result<Secret> {
    value.ok_or_else(|| format!("--grant {what}").into())
}

impl TokenArgs {
    /// The target, grant and endpoint as a library request.
    pub fn request(&self, profile: Option<&Profile>) -> Result<TokenRequest> {
        let target = match (&self.resource, self.scope.is_empty()) {
            (Some(r), _) => Target::Resource(r.clone()),
            (None, false) => Target::Scopes(
                self.scope
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .map(str::to_string)
                    .collect(),
            ),
            (None, true) => return Err("no target: pass --scope RESOURCE/.default (v2 endpoint), e.g. --scope https://graph.microsoft.com/.default, or --resource R (v1 endpoint)".into()),
        };
        let grant = match self.grant {
            GrantArg::ClientCredentials => Grant::ClientCredentials,
            GrantArg::AuthorizationCode => Grant::AuthorizationCode {
                code: required(
                    secret(&self.code, "CERTASSERT_CODE", "--code")?,
                    "authorization-code needs --code C (and --redirect-uri U)",
                )?,
                redirect_uri: self
                    .redirect_uri
                    .clone()
                    .ok_or("--grant authorization-code needs --redirect-uri U (the one the code was issued for)")?,
                code_verifier: secret(&self.code_verifier, "CERTASSERT_CODE_VERIFIER", "--code-verifier")?,
            },
            GrantArg::OnBehalfOf => Grant::OnBehalfOf {
                user_assertion: required(
                    secret(&self.user_assertion, "CERTASSERT_USER_ASSERTION", "--user-assertion")?,
                    "on-behalf-of needs --user-assertion JWT (the token the caller sent to this API)",
                )?,
            },
            GrantArg::RefreshToken => Grant::RefreshToken {
                refresh_token: required(
                    secret(&self.refresh_token, "CERTASSERT_REFRESH_TOKEN", "--refresh-token")?,
                    "refresh-token needs --refresh-token RT",
                )?,
            },
        };
        let claims = match &self.claims {
            Some(c) => Some(
                merge_claims(Some(c))
                    .map_err(|e| flags::entra(e, &self.app, &self.endpoint, profile))?,
            ),
            None => None,
        };
        Ok(TokenRequest {
            endpoint: self
                .endpoint
                .token_endpoint(&self.app, profile, target.version())?,
            client_id: self.app.client_id(profile)?,
            target,
            grant,
            claims,
        })
    }
}

/// The cache to use, unless `--no-cache`; a cache that cannot be opened is a warning.
pub fn cache(no_cache: bool) -> Option<Cache> {
    if no_cache {
        return None;
    }
    let dir = Cache::default_dir()?;
    match Cache::open(&dir) {
        Ok(c) => Some(c),
        Err(e) => {
            super::warn(&format!("{e}; continuing without the token cache"));
            None
        }
    }
}

pub fn run(args: &TokenArgs) -> Result<ExitCode> {
    let profile = args.key.profile()?;
    let profile = profile.as_ref();
    let request = args.request(profile)?;
    let signer = args.key.open(profile)?;
    let now = unix_now();
    let chain = resolve_chain(args.cert.as_ref(), profile, signer.as_ref(), now)?;
    let options = HttpOptions {
        ca_file: flags::ca_file(args.ca_file.as_ref(), profile),
        ..HttpOptions::default()
    };
    let client = Client::new(options, cache(args.no_cache));
    let credential = Credential {
        signer: signer.as_ref(),
        chain: &chain,
        alg: flags::alg(args.alg, profile),
        x5c: flags::x5c(args.x5c, profile)?,
        lifetime: args.lifetime,
    };
    let outcome = client
        .acquire(&credential, &request)
        .map_err(|e| flags::entra(e, &args.app, &args.endpoint, profile))?;
    for w in &outcome.warnings {
        super::warn(w);
    }
    let token = &outcome.token;
    let text = match args.format {
        Format::Raw => format!("{}\n", token.access_token.expose()),
        Format::Json => {
            let mut v = serde_json::json!({
                "access_token": token.access_token.expose(),
                "token_type": token.token_type,
                "expires_in": token.expires_on.saturating_sub(unix_now()).max(0),
                "expires_on": token.expires_on,
            });
            match &request.target {
                Target::Scopes(s) => {
                    v["scope"] = token.scope.clone().unwrap_or_else(|| s.join(" ")).into()
                }
                Target::Resource(r) => {
                    v["resource"] = token.resource.clone().unwrap_or_else(|| r.clone()).into()
                }
            }
            if let Some(rt) = &token.refresh_token {
                v["refresh_token"] = rt.expose().into();
            }
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        Format::Az => {
            let v = serde_json::json!({
                "accessToken": token.access_token.expose(),
                // Local time, as az prints it (UTC only if the C library cannot say).
                "expiresOn": super::localtime::az_local(token.expires_on).unwrap_or_else(|| {
                    rfc3339(token.expires_on).replace('T', " ").replace('Z', ".000000")
                }),
                "expires_on": token.expires_on,
                "tenant": args.app.tenant(profile).unwrap_or_default(),
                "tokenType": token.token_type,
            });
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        Format::ExecCredential => format!(
            "{}\n",
            serde_json::to_string_pretty(&exec_credential(
                token.access_token.expose(),
                token.expires_on
            ))?
        ),
    };
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// kubectl's `ExecCredential` (client.authentication.k8s.io/v1) carrying `token`, which
/// expires at `expires_on` (seconds since 1970): kubectl uses the token until
/// `status.expirationTimestamp` (RFC 3339, UTC) and runs the plugin again after it.
pub fn exec_credential(token: &str, expires_on: i64) -> serde_json::Value {
    serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1",
        "spec": {"interactive": false},
        "status": {
            "expirationTimestamp": rfc3339(expires_on),
            "token": token,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::exec_credential;

    #[test]
    fn exec_credential_is_kubectls_v1_shape() {
        assert_eq!(
            serde_json::to_string(&exec_credential("eyJ.a.b", 1_796_000_000)).unwrap(),
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false},"status":{"expirationTimestamp":"2026-11-30T00:53:20Z","token":"eyJ.a.b"}}"#
        );
    }
}
