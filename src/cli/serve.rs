//! `certassert serve`: the local managed-identity endpoint. Opens the key once, starts
//! the agent ([`certassert::serve`]), writes the environment file, prints where it
//! listens, then waits for signals: SIGHUP re-reads the certificate, SIGTERM/SIGINT stop
//! it (requests in flight finish, the key is closed) and exit 0.

use super::{
    flags, load_profile, print, resolve_chain, warn, AppArgs, EndpointArgs, KeyArg, Result,
};
use certassert::assertion::DEFAULT_LIFETIME;
use certassert::config::Profile;
use certassert::encoding::unix_now;
use certassert::input::Stamp;
use certassert::secret::{NoCallbacks, SecretKind, SecretRequest, SecretSource};
use certassert::serve::{self, env_file, Config, Identity};
use certassert::Algorithm;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
#[command(after_help = "\
Answers the managed-identity protocols the Azure SDKs speak, on loopback only:
  App Service  GET {url}/msi/token?api-version=2019-08-01&resource=R
               with X-IDENTITY-HEADER: the identity secret
  IMDS         GET {url}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R
               with Metadata: true (no secret: any local process may ask; --no-imds turns it off)
Point an app at it with IDENTITY_ENDPOINT={url}/msi/token and IDENTITY_HEADER=SECRET (both
written to --env-file, mode 0600), or AZURE_POD_IDENTITY_AUTHORITY_HOST={url} for IMDS clients.
The key is opened once; tokens are kept in memory per resource and renewed before they expire.
The first line printed is {url}. SIGHUP re-reads --cert (also re-read when the file changes);
SIGTERM or SIGINT stops after the requests in flight. One line per request on stderr, never a
token or the secret.

Examples:
  certassert serve --listen 127.0.0.1:8765 --key app.key.pem --cert app.cert.pem \\
      --tenant T --client-id C --env-file /run/certassert/serve.env
  certassert serve --listen 127.0.0.1:8765 --tenant T --client-id C --no-imds \\
      --key 'pkcs11:token=app;object=app?pin-source=file:/run/pin' \\
      --identity-header-source file:/run/certassert/identity-secret
  certassert serve --listen 127.0.0.1:8765 --profile billing --profile reports \\
      --env-file /run/certassert/serve.env

With several --profile, each profile is one app registration (its own key, certificate,
tenant and client id); a request's client_id picks one, none picks the first.")]
pub struct ServeArgs {
    /// Loopback address to listen on; port 0 picks a free one
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The key: a file path, file:PATH?password-source=…, pkcs11:…, piv:SLOT or tpm:…
    /// [env: CERTASSERT_KEY, else AZURE_CLIENT_CERTIFICATE_PATH, else the profile's key]
    #[arg(long, value_name = "URI")]
    key: Option<String>,
    /// Serve the app registration of [profile.NAME] of the config file; repeat it to serve
    /// several (then give keys, certificates, tenants and client ids in the profiles)
    /// [env: CERTASSERT_PROFILE]
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    /// The config file of profiles; relative paths in it are relative to its directory
    /// [default: $XDG_CONFIG_HOME/certassert/config.toml (~/.config/…), else
    /// /etc/certassert/config.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Certificate registered with the app, re-read when it changes [env: CERTASSERT_CERT,
    /// else the profile's cert, else the one stored with the key]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    app: AppArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// RS256 (header x5t) or PS256 (header x5t#S256) [default: the profile's alg, else RS256]
    #[arg(long, value_parser = super::cert::parse_alg)]
    alg: Option<Algorithm>,
    /// Send the certificate chain as x5c (subject name + issuer authentication)
    /// [env: AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=true]
    #[arg(long)]
    x5c: bool,
    /// Extra CA certificate(s) to trust (PEM), on top of the system roots [default: the
    /// profile's ca_file]
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Where the identity secret (X-IDENTITY-HEADER) comes from: env:VAR or file:PATH (mode 0600); default: 32 random bytes, written to --env-file
    #[arg(long, value_name = "SOURCE")]
    identity_header_source: Option<String>,
    /// Write IDENTITY_ENDPOINT, IDENTITY_HEADER and AZURE_POD_IDENTITY_AUTHORITY_HOST here (mode 0600, replaced atomically)
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// Answer the App Service protocol only: no IMDS endpoint, which takes no secret
    #[arg(long)]
    no_imds: bool,
}

/// The identity secret: from `--identity-header-source`, else a fresh one (which only
/// an environment file can hand on).
fn secret(args: &ServeArgs) -> Result<certassert::secret::Secret> {
    let Some(text) = &args.identity_header_source else {
        if args.env_file.is_none() {
            return Err("no way for applications to learn the identity secret: pass --env-file PATH (IDENTITY_ENDPOINT and a fresh IDENTITY_HEADER are written there, mode 0600) or --identity-header-source env:VAR|file:PATH".into());
        }
        return Ok(env_file::generate_secret());
    };
    let source: SecretSource = text
        .parse()
        .map_err(|e| format!("--identity-header-source: {e}"))?;
    if matches!(source, SecretSource::Prompt | SecretSource::Value(_)) {
        return Err("--identity-header-source takes env:VAR or file:PATH".into());
    }
    // The kind only names the attribute in a message no env:/file: source produces.
    let request = SecretRequest::new(SecretKind::Password, "identity secret");
    let secret = source
        .read(&request, &NoCallbacks)
        .map_err(|e| format!("--identity-header-source: {e}"))?;
    serve::check_secret(&secret).map_err(|e| format!("--identity-header-source: {e}"))?;
    Ok(secret)
}

pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen: {}",
            serve::Error::NotLoopback { addr: args.listen }
        )
        .into());
    }
    let secret = secret(args)?;
    let profiles = profiles(args)?;
    // The agent handles its signals itself (and closes the key: TPM objects flushed), so
    // the TPM backend's own exit-on-signal hook stays off. They are caught from here on;
    // while the key opens (perhaps asking for a PIN on the terminal), SIGINT/SIGTERM end
    // the process at once as they would any other command.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    #[cfg(feature = "tpm")]
    certassert::signer::tpm::set_interrupt_cleanup(false);
    let mut identities = Vec::new();
    // What each profile named when its key was opened: a rewrite (`cert rotate`) changes it.
    let mut in_use = Vec::new();
    for profile in &profiles {
        let identity = identity(args, profile.as_ref())?;
        if let Some(p) = profile {
            in_use.push(ProfileInUse::of(p, &identity.client_id));
        }
        identities.push(identity);
    }
    for (i, identity) in identities.iter().enumerate() {
        if identities[..i]
            .iter()
            .any(|o| o.client_id == identity.client_id)
        {
            return Err(format!(
                "two profiles serve client id {}: a request could not choose between them (is AZURE_CLIENT_ID set? it overrides every profile)",
                identity.client_id
            )
            .into());
        }
    }
    let served: Vec<String> = identities
        .iter()
        .map(|i| {
            format!(
                "client {} (certificate {})",
                i.client_id,
                i.chain[0].thumbprint_hex()
            )
        })
        .collect();
    let mut config = Config::new(args.listen, identities, secret.clone());
    config.imds = !args.no_imds;
    config.log = Some(Arc::new(stderr_lines()));
    let running = serve::start(config).map_err(|e| start_error(e, args))?;
    if let Some(path) = &args.env_file {
        if let Err(e) = env_file::write(
            path,
            &env_file::contents(&running.url(), &secret, !args.no_imds),
        ) {
            running.shutdown();
            return Err(format!("--env-file: {e}").into());
        }
    }
    eprintln!(
        "serve: listening on {} for {}{}",
        running.url(),
        served.join(", "),
        if args.no_imds {
            ", App Service protocol only"
        } else {
            ""
        }
    );
    let mut text = format!(
        "{url}\nIDENTITY_ENDPOINT={endpoint}\n",
        url = running.url(),
        endpoint = running.identity_endpoint()
    );
    if !args.no_imds {
        text.push_str(&format!(
            "AZURE_POD_IDENTITY_AUTHORITY_HOST={}\n",
            running.url()
        ));
    }
    print(&text)?;
    // Signals, and a look at the profiles' config file every few seconds, in one queue.
    let (wake, woken) = std::sync::mpsc::channel::<Wake>();
    let signal_wake = wake.clone();
    std::thread::Builder::new()
        .name("certassert-serve-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal_wake.send(Wake::Signal(signal)).is_err() {
                    return;
                }
            }
        })?;
    if let Some(file) = in_use.first().map(|p| p.file.clone()) {
        std::thread::Builder::new()
            .name("certassert-serve-config".into())
            .spawn(move || {
                let mut seen = Stamp::of(&file);
                loop {
                    std::thread::sleep(CONFIG_POLL);
                    let now = Stamp::of(&file);
                    if now != seen {
                        seen = now;
                        if wake.send(Wake::ConfigChanged).is_err() {
                            return;
                        }
                    }
                }
            })?;
    }
    while let Ok(event) = woken.recv() {
        match event {
            Wake::Signal(SIGHUP) => {
                reload_profiles(args, &running, &mut in_use);
                running.reload();
            }
            Wake::ConfigChanged => reload_profiles(args, &running, &mut in_use),
            Wake::Signal(signal) => {
                eprintln!("serve: stopping (signal {signal}): finishing requests in flight");
                running.shutdown();
                eprintln!("serve: stopped");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    warn("the signal handler ended; stopping");
    running.shutdown();
    Ok(ExitCode::SUCCESS)
}

/// How often the profiles' config file is looked at for a rewrite.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// What wakes the command up.
enum Wake {
    Signal(i32),
    ConfigChanged,
}

/// A served profile and what it named when its key was opened.
struct ProfileInUse {
    name: String,
    file: PathBuf,
    client_id: String,
    key: Option<String>,
    cert: Option<PathBuf>,
}

impl ProfileInUse {
    fn of(profile: &Profile, client_id: &str) -> Self {
        Self {
            name: profile.name.clone(),
            file: profile.file().to_path_buf(),
            client_id: client_id.to_string(),
            key: profile.key.as_ref().map(ToString::to_string),
            cert: profile.cert.clone(),
        }
    }
}

/// Read the served profiles again; one whose key or certificate changed (a `cert rotate
/// --profile` rewrite) gets its new key opened and put in place — or, when that fails,
/// a line saying why while the old key keeps serving.
fn reload_profiles(args: &ServeArgs, running: &serve::Running, in_use: &mut [ProfileInUse]) {
    for served in in_use.iter_mut() {
        let profile = match load_profile(Some(&served.name), args.config.as_deref()) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                eprintln!(
                    "serve: profile \"{}\" not reloaded, keeping its key: {e}",
                    served.name
                );
                continue;
            }
        };
        let now = ProfileInUse::of(&profile, &served.client_id);
        if now.key == served.key && now.cert == served.cert {
            continue;
        }
        let replaced = identity(args, Some(&profile)).and_then(|identity| {
            if identity.client_id != served.client_id {
                return Err(format!(
                    "its client id changed to {}: restart the agent to serve another app",
                    identity.client_id
                )
                .into());
            }
            running
                .replace_key(
                    &served.client_id,
                    identity.signer,
                    identity.chain,
                    identity.cert_path,
                )
                .map_err(Into::into)
        });
        match replaced {
            Ok(()) => *served = now,
            Err(e) => eprintln!(
                "serve: profile \"{}\" changed but its new key was not put in use, keeping the old one: {e}",
                served.name
            ),
        }
    }
}

/// Run `open` with SIGINT/SIGTERM ending the process (status 128 + signal), as they do
/// for any other command, until it returns.
fn while_opening<T>(open: impl FnOnce() -> Result<T>) -> Result<T> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut opening = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let handle = opening.handle();
    let watcher = std::thread::Builder::new()
        .name("certassert-serve-opening".into())
        .spawn(move || {
            if let Some(signal) = opening.forever().next() {
                eprintln!("serve: interrupted (signal {signal}) while opening the key");
                std::process::exit(128 + signal);
            }
        })?;
    let opened = open();
    handle.close();
    let _ = watcher.join();
    opened
}

/// A start error with the flag that set what it is about.
fn start_error(e: serve::Error, args: &ServeArgs) -> Box<dyn std::error::Error> {
    match e {
        serve::Error::NotLoopback { .. } | serve::Error::Listen { .. } => {
            format!("--listen: {e}").into()
        }
        serve::Error::BadSecret => format!("--identity-header-source: {e}").into(),
        serve::Error::Endpoint { source, .. } => {
            flags::endpoint(source, &args.app, &args.endpoint, None)
        }
        other => other.into(),
    }
}

/// The profiles to serve: each `--profile` (else CERTASSERT_PROFILE), or none (`[None]`:
/// one identity from the flags and the environment alone). With several, what names one
/// app registration (key, certificate, tenant, client id) must come from the profiles:
/// a flag would give every identity the same one.
fn profiles(args: &ServeArgs) -> Result<Vec<Option<Profile>>> {
    if args.profiles.len() <= 1 {
        return Ok(vec![load_profile(
            args.profiles.first().map(String::as_str),
            args.config.as_deref(),
        )?]);
    }
    let flags = [
        ("--key", args.key.is_some()),
        ("--cert", args.cert.is_some()),
        ("--tenant", args.app.tenant.is_some()),
        ("--client-id", args.app.client_id.is_some()),
    ];
    if let Some((flag, _)) = flags.iter().find(|(_, given)| *given) {
        return Err(format!(
            "{flag} with several --profile would give every app registration the same value: \
             put it in each profile of the config file instead"
        )
        .into());
    }
    let mut out = Vec::new();
    for name in &args.profiles {
        out.push(load_profile(Some(name), args.config.as_deref())?);
    }
    Ok(out)
}

/// One app registration to serve, from the flags, the environment and `profile`: its
/// key opened (once, for the life of the agent) and its certificate checked against it.
fn identity(args: &ServeArgs, profile: Option<&Profile>) -> Result<Identity> {
    let key = KeyArg {
        key: args.key.clone(),
        profile: profile.map(|p| p.name.clone()),
        config: args.config.clone(),
    };
    let client_id = args.app.client_id(profile)?;
    let tenant = args.app.tenant(profile);
    if tenant.is_none() && args.endpoint.token_url.is_none() {
        let whose = profile.map_or_else(String::new, |p| format!(" for profile \"{}\"", p.name));
        return Err(format!("no tenant{whose}: pass --tenant (the Directory (tenant) ID), set AZURE_TENANT_ID or tenant in the profile, or give --token-url").into());
    }
    let keyref = key.keyref(profile)?;
    let signer: Arc<dyn certassert::Signer> = Arc::from(while_opening(|| key.open_ref(&keyref))?);
    let chain = resolve_chain(args.cert.as_ref(), profile, signer.as_ref(), unix_now())?;
    let mut identity = Identity::new(signer, chain, tenant, client_id);
    identity.cert_path = super::cert_path(args.cert.as_ref(), profile);
    identity.authority_host = args.endpoint.authority_host(profile);
    identity.token_url = args.endpoint.token_url.clone();
    identity.alg = flags::alg(args.alg, profile);
    identity.x5c = flags::x5c(args.x5c, profile)?;
    identity.lifetime = DEFAULT_LIFETIME;
    identity.ca_file = flags::ca_file(args.ca_file.as_ref(), profile);
    Ok(identity)
}

/// The request log's sink: one `write` per line (stderr is unbuffered: `writeln!` would
/// make one per piece) on a duplicate of stderr, so the server's threads do not queue on
/// the process-wide stderr lock (a line is one write, which the kernel does not
/// interleave); not `eprintln!`, which panics when stderr is gone (a journal restarting).
fn stderr_lines() -> impl Fn(&serve::Event) + Send + Sync + 'static {
    use std::io::Write as _;
    use std::os::fd::AsFd as _;
    let own = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::fs::File::from);
    move |event: &serve::Event| {
        use std::fmt::Write as _;
        let mut line = String::with_capacity(256);
        let _ = writeln!(line, "serve: {event}");
        let _ = match &own {
            Some(file) => (&*file).write_all(line.as_bytes()),
            None => std::io::stderr().lock().write_all(line.as_bytes()),
        };
    }
}
