//! Where token requests may go, and the one place a token endpoint is built. Authority
//! hosts: the public cloud ([`AUTHORITY_PUBLIC`], the default), US Government, China
//! (21Vianet) or a custom host (env `AZURE_AUTHORITY_HOST`); the endpoint is v2
//! (`scope`) or v1 (`resource`) for one tenant, or an explicit token URL for any
//! RFC 7523 server. The URL policy is decided on the URL as [`url::Url`] parses it:
//! `https`, or plain `http` only to a loopback host (`127.0.0.0/8`, `::1`, `localhost`),
//! judged on the parsed host — never on the text, where `http://127.0.0.1.evil.example`
//! or `http://localhost@evil.example` would fool a prefix test.

use crate::rules;
use std::fmt;
use url::{Host, Url};

/// The public cloud (the default authority host).
pub const AUTHORITY_PUBLIC: &str = "https://login.microsoftonline.com";
/// Azure US Government.
pub const AUTHORITY_US_GOVERNMENT: &str = "https://login.microsoftonline.us";
/// Azure operated by 21Vianet (China).
pub const AUTHORITY_CHINA: &str = "https://login.chinacloudapi.cn";

/// Which token endpoint version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointVersion {
    /// `/{tenant}/oauth2/v2.0/token` (takes `scope`)
    V2,
    /// `/{tenant}/oauth2/token` (takes `resource`)
    V1,
}

/// What a checked URL is for (named in messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlRole {
    /// The authority host a token endpoint is built on.
    AuthorityHost,
    /// An explicit token endpoint.
    TokenUrl,
    /// An assertion's audience given apart from the endpoint.
    Audience,
    /// Microsoft Graph's base URL ([`crate::graph`]).
    GraphUrl,
}

impl fmt::Display for UrlRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AuthorityHost => "authority host",
            Self::TokenUrl => "token URL",
            Self::Audience => "audience",
            Self::GraphUrl => "Graph URL",
        })
    }
}

/// What is wrong with a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlProblem {
    /// No scheme: a host name or a path alone.
    NotAbsolute,
    /// The URL does not parse.
    Invalid(url::ParseError),
    /// No host (`http:///x`, `file:…`).
    NoHost,
    /// `http` to a host that is not loopback.
    PlainHttp,
    /// A scheme other than `https` or `http`.
    Scheme(String),
    /// An authority host with a query or fragment (the endpoint is built on its path).
    QueryOrFragment,
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => f.write_str("not an absolute URL (expected https://host/…)"),
            Self::Invalid(e) => write!(f, "not a valid URL ({e})"),
            Self::NoHost => f.write_str("the URL has no host"),
            Self::PlainHttp => f.write_str(
                "plain http is allowed only to loopback (127.0.0.1, ::1, localhost); use https",
            ),
            Self::Scheme(s) => write!(f, "the scheme must be https, not {s}"),
            Self::QueryOrFragment => {
                f.write_str("an authority host has no query or fragment (https://host[/path])")
            }
        }
    }
}

/// Why no token endpoint could be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL the policy refuses.
    #[error("{role} \"{url}\": {problem}")]
    Url {
        /// What the URL was for.
        role: UrlRole,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: UrlProblem,
    },
    /// No tenant (and no token URL).
    #[error("the tenant is empty: give the directory (tenant) ID or a verified domain")]
    Tenant,
    /// `common`, `organizations` or `consumers`.
    #[error("tenant \"{0}\": a client assertion must name one tenant; \"common\", \"organizations\" and \"consumers\" give AADSTS700023 (audience does not match the realm)")]
    MultiTenant(String),
    /// A tenant that holds URL syntax.
    #[error("tenant \"{0}\": a tenant is an ID or domain, not a URL or path")]
    TenantSyntax(String),
}

/// Whether `host` is loopback: `127.0.0.0/8`, `::1`, or the name `localhost` (the URL
/// parser has already lowercased it and read `127.1` or `0x7f000001` as IPv4).
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(name) => *name == "localhost",
    }
}

/// Parse `url` and apply the policy: `https`, or `http` only to a loopback host.
///
/// # Errors
/// [`Error::Url`] naming `role` and the [`UrlProblem`].
pub fn check_url(role: UrlRole, url: &str) -> Result<Url, Error> {
    let fail = |problem| Error::Url {
        role,
        url: url.to_string(),
        problem,
    };
    let parsed = Url::parse(url.trim()).map_err(|e| {
        fail(match e {
            url::ParseError::RelativeUrlWithoutBase => UrlProblem::NotAbsolute,
            url::ParseError::EmptyHost => UrlProblem::NoHost,
            other => UrlProblem::Invalid(other),
        })
    })?;
    let host = parsed.host().ok_or_else(|| fail(UrlProblem::NoHost))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&host) => Ok(parsed),
        "http" => Err(fail(UrlProblem::PlainHttp)),
        other => Err(fail(UrlProblem::Scheme(other.to_string()))),
    }
}

/// The token endpoint to post to (and the assertion's `aud`) — the only function that
/// builds one. With `token_url`, that URL exactly as given, once the policy accepts it;
/// else `{authority_host}/{tenant}/oauth2/v2.0/token` ([`EndpointVersion::V2`], for
/// scopes) or `{authority_host}/{tenant}/oauth2/token` ([`EndpointVersion::V1`], for a
/// resource), on the parsed authority host (see
/// [`Target::version`](super::request::Target::version)).
///
/// # Errors
/// A URL the policy refuses ([`Error::Url`]), a missing tenant ([`Error::Tenant`]), a
/// multi-tenant alias ([`Error::MultiTenant`]) or a tenant with URL syntax in it.
pub fn endpoint(
    authority_host: &str,
    tenant: Option<&str>,
    token_url: Option<&str>,
    version: EndpointVersion,
) -> Result<String, Error> {
    if let Some(url) = token_url {
        check_url(UrlRole::TokenUrl, url)?;
        return Ok(url.to_string());
    }
    let mut url = check_url(UrlRole::AuthorityHost, authority_host)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Url {
            role: UrlRole::AuthorityHost,
            url: authority_host.to_string(),
            problem: UrlProblem::QueryOrFragment,
        });
    }
    let tenant = tenant.unwrap_or_default().trim();
    if tenant.is_empty() {
        return Err(Error::Tenant);
    }
    if rules::is_multi_tenant(tenant) {
        return Err(Error::MultiTenant(tenant.to_string()));
    }
    if tenant.contains(['/', '?', '#', ' ', '\\', '%']) || tenant == "." || tenant == ".." {
        return Err(Error::TenantSyntax(tenant.to_string()));
    }
    let tail: &[&str] = match version {
        EndpointVersion::V2 => &["oauth2", "v2.0", "token"],
        EndpointVersion::V1 => &["oauth2", "token"],
    };
    url.path_segments_mut()
        .map_err(|()| Error::Url {
            role: UrlRole::AuthorityHost,
            url: authority_host.to_string(),
            problem: UrlProblem::NoHost,
        })?
        .pop_if_empty()
        .push(tenant)
        .extend(tail);
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::request::Target;
    use EndpointVersion::{V1, V2};

    fn v2(host: &str, tenant: &str) -> Result<String, Error> {
        endpoint(host, Some(tenant), None, V2)
    }

    fn problem(result: Result<String, Error>) -> UrlProblem {
        match result {
            Err(Error::Url { problem, .. }) => problem,
            other => panic!("expected a URL refusal, got {other:?}"),
        }
    }

    #[test]
    fn v1_for_resource_v2_for_scopes_token_url_wins() {
        let s = Target::Scopes(vec!["https://graph.microsoft.com/.default".into()]);
        let r = Target::Resource("https://vault.azure.net".into());
        assert_eq!(
            endpoint(AUTHORITY_US_GOVERNMENT, Some("t"), None, s.version()).unwrap(),
            "https://login.microsoftonline.us/t/oauth2/v2.0/token"
        );
        assert_eq!(
            endpoint(AUTHORITY_CHINA, Some("t"), None, r.version()).unwrap(),
            "https://login.chinacloudapi.cn/t/oauth2/token"
        );
        assert_eq!(
            endpoint(
                AUTHORITY_PUBLIC,
                None,
                Some("https://idp.example/token"),
                s.version()
            )
            .unwrap(),
            "https://idp.example/token"
        );
        let e = endpoint("http://login.example.com", Some("t"), None, s.version()).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = endpoint(
            AUTHORITY_PUBLIC,
            None,
            Some("http://10.0.0.1/token"),
            s.version(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(endpoint(AUTHORITY_PUBLIC, Some("common"), None, s.version()).is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            v2(
                "https://login.microsoftonline.com/",
                "contoso.onmicrosoft.com"
            )
            .unwrap(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            endpoint("https://login.microsoftonline.us", Some("t"), None, V1).unwrap(),
            "https://login.microsoftonline.us/t/oauth2/token"
        );
        assert_eq!(
            v2("http://127.0.0.1:8080", "t").unwrap(),
            "http://127.0.0.1:8080/t/oauth2/v2.0/token"
        );
        assert_eq!(
            v2("http://[::1]:8080/", "t").unwrap(),
            "http://[::1]:8080/t/oauth2/v2.0/token"
        );
        // A custom authority with a path prefix keeps it.
        assert_eq!(
            v2("https://login.example/prefix/", "t").unwrap(),
            "https://login.example/prefix/t/oauth2/v2.0/token"
        );
    }

    #[test]
    fn endpoint_errors() {
        let e = v2("http://login.example.com", "t").unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = v2("login.microsoftonline.com", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute URL"), "{e}");
        let e = v2("https://login.microsoftonline.com", "common").unwrap_err();
        assert!(e.to_string().contains("AADSTS700023"), "{e}");
        for alias in ["common", "Organizations", "CONSUMERS"] {
            assert!(
                matches!(v2(AUTHORITY_PUBLIC, alias), Err(Error::MultiTenant(_))),
                "{alias}"
            );
        }
        assert_eq!(v2("https://h", " "), Err(Error::Tenant));
        assert_eq!(endpoint("https://h", None, None, V2), Err(Error::Tenant));
        for tenant in ["t/x", "t?x", "t#x", "t x", ".."] {
            assert!(
                matches!(v2(AUTHORITY_PUBLIC, tenant), Err(Error::TenantSyntax(_))),
                "{tenant}"
            );
        }
        assert_eq!(
            problem(v2("http://127.0.0.1.evil.com", "t")),
            UrlProblem::PlainHttp
        );
        assert_eq!(
            problem(v2("https://login.example/?x=1", "t")),
            UrlProblem::QueryOrFragment
        );
        assert_eq!(
            problem(v2("ftp://login.example", "t")),
            UrlProblem::Scheme("ftp".into())
        );
        assert_eq!(problem(v2("http://", "t")), UrlProblem::NoHost);
    }

    #[test]
    fn loopback_is_decided_on_the_parsed_host() {
        let allowed = |url: &str| check_url(UrlRole::TokenUrl, url).is_ok();
        // Loopback, however it is spelled.
        for url in [
            "http://127.0.0.1/token",
            "http://127.0.0.1:8080/token",
            "http://127.255.255.254/token",
            "http://127.1/token",
            "http://0x7f000001/token",
            "http://[::1]:8080/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://localhost/token",
            "http://LOCALHOST:8080/token",
            "http://LocalHost/token",
            // The URL parser reads a trailing dot after an IPv4 address as that address.
            "http://127.0.0.1./token",
            // Userinfo does not change the host the request goes to.
            "http://evil.example@127.0.0.1/token",
            "http://user:pass@localhost/token",
        ] {
            assert!(allowed(url), "{url} is loopback");
        }
        // Not loopback, though the text starts or contains like it.
        for url in [
            "http://127.0.0.1.evil.example/",
            "http://127.0.0.1.nip.io/",
            "http://localhost.evil.example/",
            "http://localhost@evil.example/",
            "http://127.0.0.1@evil.example/",
            "http://127.0.0.1:80@evil.example/",
            "http://evil.example/127.0.0.1",
            "http://evil.example/?localhost",
            "http://evil.example#@127.0.0.1",
            // Only the name "localhost" itself is taken as loopback, not "localhost.".
            "http://localhost./",
            "http://[::ffff:127.0.0.1]/",
            "http://[::2]/",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://128.0.0.1/",
        ] {
            assert_eq!(
                problem(Err(check_url(UrlRole::TokenUrl, url).unwrap_err())),
                UrlProblem::PlainHttp,
                "{url} is not loopback"
            );
        }
        // https goes anywhere; the scheme is case-insensitive.
        assert!(allowed("https://login.microsoftonline.com"));
        assert!(allowed("HTTPS://login.microsoftonline.com"));
        assert!(allowed("HTTP://127.0.0.1/"));
    }

    #[test]
    fn messages_name_no_cli_flag() {
        let errors = [
            v2("http://login.example.com", "t").unwrap_err(),
            endpoint(AUTHORITY_PUBLIC, None, Some("x"), V2).unwrap_err(),
            v2(AUTHORITY_PUBLIC, "common").unwrap_err(),
            v2(AUTHORITY_PUBLIC, "").unwrap_err(),
            v2(AUTHORITY_PUBLIC, "a/b").unwrap_err(),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.contains("--"), "{text}");
        }
    }
}
