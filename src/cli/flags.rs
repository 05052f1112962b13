//! The flags that name the app and its token endpoint, shared by `assertion`, `token`
//! and `doctor` (`--tenant`, `--client-id`, `--authority-host`, `--token-url`, with
//! azure-identity's environment variables as fallbacks), how `--alg`, `--x5c` and
//! `--ca-file` are resolved, and the CLI's edge for the
//! library's token-side errors: library messages say "the lifetime", "the tenant", "the
//! authority host"; here each error variant gets the flag (or environment variable) that
//! set the value it is about, and an Entra refusal whose hint says what to check gets
//! the flags that set it. Matching is on variants and AADSTS codes only, never on
//! message text.
//!
//! Every value is looked for in the same order, field by field: the flag, then its
//! environment variable, then the field of the `--profile` (see `certassert::config`),
//! then the default. A message about a value names where it came from, down to the
//! profile's file, line and column.

use certassert::assertion;
use certassert::config::Profile;
use certassert::entra::{self, authority};
use certassert::Algorithm;
use clap::Args;
use std::error::Error;
use std::fmt;
use std::path::PathBuf;

/// `--tenant` and `--client-id`, shared by `assertion`, `token` and `doctor`.
#[derive(Args, Debug, Clone)]
pub struct AppArgs {
    /// Directory (tenant) ID or verified domain [env: AZURE_TENANT_ID, else the profile's tenant]
    #[arg(long, value_name = "T")]
    pub tenant: Option<String>,
    /// Application (client) ID [env: AZURE_CLIENT_ID, else the profile's client_id]
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

impl AppArgs {
    /// `--client-id`, else AZURE_CLIENT_ID, else the profile's `client_id`.
    pub fn client_id(&self, profile: Option<&Profile>) -> Result<String> {
        Ok(self
            .client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"))
            .or_else(|| profile.and_then(|p| p.client_id.clone()))
            .ok_or(
                "no client id: pass --client-id (the app registration's Application (client) ID), set AZURE_CLIENT_ID, or name a profile that has client_id with --profile",
            )?)
    }

    /// `--tenant`, else AZURE_TENANT_ID, else the profile's `tenant`.
    pub fn tenant(&self, profile: Option<&Profile>) -> Option<String> {
        self.tenant
            .clone()
            .or_else(|| env("AZURE_TENANT_ID"))
            .or_else(|| profile.and_then(|p| p.tenant.clone()))
    }

    /// Where the client id came from, to name in a message about it.
    pub fn client_id_source(&self, profile: Option<&Profile>) -> String {
        source(
            self.client_id.is_some(),
            "--client-id",
            "AZURE_CLIENT_ID",
            profile,
            "client_id",
        )
    }

    /// Where the tenant came from, to name in a message about it.
    pub fn tenant_source(&self, profile: Option<&Profile>) -> String {
        source(
            self.tenant.is_some(),
            "--tenant",
            "AZURE_TENANT_ID",
            profile,
            "tenant",
        )
    }
}

/// Where a value came from: the flag, else its environment variable, else the profile's
/// field (`client_id in profile "prod" (/etc/certassert/config.toml:4:13)`), else the flag
/// (the message then says the value is missing, and the flag is how to give it).
fn source(
    flag_given: bool,
    flag: &str,
    var: &str,
    profile: Option<&Profile>,
    field: &str,
) -> String {
    if flag_given {
        return flag.to_string();
    }
    if env(var).is_some() {
        return var.to_string();
    }
    match profile.and_then(|p| Some((p, p.location(field)?))) {
        Some((p, at)) => format!("{field} in profile \"{}\" ({at})", p.name),
        None => flag.to_string(),
    }
}

/// `--authority-host` / `--token-url`, shared by `assertion`, `token` and `doctor`.
#[derive(Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Authority host; a bare host (login.microsoftonline.us) means https://
    /// [env: AZURE_AUTHORITY_HOST, else the profile's authority_host]
    /// [default: https://login.microsoftonline.com]
    #[arg(long, value_name = "URL", conflicts_with = "token_url")]
    pub authority_host: Option<String>,
    /// Token endpoint of any RFC 7523 server; also the assertion's aud
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
}

impl EndpointArgs {
    /// `--authority-host`, else AZURE_AUTHORITY_HOST, else the profile's
    /// `authority_host`, else the public cloud. A bare host (no `scheme://`) means
    /// https, as azure-identity reads AZURE_AUTHORITY_HOST.
    pub fn authority_host(&self, profile: Option<&Profile>) -> String {
        self.authority_host
            .clone()
            .or_else(|| env("AZURE_AUTHORITY_HOST"))
            .or_else(|| profile.and_then(|p| p.authority_host.clone()))
            .map(|host| with_scheme(&host))
            .unwrap_or_else(|| certassert::entra::AUTHORITY_PUBLIC.to_string())
    }

    /// Where the authority host came from, to name in a message about it.
    pub fn authority_host_source(&self, profile: Option<&Profile>) -> String {
        source(
            self.authority_host.is_some(),
            "--authority-host",
            "AZURE_AUTHORITY_HOST",
            profile,
            "authority_host",
        )
    }

    /// The token endpoint: `--token-url`, else `{authority-host}/{tenant}/oauth2/…`.
    /// An error names the flag (or variable, or profile field) that set the value at fault.
    pub fn token_endpoint(
        &self,
        app: &AppArgs,
        profile: Option<&Profile>,
        version: certassert::entra::EndpointVersion,
    ) -> Result<String> {
        let tenant = app.tenant(profile);
        if tenant.is_none() && self.token_url.is_none() {
            return Err("no tenant: pass --tenant (the Directory (tenant) ID), set AZURE_TENANT_ID, or name a profile that has tenant with --profile; or give --token-url".into());
        }
        certassert::entra::endpoint(
            &self.authority_host(profile),
            tenant.as_deref(),
            self.token_url.as_deref(),
            version,
        )
        .map_err(|e| endpoint(e, app, self, profile))
    }
}

/// `https://` in front of a bare host (`login.microsoftonline.us`, `login.example:8443`);
/// anything with a `scheme://` is left for the URL policy to judge.
pub fn with_scheme(host: &str) -> String {
    let host = host.trim();
    if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    }
}

/// The signing algorithm: `--alg`, else the profile's `alg`, else RS256.
pub fn alg(flag: Option<Algorithm>, profile: Option<&Profile>) -> Algorithm {
    flag.or_else(|| profile.and_then(|p| p.alg))
        .unwrap_or(Algorithm::Rs256)
}

/// The environment variable azure-identity reads to send the certificate chain (x5c).
pub const SEND_CHAIN_ENV: &str = "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN";

/// Whether to send x5c: `--x5c`, else AZURE_CLIENT_SEND_CERTIFICATE_CHAIN (`true`/`1` or
/// `false`/`0`, as azure-identity reads it), else the profile's `x5c`, else no.
pub fn x5c(flag: bool, profile: Option<&Profile>) -> Result<bool> {
    if flag {
        return Ok(true);
    }
    if let Some(value) = env(SEND_CHAIN_ENV) {
        return match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => {
                Err(format!("{SEND_CHAIN_ENV}=\"{value}\": expected true or false (1 or 0)").into())
            }
        };
    }
    Ok(profile.and_then(|p| p.x5c).unwrap_or(false))
}

/// Extra CA certificates to trust: `--ca-file`, else the profile's `ca_file`.
pub fn ca_file(flag: Option<&PathBuf>, profile: Option<&Profile>) -> Option<PathBuf> {
    flag.cloned()
        .or_else(|| profile.and_then(|p| p.ca_file.clone()))
}

/// Read a non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

type Boxed = Box<dyn Error>;
type Result<T> = std::result::Result<T, Boxed>;

/// A library error with the flag that set the value it is about in front:
/// `--lifetime 0: assertion lifetime 0 s is out of range: …`.
#[derive(Debug)]
struct Flagged {
    flag: String,
    error: Boxed,
}

impl fmt::Display for Flagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flag, self.error)
    }
}

impl Error for Flagged {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.error.as_ref())
    }
}

/// An Entra refusal whose hint line ends with the flags that set what it says to check.
#[derive(Debug)]
struct Hinted {
    flags: &'static str,
    error: Boxed,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; set with {}", self.error, self.flags)
    }
}

impl Error for Hinted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.error.as_ref())
    }
}

fn flagged(flag: impl Into<String>, error: impl Into<Boxed>) -> Boxed {
    Box::new(Flagged {
        flag: flag.into(),
        error: error.into(),
    })
}

/// The flags that set what an AADSTS code's hint tells the user to check.
fn aadsts_flags(code: u32) -> Option<&'static str> {
    Some(match code {
        700023 => "--tenant TENANT-ID, or --token-url URL",
        700016 => "--client-id and --tenant",
        700021 => "--client-id",
        90002 => "--tenant and --authority-host",
        1002012 | 70011 => "--scope RESOURCE/.default",
        901002 => "--scope RESOURCE/.default, or --resource R",
        _ => return None,
    })
}

/// An assertion error with its flag: `--lifetime N`, `--client-id` (or
/// `AZURE_CLIENT_ID`), `--aud`, `--cert`.
pub fn assertion(e: assertion::Error, app: &AppArgs, profile: Option<&Profile>) -> Boxed {
    let flag = match &e {
        assertion::Error::Lifetime(n) => format!("--lifetime {n}"),
        assertion::Error::ClientId => app.client_id_source(profile),
        assertion::Error::Audience => "--aud".to_string(),
        assertion::Error::NoCertificate => "--cert".to_string(),
        _ => return e.into(),
    };
    flagged(flag, e)
}

/// An endpoint error with its flag: `--authority-host` (or `AZURE_AUTHORITY_HOST`),
/// `--token-url`, `--aud`, `--tenant` (or `AZURE_TENANT_ID`).
pub fn endpoint(
    e: authority::Error,
    app: &AppArgs,
    endpoint: &EndpointArgs,
    profile: Option<&Profile>,
) -> Boxed {
    let flag = match &e {
        authority::Error::Url { role, .. } => match role {
            authority::UrlRole::AuthorityHost => endpoint.authority_host_source(profile),
            authority::UrlRole::TokenUrl => "--token-url".to_string(),
            authority::UrlRole::Audience => "--aud".to_string(),
            _ => return e.into(),
        },
        authority::Error::Tenant
        | authority::Error::MultiTenant(_)
        | authority::Error::TenantSyntax(_) => app.tenant_source(profile),
        _ => return e.into(),
    };
    flagged(flag, e)
}

/// A token-request error with its flag, or an Entra refusal with the flags its hint is
/// about (`hint: the tenant was not found: … ; set with --tenant and --authority-host`).
pub fn entra(
    e: entra::Error,
    app: &AppArgs,
    endpoint_args: &EndpointArgs,
    profile: Option<&Profile>,
) -> Boxed {
    match e {
        entra::Error::Assertion(e) => assertion(e, app, profile),
        entra::Error::Endpoint(e) => endpoint(e, app, endpoint_args, profile),
        entra::Error::ClaimsEncoding | entra::Error::ClaimsNotObject => flagged("--claims", e),
        entra::Error::CaFile { .. } => {
            match profile.and_then(|p| Some((p, p.location("ca_file")?))) {
                Some((p, at)) if p.ca_file.is_some() => flagged(
                    format!("--ca-file (or ca_file in profile \"{}\" ({at}))", p.name),
                    e,
                ),
                _ => flagged("--ca-file", e),
            }
        }
        entra::Error::Entra(refusal) => {
            let flags = refusal.hint_code().and_then(aadsts_flags);
            let error: Boxed = entra::Error::Entra(refusal).into();
            match flags {
                Some(flags) => Box::new(Hinted { flags, error }),
                None => error,
            }
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_hint_belongs_to_a_library_hint() {
        for code in [700023, 700016, 700021, 90002, 1002012, 70011, 901002] {
            assert!(aadsts_flags(code).is_some(), "{code}");
            assert!(entra::hint(code).is_some(), "{code}");
        }
    }
}

/// `--format text|json` of the reporting commands (cert show, inspect, doctor, key list,
/// key show): text for people, JSON (stable keys, each command's shape in its --help) for
/// scripts. `--json` is kept as a hidden alias where it existed.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct FormatArg {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Same as --format json (kept for scripts that use it)
    #[arg(long, hide = true)]
    pub json: bool,
}

impl FormatArg {
    /// The format asked for.
    pub fn get(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }
}

/// What a reporting command prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people
    #[default]
    Text,
    /// One JSON document
    Json,
}
