//! The flags that name the app and its token endpoint, shared by `assertion`, `token`
//! and `doctor` (`--tenant`, `--client-id`, `--authority-host`, `--token-url`, with
//! azure-identity's environment variables as fallbacks), and the CLI's edge for the
//! library's token-side errors: library messages say "the lifetime", "the tenant", "the
//! authority host"; here each error variant gets the flag (or environment variable) that
//! set the value it is about, and an Entra refusal whose hint says what to check gets
//! the flags that set it. Matching is on variants and AADSTS codes only, never on
//! message text.

use certassert::assertion;
use certassert::entra::{self, authority};
use clap::Args;
use std::error::Error;
use std::fmt;

/// `--tenant` and `--client-id`, shared by `assertion`, `token` and `doctor`.
#[derive(Args, Debug, Clone)]
pub struct AppArgs {
    /// Directory (tenant) ID or verified domain [env: AZURE_TENANT_ID]
    #[arg(long, value_name = "T")]
    pub tenant: Option<String>,
    /// Application (client) ID [env: AZURE_CLIENT_ID]
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

impl AppArgs {
    /// `--client-id`, else AZURE_CLIENT_ID.
    pub fn client_id(&self) -> Result<String> {
        Ok(self.client_id.clone().or_else(|| env("AZURE_CLIENT_ID")).ok_or(
            "no client id: pass --client-id (the app registration's Application (client) ID) or set AZURE_CLIENT_ID",
        )?)
    }

    /// `--tenant`, else AZURE_TENANT_ID.
    pub fn tenant(&self) -> Option<String> {
        self.tenant.clone().or_else(|| env("AZURE_TENANT_ID"))
    }

    /// Where the client id came from, to name in a message about it.
    pub fn client_id_source(&self) -> &'static str {
        if self.client_id.is_none() && env("AZURE_CLIENT_ID").is_some() {
            "AZURE_CLIENT_ID"
        } else {
            "--client-id"
        }
    }

    /// Where the tenant came from, to name in a message about it.
    pub fn tenant_source(&self) -> &'static str {
        if self.tenant.is_none() && env("AZURE_TENANT_ID").is_some() {
            "AZURE_TENANT_ID"
        } else {
            "--tenant"
        }
    }
}

/// `--authority-host` / `--token-url`, shared by `assertion`, `token` and `doctor`.
#[derive(Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Authority host [env: AZURE_AUTHORITY_HOST] [default: https://login.microsoftonline.com]
    #[arg(long, value_name = "URL", conflicts_with = "token_url")]
    pub authority_host: Option<String>,
    /// Token endpoint of any RFC 7523 server; also the assertion's aud
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
}

impl EndpointArgs {
    /// `--authority-host`, else AZURE_AUTHORITY_HOST, else the public cloud.
    pub fn authority_host(&self) -> String {
        self.authority_host
            .clone()
            .or_else(|| env("AZURE_AUTHORITY_HOST"))
            .unwrap_or_else(|| certassert::entra::AUTHORITY_PUBLIC.to_string())
    }

    /// Where the authority host came from, to name in a message about it.
    pub fn authority_host_source(&self) -> &'static str {
        if self.authority_host.is_none() && env("AZURE_AUTHORITY_HOST").is_some() {
            "AZURE_AUTHORITY_HOST"
        } else {
            "--authority-host"
        }
    }

    /// The token endpoint: `--token-url`, else `{authority-host}/{tenant}/oauth2/…`.
    /// An error names the flag (or variable) that set the value at fault.
    pub fn token_endpoint(
        &self,
        app: &AppArgs,
        version: certassert::entra::EndpointVersion,
    ) -> Result<String> {
        let tenant = app.tenant();
        if tenant.is_none() && self.token_url.is_none() {
            return Err("no tenant: pass --tenant (the Directory (tenant) ID) or set AZURE_TENANT_ID, or give --token-url".into());
        }
        certassert::entra::endpoint(
            &self.authority_host(),
            tenant.as_deref(),
            self.token_url.as_deref(),
            version,
        )
        .map_err(|e| endpoint(e, app, self))
    }
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
pub fn assertion(e: assertion::Error, app: &AppArgs) -> Boxed {
    let flag = match &e {
        assertion::Error::Lifetime(n) => format!("--lifetime {n}"),
        assertion::Error::ClientId => app.client_id_source().to_string(),
        assertion::Error::Audience => "--aud".to_string(),
        assertion::Error::NoCertificate => "--cert".to_string(),
        _ => return e.into(),
    };
    flagged(flag, e)
}

/// An endpoint error with its flag: `--authority-host` (or `AZURE_AUTHORITY_HOST`),
/// `--token-url`, `--aud`, `--tenant` (or `AZURE_TENANT_ID`).
pub fn endpoint(e: authority::Error, app: &AppArgs, endpoint: &EndpointArgs) -> Boxed {
    let flag = match &e {
        authority::Error::Url { role, .. } => match role {
            authority::UrlRole::AuthorityHost => endpoint.authority_host_source(),
            authority::UrlRole::TokenUrl => "--token-url",
            authority::UrlRole::Audience => "--aud",
            _ => return e.into(),
        },
        authority::Error::Tenant
        | authority::Error::MultiTenant(_)
        | authority::Error::TenantSyntax(_) => app.tenant_source(),
        _ => return e.into(),
    };
    flagged(flag, e)
}

/// A token-request error with its flag, or an Entra refusal with the flags its hint is
/// about (`hint: the tenant was not found: … ; set with --tenant and --authority-host`).
pub fn entra(e: entra::Error, app: &AppArgs, endpoint_args: &EndpointArgs) -> Boxed {
    match e {
        entra::Error::Assertion(e) => assertion(e, app),
        entra::Error::Endpoint(e) => endpoint(e, app, endpoint_args),
        entra::Error::ClaimsEncoding | entra::Error::ClaimsNotObject => flagged("--claims", e),
        entra::Error::CaFile { .. } => flagged("--ca-file", e),
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
