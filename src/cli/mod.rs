//! Command-line front end. Each subcommand lives in its own file; this module holds the
//! argument tree, the shared `--key`/`--cert` resolution, and the edge where errors
//! become one `error:` line (with its cause chain) and a non-zero exit.

mod assertion;
mod cert;
#[cfg(feature = "emulator")]
mod demo;
mod doctor;
#[cfg(feature = "emulator")]
mod emulator;
mod flags;
mod generate;
mod inspect;
mod key;
mod localtime;
mod log;
mod prompt;
mod rotate;
#[cfg(feature = "serve")]
mod serve;
mod token;

pub use flags::{env, AppArgs, EndpointArgs};

use certassert::cert::Certificate;
use certassert::config::{Config, Profile};
use certassert::keyref::KeyRef;
use certassert::signer::{self, Signer};
use clap::{Args, Parser, Subcommand};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const ABOUT: &str = "Client assertions and certificates for Microsoft Entra ID, signed by a key that stays in its HSM, smartcard, TPM or key file";

const LONG_ABOUT: &str = "\
certassert signs the client assertion (RFC 7523 private_key_jwt) that Microsoft Entra ID
accepts in place of a client secret, with the key wherever it lives, and gets the details
right: x5t is base64url of the certificate's SHA-1 (not the portal's hex thumbprint),
aud is the token endpoint, iss = sub = client id, and every assertion has a fresh jti.

Key references (--key, env CERTASSERT_KEY):
  /path/key.pem     PKCS#8 or PKCS#1, PEM or DER; a PEM may bundle key + certificate
  file:/path/app.pfx?password-source=env:PFX_PASS
                    encrypted PKCS#8 or PKCS#12 (.pfx/.p12); the password comes from
                    env:VAR, file:PATH (mode 0600), credential:NAME (systemd's
                    $CREDENTIALS_DIRECTORY/NAME) or a no-echo prompt on a terminal
  pkcs11:token=HSM;object=app?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin
                    a key in an HSM or smartcard (RFC 7512; id=%01 selects by CKA_ID)
  piv:9c?pin-source=env:PIV_PIN
                    a YubiKey PIV slot through ykcs11 (RSA 2048: Entra rejects EC)
  tpm:key=/etc/certassert/app.tss2.pem   tpm:handle=0x81000001
                    a TPM 2.0 key file (tpm2-openssl format) or persistent handle

Profiles (--profile NAME, env CERTASSERT_PROFILE) name a credential once, in
$XDG_CONFIG_HOME/certassert/config.toml (else ~/.config/…, else /etc/certassert/config.toml,
or --config PATH); relative paths in it are relative to its directory:
  [profile.prod]
  key = \"pkcs11:token=app;object=app?pin-source=file:/run/credentials/app/pin\"
  cert = \"app.cert.pem\"
  tenant = \"contoso.onmicrosoft.com\"
  client_id = \"2f877daa-b6f5-42a3-8430-acf238b234e1\"
  # also: authority_host, alg = \"PS256\", x5c = true, ca_file
Flags and environment variables override a profile field by field:
  certassert token --profile prod --scope https://graph.microsoft.com/.default

Getting started:
  certassert key generate --key app.key.pem
  certassert cert create --key app.key.pem --subject CN=my-app --out app.cert.pem
  certassert cert show --cert app.cert.pem      # the thumbprint the portal shows
  certassert assertion --key app.key.pem --cert app.cert.pem --tenant T --client-id ID
  certassert inspect - < assertion.jwt          # lint any hand-made assertion
  certassert token --key app.key.pem --cert app.cert.pem --tenant T --client-id ID \\
      --scope https://graph.microsoft.com/.default
  certassert doctor --key app.key.pem --cert app.cert.pem --tenant T --client-id ID
  certassert demo                               # the whole flow against a local emulator";

#[derive(Parser)]
#[command(name = "certassert", version, about = ABOUT, long_about = LONG_ABOUT, max_term_width = 100)]
struct Cli {
    /// Say more on stderr: -v endpoints, attempts, cache and device, timings; -vv and
    /// -vvv more still (or set CERTASSERT_LOG / RUST_LOG). Never a secret.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create keys
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Create, inspect and register certificates
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Print a signed client assertion (one JWT line) for a token request
    Assertion(assertion::AssertionArgs),
    /// Decode a JWT and lint it against Entra ID's rules for client assertions
    Inspect(inspect::InspectArgs),
    /// Get an access token (client credentials, authorization code, on-behalf-of, refresh)
    Token(Box<token::TokenArgs>),
    /// Check key, certificate, thumbprints and (with a tenant) a token request
    Doctor(doctor::DoctorArgs),
    /// Run a local, strict Entra ID token endpoint for tests and development
    #[cfg(feature = "emulator")]
    Emulator(emulator::EmulatorArgs),
    /// The whole flow on this machine: key, certificate, emulator, token, timings
    #[cfg(feature = "emulator")]
    Demo,
    /// Print shell completions (bash, zsh, fish, powershell) to standard output
    Completions(generate::CompletionsArgs),
    /// Print the man page, certassert(1), as roff to standard output
    #[command(
        after_help = "Read it:    certassert man | man -l -\nInstall it: certassert man > /usr/local/share/man/man1/certassert.1"
    )]
    Man,
    /// Serve tokens to unmodified Azure SDK apps as a local managed-identity endpoint
    #[cfg(feature = "serve")]
    Serve(Box<serve::ServeArgs>),
}

/// `--key`, `--profile` and `--config`, shared by every command that takes a key.
#[derive(Args, Debug, Clone)]
pub struct KeyArg {
    /// The key: a file path (at most 1 MiB), file:PATH?password-source=…, pkcs11:…, piv:SLOT or tpm:…
    /// [env: CERTASSERT_KEY, else AZURE_CLIENT_CERTIFICATE_PATH, else the profile's key]
    #[arg(long, value_name = "URI")]
    pub key: Option<String>,
    /// Take key, cert, tenant, client_id, authority_host, alg, x5c and ca_file from
    /// [profile.NAME] of the config file; flags and environment variables override it field by
    /// field [env: CERTASSERT_PROFILE]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// The config file of profiles; relative paths in it are relative to its directory
    /// [default: $XDG_CONFIG_HOME/certassert/config.toml (~/.config/…), else
    /// /etc/certassert/config.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl KeyArg {
    /// The profile `--profile` (else CERTASSERT_PROFILE) names, from `--config` or the
    /// first config file found; `None` when no profile is named. The default config file
    /// is not read unless a profile is named.
    pub fn profile(&self) -> Result<Option<Profile>> {
        load_profile(self.profile.as_deref(), self.config.as_deref())
    }

    /// The key reference from --key, CERTASSERT_KEY, azure-identity's
    /// AZURE_CLIENT_CERTIFICATE_PATH (+ AZURE_CLIENT_CERTIFICATE_PASSWORD), or the
    /// profile's `key`.
    pub fn keyref(&self, profile: Option<&Profile>) -> Result<KeyRef> {
        let text = match (&self.key, env("CERTASSERT_KEY"), env("AZURE_CLIENT_CERTIFICATE_PATH")) {
            (Some(k), _, _) => k.clone(),
            (None, Some(k), _) => k,
            (None, None, Some(path)) => {
                let mut keyref = KeyRef::File { path: path.into(), password: None };
                if std::env::var_os("AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
                    if let KeyRef::File { password, .. } = &mut keyref {
                        *password = Some(certassert::secret::SecretSource::Env("AZURE_CLIENT_CERTIFICATE_PASSWORD".into()));
                    }
                }
                return Ok(keyref);
            }
            (None, None, None) => match profile.and_then(|p| p.key.clone()) {
                Some(keyref) => return Ok(keyref),
                None => return Err(match profile {
                    Some(p) => format!("no key given: profile \"{}\" has no key, and no --key (or CERTASSERT_KEY) was passed", p.name).into(),
                    None => "no key given: pass --key PATH|URI (or set CERTASSERT_KEY, or name a profile with --profile); make one with: certassert key generate --key app.key.pem".into(),
                }),
            },
        };
        let keyref: KeyRef = text.parse()?;
        for w in keyref.warnings() {
            warn(&w);
        }
        Ok(keyref)
    }

    /// Open the key's signer, asking on the terminal for a secret no source supplies.
    pub fn open(&self, profile: Option<&Profile>) -> Result<Box<dyn Signer>> {
        self.open_ref(&self.keyref(profile)?)
    }

    /// Open `keyref` (from [`KeyArg::keyref`]); a key file named by
    /// AZURE_CLIENT_CERTIFICATE_PATH whose password is missing or wrong gets a message
    /// about AZURE_CLIENT_CERTIFICATE_PASSWORD, not about a key reference nobody wrote.
    pub fn open_ref(&self, keyref: &KeyRef) -> Result<Box<dyn Signer>> {
        open_key(keyref).map_err(|e| {
            if self.named_by_azure_env() {
                azure_password_error(e)
            } else {
                e.into()
            }
        })
    }

    /// Whether the key comes from azure-identity's AZURE_CLIENT_CERTIFICATE_PATH.
    fn named_by_azure_env(&self) -> bool {
        self.key.is_none()
            && env("CERTASSERT_KEY").is_none()
            && env("AZURE_CLIENT_CERTIFICATE_PATH").is_some()
    }
}

/// A password error about the file AZURE_CLIENT_CERTIFICATE_PATH names, said in terms of
/// AZURE_CLIENT_CERTIFICATE_PASSWORD; any other error as it is.
fn azure_password_error(e: KeyError) -> Box<dyn std::error::Error> {
    let message = match &e.error {
        signer::Error::Secret { path, .. } => format!(
            "AZURE_CLIENT_CERTIFICATE_PATH names {}, which is encrypted, and AZURE_CLIENT_CERTIFICATE_PASSWORD is not set: set it to the file's password (as for azure-identity)",
            path.display()
        ),
        signer::Error::WrongPassword { path, detail } => format!(
            "AZURE_CLIENT_CERTIFICATE_PATH names {}, and AZURE_CLIENT_CERTIFICATE_PASSWORD does not decrypt it ({detail}): set the file's password there",
            path.display()
        ),
        _ => return e.into(),
    };
    Box::new(Reworded { message, error: e })
}

/// An error said another way; its own causes are kept, its text is not repeated.
#[derive(Debug)]
struct Reworded {
    message: String,
    error: KeyError,
}

impl std::fmt::Display for Reworded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Reworded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Below the signer error (whose text names a key-reference attribute the user
        // did not write): what caused that, if anything.
        std::error::Error::source(&self.error.error).and_then(|e| e.source())
    }
}

/// The environment variable that names a profile when `--profile` is not given.
pub const PROFILE_ENV: &str = "CERTASSERT_PROFILE";

/// The profile `name` (else [`PROFILE_ENV`]) from `config` or the first config file
/// found. `--config` without a profile is an error (the user meant to use it); no
/// profile and no `--config` reads nothing.
pub fn load_profile(
    name: Option<&str>,
    config: Option<&std::path::Path>,
) -> Result<Option<Profile>> {
    let from_env = env(PROFILE_ENV);
    let Some(name) = name.or(from_env.as_deref()) else {
        if let Some(path) = config {
            let config = Config::load(path).map_err(config_error)?;
            let names: Vec<&str> = config.profiles().map(|p| p.name.as_str()).collect();
            return Err(format!(
                "--config {}: choose a profile from it with --profile NAME (or set {PROFILE_ENV}); it has {}",
                path.display(),
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )
            .into());
        }
        return Ok(None);
    };
    let Some(found) = Config::find(config).map_err(config_error)? else {
        return Err(config_error(certassert::config::Error::NoConfig {
            name: name.to_string(),
            searched: certassert::config::search_paths(),
        }));
    };
    Ok(Some(found.profile(name).map_err(config_error)?.clone()))
}

/// A config error with what to type about it.
fn config_error(e: certassert::config::Error) -> Box<dyn std::error::Error> {
    use certassert::config::Error as E;
    match &e {
        E::NoConfig { .. } => format!("{e}, or pass --config PATH").into(),
        _ => e.into(),
    }
}

/// Open the key `keyref` names, asking on the terminal (without echo) for a PIN or
/// password no `…-source=` supplies; a failure carries the command-line hint for it.
pub fn open_key(keyref: &KeyRef) -> std::result::Result<Box<dyn Signer>, KeyError> {
    Ok(signer::open_with(
        keyref,
        &prompt::TerminalPrompt,
        &open_options()?,
    )?)
}

/// The environment variable that sets the device timeout (seconds) for tokens and TPMs.
pub const DEVICE_TIMEOUT_ENV: &str = "CERTASSERT_DEVICE_TIMEOUT";

/// How keys are opened: the device timeout from [`DEVICE_TIMEOUT_ENV`] if set, else the
/// library's default (30 s).
fn open_options() -> std::result::Result<signer::OpenOptions, KeyError> {
    let options = signer::OpenOptions::new();
    match std::env::var(DEVICE_TIMEOUT_ENV) {
        Ok(text) => Ok(options.device_timeout(signer::OpenOptions::parse_device_timeout(&text)?)),
        Err(std::env::VarError::NotPresent) => Ok(options),
        Err(std::env::VarError::NotUnicode(_)) => Err(signer::Error::BadDeviceTimeout {
            value: "(not UTF-8)".into(),
        }
        .into()),
    }
}

/// Generate a key in the token or TPM `keyref` names (see [`open_key`]).
pub fn generate_key(
    keyref: &KeyRef,
    bits: usize,
    label: Option<&str>,
) -> std::result::Result<Box<dyn Signer>, KeyError> {
    Ok(signer::generate(
        keyref,
        bits,
        label,
        &prompt::TerminalPrompt,
    )?)
}

/// A signer error with what to type about it: the library names no command-line flags,
/// so the hint (a `certassert …` command, a `--flag`) is added here, by variant.
#[derive(Debug)]
pub struct KeyError {
    error: signer::Error,
    hint: Option<String>,
}

impl KeyError {
    /// The signer error underneath the hint.
    pub fn inner(&self) -> &signer::Error {
        &self.error
    }
}

impl From<signer::Error> for KeyError {
    fn from(error: signer::Error) -> Self {
        let hint = key_hint(&error);
        Self { error, hint }
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hint {
            Some(hint) => write!(f, "{} ({hint})", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The command-line hint for a signer error, if there is one.
fn key_hint(e: &signer::Error) -> Option<String> {
    use signer::pkcs11::Pkcs11Error as P;
    use signer::tpm::TpmError as T;
    use signer::Error as E;
    let new_pkcs11 = "certassert key generate --key 'pkcs11:…;object=NEW' --bits 2048";
    Some(match e {
        // The hint of what failed on a TPM the default search chose.
        E::Tpm(T::FoundBySearch { source, .. }) => return key_hint(source),
        E::CertificateOnly { .. } => {
            "pass the key with --key and the certificate with --cert".into()
        }
        E::NotRsa { .. } => "certassert key generate --key new.pem".into(),
        E::KeyTooSmall { .. } => "certassert key generate --key new.pem --bits 2048".into(),
        E::UnsupportedKeySize { .. } => "--bits 2048, 3072 or 4096".into(),
        E::Pkcs11(P::NotRsa { .. } | P::KeyTooSmall { .. }) => new_pkcs11.into(),
        E::Pkcs11(P::CertificateMismatch { .. }) => {
            "store a new one with certassert cert create --key … --store, or pass --cert".into()
        }
        E::Pkcs11(P::LabelMissing { .. }) => "--label NAME".into(),
        E::Pkcs11(P::LabelConflict { .. }) => "in the URI or with --label".into(),
        E::Tpm(T::NotRsa { .. }) => "certassert key generate --key tpm:…".into(),
        E::Tpm(T::NoPersistentKey { handle, .. }) => {
            format!("or make a key there: certassert key generate --key tpm:handle={handle:#010x}")
        }
        E::Tpm(T::KeySizeRefused { .. }) => "--bits 2048".into(),
        E::BadDeviceTimeout { .. } => format!("set by {DEVICE_TIMEOUT_ENV}"),
        E::DeviceTimeout { .. } => {
            format!(
                "a device that is slow on purpose may get longer with {DEVICE_TIMEOUT_ENV}=SECONDS"
            )
        }
        _ => return None,
    })
}

/// The certificate file to use: `--cert`, else CERTASSERT_CERT, else the profile's `cert`.
pub fn cert_path(cert: Option<&PathBuf>, profile: Option<&Profile>) -> Option<PathBuf> {
    cert.cloned()
        .or_else(|| env("CERTASSERT_CERT").map(PathBuf::from))
        .or_else(|| profile.and_then(|p| p.cert.clone()))
}

/// The certificate chain to use with `signer`: `--cert` (or CERTASSERT_CERT, or the
/// profile's `cert`), else the certificate stored with the key. The leaf is checked
/// against the key before use.
pub fn resolve_chain(
    cert: Option<&PathBuf>,
    profile: Option<&Profile>,
    signer: &dyn Signer,
    now: i64,
) -> Result<Vec<Certificate>> {
    let chain = match cert_path(cert, profile) {
        Some(path) => Certificate::load_chain(&path).map_err(cert::cert_error)?,
        None => match stored_chain(signer)? {
            Some(chain) => chain,
            None => {
                return Err("no certificate: this key has none stored with it; pass --cert PATH (or set CERTASSERT_CERT) \
                            — make one with: certassert cert create --key … --subject CN=my-app --out app.cert.pem"
                    .into())
            }
        },
    };
    for w in chain[0]
        .check_usable(signer, now)
        .map_err(cert::cert_error)?
    {
        warn(&w);
    }
    Ok(chain)
}

/// The certificate stored with the key (PKCS#12 bag, token object) and its chain, if any.
pub fn stored_chain(signer: &dyn Signer) -> Result<Option<Vec<Certificate>>> {
    let Some(leaf) = signer.certificate_der() else {
        return Ok(None);
    };
    let ders = std::iter::once(leaf).chain(signer.chain_der().iter().map(Vec::as_slice));
    Ok(Some(
        ders.map(|d| Certificate::from_der(d.to_vec()))
            .collect::<std::result::Result<_, _>>()?,
    ))
}

/// A warning on stderr.
pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// Write to stdout; a closed pipe is reported to the caller as `BrokenPipe`.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Write a new file with `mode`. It must not exist yet, unless `force` is `Some(true)`;
/// `None` means the command offers no `--force` (keys are never replaced).
pub fn write_new(
    path: &std::path::Path,
    data: &[u8],
    mode: u32,
    force: Option<bool>,
) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force == Some(true) {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .map_err(|e| -> Box<dyn std::error::Error> {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                let remedy = if force.is_some() {
                    "choose another path, or pass --force to replace it"
                } else {
                    "choose another path"
                };
                format!(
                    "{} already exists; nothing was written ({remedy})",
                    path.display()
                )
                .into()
            } else {
                format!("cannot create {}: {e}", path.display()).into()
            }
        })?;
    file.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.verbose);
    let result = match cli.command {
        Command::Key(cmd) => key::run(cmd),
        Command::Cert(cmd) => cert::run(cmd),
        Command::Assertion(args) => assertion::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Token(args) => token::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => emulator::run(&args),
        #[cfg(feature = "emulator")]
        Command::Demo => demo::run(),
        Command::Completions(args) => generate::completions(&args),
        Command::Man => generate::man(),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_texts_example_profile_parses() {
        let start = LONG_ABOUT.find("  [profile.prod]").unwrap();
        let end = LONG_ABOUT.find("Flags and environment").unwrap();
        let text: String = LONG_ABOUT[start..end]
            .lines()
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let config = Config::parse(&text, std::path::Path::new("/etc/certassert/config.toml"))
            .expect("the example in --help is a valid config");
        let p = config.profile("prod").unwrap();
        assert!(matches!(p.key, Some(KeyRef::Pkcs11(_))));
        assert_eq!(
            p.cert.as_deref(),
            Some(std::path::Path::new("/etc/certassert/app.cert.pem"))
        );
    }

    #[test]
    fn key_errors_get_their_flag_hint_at_the_edge() {
        let e = KeyError::from(signer::Error::KeyTooSmall {
            path: "k.pem".into(),
            bits: 1024,
        });
        assert_eq!(
            e.to_string(),
            "k.pem: the RSA key is 1024 bits; Entra ID requires at least 2048 \
             (certassert key generate --key new.pem --bits 2048)"
        );
        #[cfg(feature = "tpm")]
        {
            let inner = signer::Error::KeyTooSmall {
                path: "k.pem".into(),
                bits: 1024,
            };
            let e = KeyError::from(signer::Error::Tpm(signer::tpm::TpmError::FoundBySearch {
                tcti: "device:/dev/tpmrm0".into(),
                source: Box::new(inner),
            }));
            assert_eq!(
                e.to_string(),
                "k.pem: the RSA key is 1024 bits; Entra ID requires at least 2048 \
                 (on the TPM at \"device:/dev/tpmrm0\", chosen by tpm2-tss's default search because nothing names the TCTI) \
                 (certassert key generate --key new.pem --bits 2048)"
            );
        }
        let e = KeyError::from(signer::Error::AlgorithmUnavailable {
            alg: certassert::Algorithm::Ps256,
        });
        assert_eq!(e.to_string(), "this key cannot sign PS256");
    }
}
