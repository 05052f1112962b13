//! `certassert emulator`: run the strict local Entra token endpoint until interrupted,
//! printing one line per request on stderr.

use super::{print, write_new, Result};
use certassert::cert::Certificate;
use certassert::emulator::{self, App, Code, Config, Fault, Observer};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "\
The first line printed is the authority host to use (--authority-host URL); with --tls,
clients trust the generated CA with --ca-file. Then each app's object id and its
certificates' keyIds. Each request gets one line on stderr (grant, client, status, AADSTS
code). It also serves Microsoft Graph's addKey/removeKey
(/v1.0/applications/{object-id}/addKey) for cert rotate and cert retire: the Graph URL is
the authority host. GET /_emulator/requests lists the requests received (form bodies
included: for tests only).

As an authority for MSAL and azure-identity (with --tls; point them at the CA with
REQUESTS_CA_BUNDLE or SSL_CERT_FILE): {URL}/{tenant}/v2.0/.well-known/openid-configuration,
{URL}/{tenant}/.well-known/openid-configuration (v1), {URL}/common/discovery/instance,
and the JWKS the issued tokens verify against at {URL}/{tenant}/discovery/v2.0/keys.
A reused jti is accepted within the assertion's validity, as Entra accepts it
(MSAL reuses one assertion for minutes); --reject-jti-replay refuses it.

Examples:
  certassert emulator --listen 127.0.0.1:8400 \\
      --register 11111111-2222-3333-4444-555555555555=app.cert.pem
  certassert emulator --listen 127.0.0.1:0 --register C=app.cert.pem --tls --ca-out ca.pem \\
      --fault 429 --fault 503
  certassert emulator --register C=app.cert.pem --tls --ca-out ca.pem --reject-jti-replay")]
pub struct EmulatorArgs {
    /// Address to listen on (loopback); port 0 picks a free one
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Register an app and its certificate (repeatable; several certificates per app allowed)
    #[arg(long, value_name = "CLIENT_ID=CERT.pem", required = true)]
    register: Vec<String>,
    /// Serve HTTPS with a generated CA (written to --ca-out)
    #[arg(long)]
    tls: bool,
    /// Where to write the CA certificate with --tls [default: $TMPDIR/certassert-emulator-PORT-ca.pem]
    #[arg(long, value_name = "PATH", requires = "tls")]
    ca_out: Option<PathBuf>,
    /// Serve only this tenant (others get AADSTS90002); default: any
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// Seed a single-use authorization code: CODE, or CODE=REDIRECT_URI
    #[arg(long, value_name = "CODE[=URI]")]
    code: Vec<String>,
    /// App role to put in client-credentials tokens (repeatable)
    #[arg(long, value_name = "ROLE")]
    role: Vec<String>,
    /// Misbehave once on a coming request, in order: 429 (Retry-After: 1), 503, slow, slow=MS,
    /// malformed, answer=STATUS:BODY (a crafted answer)
    #[arg(long, value_name = "FAULT")]
    fault: Vec<Fault>,
    /// Lifetime of issued access tokens, seconds
    #[arg(long, value_name = "SECS", default_value_t = 3599)]
    token_lifetime: i64,
    /// Refuse a client assertion whose jti was already used (RFC 7523 §3; Entra accepts it)
    #[arg(long)]
    reject_jti_replay: bool,
    /// Give an app this application object id (Graph's /applications/{id}); default: one
    /// derived from the client id
    #[arg(long, value_name = "CLIENT_ID=OID")]
    object_id: Vec<String>,
    /// Refuse each certificate added through Graph for its first N token requests
    /// (AADSTS700027), as Entra does while a new credential propagates
    #[arg(long, value_name = "N", default_value_t = 0)]
    graph_propagation: u32,
}

pub fn config(args: &EmulatorArgs) -> Result<Config> {
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {}: the emulator listens on loopback only (127.0.0.1 or [::1])",
            args.listen
        )
        .into());
    }
    let mut apps: Vec<App> = Vec::new();
    for reg in &args.register {
        let (id, path) = reg
            .split_once('=')
            .ok_or_else(|| format!("--register {reg}: expected CLIENT_ID=CERT.pem"))?;
        let certs = Certificate::load_chain(std::path::Path::new(path))?;
        let leaf = certs.into_iter().next().ok_or("no certificate")?;
        match apps.iter_mut().find(|a| a.client_id == id) {
            Some(app) => app.certificates.push(leaf),
            None => apps.push(App {
                client_id: id.to_string(),
                certificates: vec![leaf],
            }),
        }
    }
    let mut object_ids = Vec::new();
    for pair in &args.object_id {
        let (client, object) = pair
            .split_once('=')
            .filter(|(c, _)| apps.iter().any(|a| a.client_id.eq_ignore_ascii_case(c)))
            .ok_or_else(|| {
                format!("--object-id {pair}: expected CLIENT_ID=OID (the object id) for a client id given to --register")
            })?;
        if !certassert::graph::is_guid(object) {
            return Err(format!("--object-id {pair}: the object id must be a GUID").into());
        }
        object_ids.push((client.to_string(), object.to_string()));
    }
    let codes = args
        .code
        .iter()
        .map(|c| {
            let (code, uri) = match c.split_once('=') {
                Some((c, u)) => (c.to_string(), Some(u.to_string())),
                None => (c.clone(), None),
            };
            Code {
                code,
                redirect_uri: uri,
                ..Code::default()
            }
        })
        .collect();
    Ok(Config {
        listen: args.listen,
        apps,
        tenant: args.tenant.clone(),
        roles: args.role.clone(),
        codes,
        faults: args.fault.clone(),
        tls: args.tls,
        token_lifetime: args.token_lifetime,
        reject_jti_replay: args.reject_jti_replay,
        observer: Some(Observer(std::sync::Arc::new(|r| eprintln!("{r}")))),
        object_ids,
        graph_propagation: args.graph_propagation,
        ..Config::default()
    })
}

pub fn run(args: &EmulatorArgs) -> Result<ExitCode> {
    let running = emulator::start(config(args)?)?;
    let mut text = format!("{}\n", running.url());
    if let Some(ca) = running.ca_pem() {
        let port = running.url().rsplit(':').next().unwrap_or("0");
        let path = args.ca_out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("certassert-emulator-{port}-ca.pem"))
        });
        write_new(&path, ca.as_bytes(), 0o644, Some(true))?;
        text.push_str(&format!("ca-file: {}\n", path.display()));
    }
    let tenant = args.tenant.as_deref().unwrap_or("{tenant}");
    text.push_str(&format!(
        "token endpoints: {0}/{tenant}/oauth2/v2.0/token (scope), {0}/{tenant}/oauth2/token (resource)\n",
        running.url()
    ));
    for app in running.apps() {
        text.push_str(&format!(
            "app {}: object id {}\n",
            app.client_id, app.object_id
        ));
        for (key_id, thumbprint) in &app.keys {
            text.push_str(&format!("  keyId {key_id}  thumbprint {thumbprint}\n"));
        }
    }
    print(&text)?;
    loop {
        std::thread::park();
    }
}
