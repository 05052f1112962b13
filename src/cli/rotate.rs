//! `certassert cert rotate` and `cert retire` (issue 12): the app renews its own
//! certificate credential through Microsoft Graph, the keys staying where they live.
//!
//! rotate: CURRENT (`--key`, its certificate) gets a Graph token and signs the proof;
//! NEW (`--new-key`) is opened, or generated when it holds no key yet, and gets a
//! self-signed certificate (or takes `--new-cert`) written before anything is sent, so a
//! re-run reuses both; `addKey` registers it — unless a token signed by NEW already
//! works, in which case it is registered and is not added twice —; then a token signed
//! by NEW must come back within `--propagation-wait` before it is a success. With
//! `--profile` the profile's key, cert and key_id are rewritten to NEW atomically.
//! retire: `removeKey` with a proof signed by KEY, refusing to remove KEY's own
//! credential without `--force`.
//!
//! The library (`certassert::graph`) names no flag; the flags are put to its errors here.

use super::flags::{self, AppArgs, EndpointArgs};
use super::{cert::cert_error, stored_chain, warn, write_new, KeyArg, Result};
use certassert::cert::{self, Certificate};
use certassert::config::{Profile, ProfileUpdate};
use certassert::encoding::{rfc3339, unix_now};
use certassert::entra::authority::UrlRole;
use certassert::entra::{
    Client, Credential, EndpointVersion, Grant, HttpOptions, Target, TokenRequest,
};
use certassert::graph::{self, Graph};
use certassert::keyref::KeyRef;
use certassert::signer::{self, Signer};
use certassert::Algorithm;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What rotate and retire share: the app, where Graph and the token endpoint are.
#[derive(Args)]
pub struct GraphArgs {
    /// The app registration's Object ID (Overview page; not the client id): Graph's
    /// /applications/{id}, and the proof's iss
    #[arg(long, value_name = "GUID")]
    object_id: String,
    #[command(flatten)]
    app: AppArgs,
    /// Authority host; a bare host means https:// [env: AZURE_AUTHORITY_HOST, else the
    /// profile's authority_host] [default: https://login.microsoftonline.com]
    #[arg(long, value_name = "URL")]
    authority_host: Option<String>,
    /// Microsoft Graph [default: from the authority host: https://graph.microsoft.com,
    /// https://graph.microsoft.us for login.microsoftonline.us,
    /// https://microsoftgraph.chinacloudapi.cn for login.chinacloudapi.cn; a loopback
    /// emulator serves Graph itself]
    #[arg(long, value_name = "URL")]
    graph_url: Option<String>,
    /// Extra CA certificate(s) to trust (PEM) [default: the profile's ca_file]
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
}

#[derive(Args)]
#[command(after_help = "\
Registers NEW on the app with Microsoft Graph's addKey, with a proof signed by CURRENT
(no Graph permission is needed), then waits until a token signed by NEW comes back. NEW is
generated when it holds no key (a 0600 file, a non-extractable key in the token, a TPM key
file or handle) and gets a self-signed certificate written to --out (on a PKCS#11 token
without --out) before anything is sent. Running it again after a failure is safe: NEW and
its --out certificate are reused, and a certificate that already works is not added twice.
--profile rewrites that profile's key, cert and key_id to NEW (atomically). Prints one JSON
line: {\"keyId\",\"thumbprint\",\"x5t\",\"notAfter\",\"oldThumbprint\",\"oldKeyId\",\"added\",\"profile\"}.

Examples:
  certassert cert rotate --profile prod --new-key /etc/certassert/app-2027.key.pem \\
      --out /etc/certassert/app-2027.cert.pem --object-id 6a1c1bd4-1d5c-4a8e-9d1e-0c3f1b2a4e77 \\
      --if-expires-within 30
  certassert cert rotate --key app.key.pem --cert app.cert.pem --new-key app-2027.key.pem \\
      --out app-2027.cert.pem --object-id 6a1c1bd4-1d5c-4a8e-9d1e-0c3f1b2a4e77 \\
      --tenant contoso.onmicrosoft.com --client-id 2f877daa-b6f5-42a3-8430-acf238b234e1
  certassert cert rotate --key 'pkcs11:token=app;object=app-2026?pin-source=file:/run/pin' \\
      --new-key 'pkcs11:token=app;object=app-2027?pin-source=file:/run/pin' \\
      --object-id 6a1c1bd4-1d5c-4a8e-9d1e-0c3f1b2a4e77 --tenant T --client-id C

Then retire the old credential with: certassert cert retire --key NEW --key-id OLD_KEY_ID …")]
pub struct RotateArgs {
    #[command(flatten)]
    key: KeyArg,
    /// CURRENT's certificate [env: CERTASSERT_CERT, else the profile's cert, else the one
    /// stored with the key]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    /// NEW: a key reference; generated there when it holds no key yet
    #[arg(long, value_name = "URI")]
    new_key: String,
    /// A CA-issued certificate for NEW (checked against NEW) instead of a self-signed one
    #[arg(long, value_name = "PATH", conflicts_with_all = ["subject", "days"])]
    new_cert: Option<PathBuf>,
    /// Subject of NEW's self-signed certificate [default: CURRENT's subject]
    #[arg(long)]
    subject: Option<String>,
    /// Days of validity of NEW's self-signed certificate
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// RSA size of NEW when it is generated
    #[arg(long, default_value_t = 2048, value_parser = parse_bits)]
    bits: usize,
    /// Write NEW's certificate here (reused when it is already NEW's); needed unless NEW
    /// is a PKCS#11 key (then the certificate is stored on the token)
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Do nothing (exit 0, and say so) while CURRENT's certificate has more than DAYS left
    #[arg(long, value_name = "DAYS")]
    if_expires_within: Option<u32>,
    /// How long a token signed by NEW may be refused while the new credential
    /// propagates before giving up (both stay registered)
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    propagation_wait: u64,
    #[command(flatten)]
    graph: GraphArgs,
}

#[derive(Args)]
#[command(after_help = "\
Removes the credential KEY_ID from the app with Microsoft Graph's removeKey, with a proof
signed by KEY (a credential that stays). Removing KEY's own credential would lock the app
out: it is refused without --force. Which keyId is KEY's comes from the profile's key_id
(cert rotate --profile records it), else from the app's keyCredentials when Graph lets the
app read them (Application.Read.All); when neither can tell, --force is required. Prints
one JSON line: {\"removedKeyId\"}.

Examples:
  certassert cert retire --profile prod --key-id 0c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f \\
      --object-id 6a1c1bd4-1d5c-4a8e-9d1e-0c3f1b2a4e77
  certassert cert retire --key app-2027.key.pem --cert app-2027.cert.pem \\
      --key-id 0c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f --object-id 6a1c1bd4-1d5c-4a8e-9d1e-0c3f1b2a4e77 \\
      --tenant T --client-id C --force")]
pub struct RetireArgs {
    #[command(flatten)]
    key: KeyArg,
    /// KEY's certificate [env: CERTASSERT_CERT, else the profile's cert, else the one
    /// stored with the key]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    /// The keyId of the credential to remove (cert rotate prints the one it adds)
    #[arg(long, value_name = "GUID")]
    key_id: String,
    /// Remove it even when it may be KEY's own credential (the app is locked out if it is)
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    graph: GraphArgs,
}

fn parse_bits(s: &str) -> std::result::Result<usize, String> {
    match s {
        "2048" | "3072" | "4096" => Ok(s.parse().expect("a listed number")),
        _ => Err(format!(
            "{s}: choose 2048, 3072 or 4096 (Entra ID requires at least 2048)"
        )),
    }
}

/// The resolved places: token endpoint, Graph, client id, HTTP client.
struct Setup {
    endpoint: String,
    graph_url: String,
    client_id: String,
    client: Client,
    endpoint_args: EndpointArgs,
}

impl GraphArgs {
    fn setup(&self, profile: Option<&Profile>) -> Result<Setup> {
        if !graph::is_guid(&self.object_id) {
            return Err(format!(
                "--object-id {}: not a GUID; give the app registration's Object ID (Overview page), not its client id or name",
                self.object_id
            )
            .into());
        }
        if self.app.tenant(profile).is_none() {
            return Err("no tenant: pass --tenant (the Directory (tenant) ID), set AZURE_TENANT_ID, or name a profile that has tenant with --profile".into());
        }
        let endpoint_args = EndpointArgs {
            authority_host: self.authority_host.clone(),
            token_url: None,
        };
        let endpoint = endpoint_args.token_endpoint(&self.app, profile, EndpointVersion::V2)?;
        let graph_url = match &self.graph_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => graph::graph_url(&endpoint_args.authority_host(profile)),
        };
        let client_id = self.app.client_id(profile)?;
        let options = HttpOptions {
            ca_file: flags::ca_file(self.ca_file.as_ref(), profile),
            ..HttpOptions::default()
        };
        Ok(Setup {
            endpoint,
            graph_url,
            client_id,
            client: Client::new(options, None),
            endpoint_args,
        })
    }
}

impl Setup {
    /// A Graph token signed by `signer` with `chain` (one attempt per retry policy).
    fn graph_token(
        &self,
        signer: &dyn Signer,
        chain: &[Certificate],
        alg: Algorithm,
    ) -> std::result::Result<certassert::secret::Secret, certassert::entra::Error> {
        let credential = Credential {
            signer,
            chain,
            alg,
            x5c: false,
            lifetime: certassert::assertion::DEFAULT_LIFETIME,
        };
        let request = TokenRequest {
            endpoint: self.endpoint.clone(),
            client_id: self.client_id.clone(),
            target: Target::Scopes(vec![graph::scope(&self.graph_url)]),
            grant: Grant::ClientCredentials,
            claims: None,
        };
        Ok(self
            .client
            .acquire(&credential, &request)?
            .token
            .access_token)
    }
}

/// A Graph error with the flag that set what it is about.
fn graph_error(
    e: graph::Error,
    args: &GraphArgs,
    setup: &Setup,
    profile: Option<&Profile>,
) -> Box<dyn std::error::Error> {
    match e {
        graph::Error::Url(certassert::entra::authority::Error::Url {
            role: UrlRole::GraphUrl,
            ..
        }) => {
            let flag = if args.graph_url.is_some() {
                "--graph-url".to_string()
            } else {
                format!(
                    "the Graph URL derived from {}",
                    setup.endpoint_args.authority_host_source(profile)
                )
            };
            format!("{flag}: {e}").into()
        }
        graph::Error::ObjectId(_) => format!("--object-id: {e}").into(),
        graph::Error::KeyId(_) => format!("--key-id: {e}").into(),
        graph::Error::Http(certassert::entra::Error::Network {
            url,
            attempts,
            detail,
        }) => {
            let from = if args.graph_url.is_some() {
                "--graph-url".to_string()
            } else {
                format!(
                    "derived from {}; set it with --graph-url",
                    setup.endpoint_args.authority_host_source(profile)
                )
            };
            format!(
                "cannot reach Microsoft Graph at {} ({from}): POST {url} failed after {attempts} attempt(s): {detail}; run the same command again when Graph is reachable (it does not add NEW twice)",
                setup.graph_url
            )
            .into()
        }
        graph::Error::Http(inner) => flags::entra(inner, &args.app, &setup.endpoint_args, profile),
        other => other.into(),
    }
}

/// The key's certificate chain: the file (flag, env, profile) or the one stored with the
/// key; checked against the key, not yet for validity.
fn chain_of(
    cert: Option<&PathBuf>,
    profile: Option<&Profile>,
    signer: &dyn Signer,
    what: &str,
) -> Result<Vec<Certificate>> {
    let chain = match super::cert_path(cert, profile) {
        Some(path) => Certificate::load_chain(&path).map_err(cert_error)?,
        None => stored_chain(signer)?.ok_or_else(|| {
            format!("no certificate for {what}: none is stored with the key; pass --cert PATH")
        })?,
    };
    chain[0].check_key(signer).map_err(cert_error)?;
    Ok(chain)
}

/// Whether opening failed because the reference holds no key yet (so one may be made).
fn holds_no_key(e: &signer::Error) -> bool {
    use signer::pkcs11::Pkcs11Error as P;
    use signer::tpm::TpmError as T;
    match e {
        signer::Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        signer::Error::Pkcs11(P::NoKey { .. }) => true,
        signer::Error::Tpm(T::NoPersistentKey { .. }) => true,
        _ => false,
    }
}

/// Open NEW, or generate it when it holds no key. Returns the signer and whether it was
/// made now.
fn open_or_generate(keyref: &KeyRef, bits: usize) -> Result<(Box<dyn Signer>, bool)> {
    if let KeyRef::File { path, password } = keyref {
        if !path.exists() {
            if password.is_some() {
                return Err(format!("--new-key {}: NEW is generated as an unencrypted PKCS#8 file protected by its mode (0600); drop the ?password-… part, or keep NEW in hardware (pkcs11:, tpm:)", path.display()).into());
            }
            let pkcs8 = signer::generate_software_key(bits).map_err(super::KeyError::from)?;
            let pem =
                zeroize::Zeroizing::new(certassert::public_key::pem::encode("PRIVATE KEY", &pkcs8));
            write_new(path, pem.as_bytes(), 0o600, None)?;
            eprintln!(
                "generated NEW: a {bits}-bit RSA key in {} (0600)",
                path.display()
            );
            return Ok((super::open_key(keyref)?, true));
        }
        return Ok((super::open_key(keyref)?, false));
    }
    match super::open_key(keyref) {
        Ok(s) => Ok((s, false)),
        Err(e) if holds_no_key(e.inner()) => {
            let made = super::generate_key(keyref, bits, None)?;
            let place = match keyref {
                KeyRef::Pkcs11(_) => "its PKCS#11 token",
                _ => "the TPM",
            };
            eprintln!("generated NEW: a {bits}-bit RSA key in {place}");
            Ok((made, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// NEW's certificate: `--new-cert`, else a certificate of NEW's already at `--out` or on
/// its token (a re-run), else a new self-signed one, written before anything is sent.
fn new_certificate(
    args: &RotateArgs,
    keyref: &KeyRef,
    new: &dyn Signer,
    current: &Certificate,
    now: i64,
) -> Result<(Certificate, Option<PathBuf>)> {
    if let Some(path) = &args.new_cert {
        let chain = Certificate::load_chain(path).map_err(cert_error)?;
        chain[0]
            .check_key(new)
            .map_err(|e| format!("--new-cert {}: {}", path.display(), cert_error(e)))?;
        chain[0]
            .check_validity(now)
            .map_err(|e| format!("--new-cert {}: {e}", path.display()))?;
        return Ok((chain[0].clone(), Some(path.clone())));
    }
    if let Some(out) = &args.out {
        if out.exists() {
            let chain = Certificate::load_chain(out).map_err(cert_error)?;
            if chain[0].check_key(new).is_err() {
                return Err(format!(
                    "--out {} holds a certificate for another key, not NEW's; choose another path (nothing was sent)",
                    out.display()
                )
                .into());
            }
            chain[0].check_validity(now).map_err(|e| {
                format!("--out {}: {e}; delete it to make a new one", out.display())
            })?;
            eprintln!(
                "reusing NEW's certificate {} (from an earlier run)",
                out.display()
            );
            return Ok((chain[0].clone(), Some(out.clone())));
        }
    } else if let Some(stored) = stored_chain(new)? {
        if stored[0].check_key(new).is_ok() && stored[0].check_validity(now).is_ok() {
            eprintln!("reusing the certificate stored with NEW on its token");
            return Ok((stored[0].clone(), None));
        }
    }
    let is_token = matches!(keyref, KeyRef::Pkcs11(_));
    if args.out.is_none() && !is_token {
        return Err("pass --out NEW.cert.pem: where NEW's certificate is written (only a PKCS#11 key keeps it on its token)".into());
    }
    let subject = args.subject.clone().unwrap_or_else(|| current.subject());
    let made = cert::create_self_signed(new, Algorithm::Rs256, &subject, args.days, now)
        .map_err(cert_error)?;
    match &args.out {
        Some(out) => write_new(out, made.to_pem().as_bytes(), 0o644, Some(false))?,
        None => new.store_certificate(made.der())?,
    }
    eprintln!(
        "created NEW's certificate {} valid until {}{}",
        made.subject(),
        rfc3339(made.not_after()),
        args.out.as_ref().map_or(
            " (stored on the token beside NEW)".to_string(),
            |o| format!(" in {}", o.display())
        )
    );
    Ok((made, args.out.clone()))
}

/// The NEW key's text for the profile: a relative key file path made absolute.
fn key_text_for_profile(text: &str, keyref: &KeyRef) -> String {
    match keyref {
        KeyRef::File {
            path,
            password: None,
        } if path.is_relative() && !text.starts_with("file:") && !text.contains('?') => {
            std::path::absolute(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string()
        }
        _ => text.to_string(),
    }
}

pub fn rotate(args: &RotateArgs) -> Result<ExitCode> {
    let profile = args.key.profile()?;
    let profile = profile.as_ref();
    let setup = args.graph.setup(profile)?;
    let alg = flags::alg(None, profile);
    let now = unix_now();
    let current = args.key.open(profile)?;
    let current_chain = chain_of(args.cert.as_ref(), profile, current.as_ref(), "CURRENT")?;
    let old = &current_chain[0];
    if let Some(days) = args.if_expires_within {
        let left = old.not_after() - now;
        if left > i64::from(days) * 86_400 {
            eprintln!(
                "nothing to do: CURRENT's certificate {} is valid until {} ({} days left, more than {days})",
                old.thumbprint_hex(),
                rfc3339(old.not_after()),
                left / 86_400
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let new_keyref: KeyRef = args
        .new_key
        .parse()
        .map_err(|e| format!("--new-key: {e}"))?;
    for w in new_keyref.warnings() {
        warn(&w);
    }
    if let (Some(p), None, KeyRef::Pkcs11(_)) = (profile, &args.out, &new_keyref) {
        if p.cert.is_some() && args.new_cert.is_none() {
            return Err(format!(
                "profile \"{}\" names a cert file: pass --out NEW.cert.pem so it can name NEW's",
                p.name
            )
            .into());
        }
    }
    let (new, _generated) = open_or_generate(&new_keyref, args.bits)?;
    if certassert::public_key::same_rsa_key(new.public_key_der(), current.public_key_der()) {
        if let Some(p) = profile.filter(|_| args.key.key.is_none()) {
            // An earlier run finished: the profile already names NEW.
            eprintln!(
                "nothing to do: profile \"{}\" already uses NEW ({}); the rotation is done",
                p.name,
                old.thumbprint_hex()
            );
            return Ok(ExitCode::SUCCESS);
        }
        return Err("--new-key names the same key as CURRENT: rotation needs a new key".into());
    }
    let (new_cert, new_cert_path) = new_certificate(args, &new_keyref, new.as_ref(), old, now)?;
    let new_chain = vec![new_cert.clone()];
    if old.check_validity(now).is_err() {
        let when = if now > old.not_after() {
            format!("expired on {}", rfc3339(old.not_after()))
        } else {
            format!("is not valid until {}", rfc3339(old.not_before()))
        };
        return Err(format!(
            "CURRENT's certificate {} {when}, so it cannot sign a proof. Graph accepts no proof (and Entra no token) from an expired credential: upload NEW's certificate{} by hand (App registrations > Certificates & secrets; thumbprint {}), then use --key {}",
            old.thumbprint_hex(),
            new_cert_path.as_ref().map_or(String::new(), |p| format!(" {}", p.display())),
            new_cert.thumbprint_hex(),
            args.new_key,
        )
        .into());
    }
    let http = setup
        .client
        .http()
        .map_err(|e| flags::entra(e, &args.graph.app, &setup.endpoint_args, profile))?;
    // Already registered (an earlier run added it)? A token signed by NEW says so.
    let mut key_id: Option<String> = None;
    let added = match setup.graph_token(new.as_ref(), &new_chain, alg) {
        Ok(_) => {
            eprintln!(
                "NEW ({}) is already registered on the app: not adding it again",
                new_cert.thumbprint_hex()
            );
            false
        }
        Err(e) if e.entra().and_then(|x| x.code()) == Some(700027) => {
            let token = setup
                .graph_token(current.as_ref(), &current_chain, alg)
                .map_err(|e| flags::entra(e, &args.graph.app, &setup.endpoint_args, profile))?;
            let graph = Graph::new(http, &setup.graph_url, &token)
                .map_err(|e| graph_error(e, &args.graph, &setup, profile))?;
            let proof = graph::proof(current.as_ref(), old, &args.graph.object_id, unix_now())
                .map_err(|e| graph_error(e, &args.graph, &setup, profile))?;
            let credential = graph
                .add_key(&args.graph.object_id, &new_cert, &proof)
                .map_err(|e| graph_error(e, &args.graph, &setup, profile))?;
            eprintln!(
                "added NEW ({}) to the app as keyId {}; proving it works…",
                new_cert.thumbprint_hex(),
                credential.key_id
            );
            key_id = Some(credential.key_id);
            true
        }
        Err(e) => {
            return Err(flags::entra(
                e,
                &args.graph.app,
                &setup.endpoint_args,
                profile,
            ))
        }
    };
    if added {
        prove_new(
            &setup,
            new.as_ref(),
            &new_chain,
            alg,
            args,
            key_id.as_deref(),
            &new_cert,
        )?;
    } else {
        // Which keyId it got: only Graph can say, when the app may read its own object.
        if let Ok(token) = setup.graph_token(new.as_ref(), &new_chain, alg) {
            if let Ok(graph) = Graph::new(http, &setup.graph_url, &token) {
                match graph.key_credentials(&args.graph.object_id) {
                    Ok(list) => {
                        key_id = list
                            .into_iter()
                            .find(|k| k.thumbprint.as_deref() == Some(&*new_cert.thumbprint_hex()))
                            .map(|k| k.key_id)
                    }
                    Err(_) => warn("Graph does not let this app read its keyCredentials: NEW's keyId is the one the earlier run printed (or see the portal)"),
                }
            }
        }
    }
    let old_key_id = profile
        .and_then(|p| p.key_id.clone())
        .filter(|_| args.key.key.is_none());
    if let Some(p) = profile {
        let key_text = key_text_for_profile(&args.new_key, &new_keyref);
        let update = ProfileUpdate::new(Some(key_text), new_cert_path.clone(), key_id.clone());
        certassert::config::rewrite_profile(p.file(), &p.name, &update)?;
        eprintln!(
            "profile \"{}\" in {} now uses NEW",
            p.name,
            p.file().display()
        );
    }
    let line = serde_json::json!({
        "keyId": key_id,
        "thumbprint": new_cert.thumbprint_hex(),
        "x5t": new_cert.x5t(),
        "notAfter": rfc3339(new_cert.not_after()),
        "oldThumbprint": old.thumbprint_hex(),
        "oldKeyId": old_key_id,
        "added": added,
        "profile": profile.map(|p| p.name.clone()),
    });
    super::print(&format!("{line}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// A token signed by NEW, retried while Entra still refuses the new credential
/// (AADSTS700027), for at most `--propagation-wait`.
fn prove_new(
    setup: &Setup,
    new: &dyn Signer,
    chain: &[Certificate],
    alg: Algorithm,
    args: &RotateArgs,
    key_id: Option<&str>,
    new_cert: &Certificate,
) -> Result<()> {
    let started = Instant::now();
    let window = Duration::from_secs(args.propagation_wait);
    let mut wait = Duration::from_secs(2);
    loop {
        match setup.graph_token(new, chain, alg) {
            Ok(_) => return Ok(()),
            Err(e) if e.entra().and_then(|x| x.code()) == Some(700027) => {
                let left = window.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(format!(
                        "a token signed by NEW is still refused after {} s (AADSTS700027): the new credential may still be propagating. Both credentials stay registered (NEW as keyId {}, thumbprint {}); run the same command again later: it reuses NEW and does not add it twice",
                        args.propagation_wait,
                        key_id.unwrap_or("unknown"),
                        new_cert.thumbprint_hex()
                    )
                    .into());
                }
                let pause = wait.min(left);
                tracing::info!("a token signed by NEW is refused (AADSTS700027) while it propagates; asking again in {} s", pause.as_secs_f64());
                std::thread::sleep(pause);
                wait = (wait * 2).min(Duration::from_secs(15));
            }
            Err(e) => return Err(flags::entra(e, &args.graph.app, &setup.endpoint_args, None)),
        }
    }
}

/// What retire says when it will not remove what may be KEY's own credential.
const LOCKOUT: &str = "removing KEY's own credential locks the app out. Retire another keyId, or check in the portal (App registrations > Certificates & secrets) and pass --force";

pub fn retire(args: &RetireArgs) -> Result<ExitCode> {
    let profile = args.key.profile()?;
    let profile = profile.as_ref();
    let setup = args.graph.setup(profile)?;
    if !graph::is_guid(&args.key_id) {
        let thumbprint =
            args.key_id.len() == 40 && args.key_id.bytes().all(|b| b.is_ascii_hexdigit());
        return Err(format!(
            "--key-id {}: not a GUID{}; give the keyId of the credential to remove (cert rotate prints the one it adds)",
            args.key_id,
            if thumbprint { " (it looks like a certificate thumbprint)" } else { "" }
        )
        .into());
    }
    let alg = flags::alg(None, profile);
    let now = unix_now();
    let key = args.key.open(profile)?;
    let chain = chain_of(args.cert.as_ref(), profile, key.as_ref(), "KEY")?;
    if let Err(e) = chain[0].check_validity(now) {
        return Err(format!("KEY's certificate {} cannot sign a proof: {e}; retire with a credential that is still valid", chain[0].thumbprint_hex()).into());
    }
    // Is KEY_ID KEY's own credential? A profile's key_id says so without asking Graph.
    let recorded = profile
        .filter(|_| args.key.key.is_none() && super::env("CERTASSERT_KEY").is_none())
        .and_then(|p| p.key_id.clone().map(|k| (k, p.name.clone())));
    if let Some((k, name)) = &recorded {
        if k.eq_ignore_ascii_case(&args.key_id) && !args.force {
            return Err(format!(
                "keyId {} is KEY's own credential (key_id of profile \"{name}\"); {LOCKOUT}",
                args.key_id
            )
            .into());
        }
    }
    let http = setup
        .client
        .http()
        .map_err(|e| flags::entra(e, &args.graph.app, &setup.endpoint_args, profile))?;
    let token = setup
        .graph_token(key.as_ref(), &chain, alg)
        .map_err(|e| flags::entra(e, &args.graph.app, &setup.endpoint_args, profile))?;
    let graph = Graph::new(http, &setup.graph_url, &token)
        .map_err(|e| graph_error(e, &args.graph, &setup, profile))?;
    let own: std::result::Result<Option<String>, String> = match recorded {
        Some((k, name)) => {
            if k.eq_ignore_ascii_case(&args.key_id) {
                Err(format!("keyId {} is KEY's own credential (key_id of profile \"{name}\")", args.key_id))
            } else {
                Ok(Some(k))
            }
        }
        None => match graph.key_credentials(&args.graph.object_id) {
            Ok(list) => match list.iter().find(|c| c.thumbprint.as_deref() == Some(&*chain[0].thumbprint_hex())) {
                Some(c) if c.key_id.eq_ignore_ascii_case(&args.key_id) => Err(format!(
                    "keyId {} is KEY's own credential (Graph lists it with KEY's thumbprint {})",
                    args.key_id,
                    chain[0].thumbprint_hex()
                )),
                Some(c) => Ok(Some(c.key_id.clone())),
                None => Err(format!("Graph does not list KEY's certificate {} with a thumbprint, so it cannot tell whether keyId {} is KEY's own", chain[0].thumbprint_hex(), args.key_id)),
            },
            Err(e) => Err(format!(
                "cannot tell whether keyId {} is KEY's own credential: no profile recorded KEY's key_id, and Graph does not let this app read its keyCredentials ({})",
                args.key_id,
                e.graph().map_or_else(|| e.to_string(), |g| format!("{} {}", g.status, g.code))
            )),
        },
    };
    if let Err(why) = own {
        if !args.force {
            return Err(format!("{why}; {LOCKOUT}").into());
        }
        warn(&format!("{why}; removing it anyway (--force)"));
    }
    let proof = graph::proof(key.as_ref(), &chain[0], &args.graph.object_id, unix_now())
        .map_err(|e| graph_error(e, &args.graph, &setup, profile))?;
    graph
        .remove_key(&args.graph.object_id, &args.key_id, &proof)
        .map_err(|e| graph_error(e, &args.graph, &setup, profile))?;
    eprintln!("removed keyId {} from the app", args.key_id);
    super::print(&format!(
        "{}\n",
        serde_json::json!({ "removedKeyId": args.key_id })
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_key_file_is_made_absolute_for_the_profile() {
        let keyref: KeyRef = "new.key.pem".parse().unwrap();
        let text = key_text_for_profile("new.key.pem", &keyref);
        assert!(std::path::Path::new(&text).is_absolute(), "{text}");
        let keyref: KeyRef = "tpm:handle=0x81000002".parse().unwrap();
        assert_eq!(
            key_text_for_profile("tpm:handle=0x81000002", &keyref),
            "tpm:handle=0x81000002"
        );
    }
}
