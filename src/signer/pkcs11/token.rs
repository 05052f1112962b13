//! The token: which slot the URI selects, the one login that covers every session of
//! this process (held by a keeper session), and the pool of sessions signatures run on.

use super::{module, Pkcs11Error};
use crate::keyref::Pkcs11Uri;
use crate::secret::{Callbacks, Secret, SecretError, SecretKind, SecretRequest, SecretSource};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use std::sync::Mutex;

/// A selected, logged-in token.
pub struct Token {
    pub ctx: Pkcs11,
    pub slot: Slot,
    /// The token label, for messages.
    pub label: String,
    /// The PIN that logged in, kept (zeroized on drop) for context-specific logins and
    /// for logging in again after the token forgot the login; never a guess.
    pin: Option<Secret>,
    /// Holds the login: PKCS#11 logs out when an application's last session closes.
    keeper: Mutex<Session>,
    /// Idle signing sessions.
    pool: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("slot", &self.slot.id())
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Load the module, select the token the URI names and log in (once), asking
    /// `callbacks` for a PIN no `pin-source=` supplies. `rw` opens the keeper
    /// read-write, for creating objects.
    ///
    /// # Errors
    /// Module, token-selection, PIN and login failures, each with a message that says
    /// what to change.
    pub fn open(uri: &Pkcs11Uri, rw: bool, callbacks: &dyn Callbacks) -> Result<Self, Pkcs11Error> {
        let path = module::resolve(uri)?;
        let ctx = module::load(&path)?;
        let (slot, info) = select(&ctx, uri, &path)?;
        let label = info.label().trim_end().to_string();
        let keeper = if rw {
            ctx.open_rw_session(slot)
        } else {
            ctx.open_ro_session(slot)
        }
        .map_err(Pkcs11Error::call(format!(
            "opening a session on token \"{label}\""
        )))?;
        let mut token = Self {
            ctx,
            slot,
            label,
            pin: None,
            keeper: Mutex::new(keeper),
            pool: Mutex::new(Vec::new()),
        };
        token.login(uri, &info, callbacks)?;
        Ok(token)
    }

    /// Log in once. The token's PIN flags were read (`info`) before any PIN is asked
    /// for or presented: a locked PIN is never tried.
    fn login(
        &mut self,
        uri: &Pkcs11Uri,
        info: &TokenInfo,
        callbacks: &dyn Callbacks,
    ) -> Result<(), Pkcs11Error> {
        if !info.login_required() {
            return Ok(());
        }
        if info.user_pin_locked() {
            return Err(Pkcs11Error::PinLocked {
                token: self.label.clone(),
            });
        }
        let pin = match &uri.pin {
            Some(source) => Some(self.read_pin(source, callbacks)?),
            None if info.protected_authentication_path() => None,
            None => Some(self.read_pin(&SecretSource::Prompt, callbacks)?),
        };
        let result = {
            let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
            present(&keeper, UserType::User, pin.as_ref())
        };
        match result {
            Ok(()) => {
                self.pin = pin;
                Ok(())
            }
            Err(e) => Err(self.login_error(e)),
        }
    }

    fn read_pin(
        &self,
        source: &SecretSource,
        callbacks: &dyn Callbacks,
    ) -> Result<Secret, Pkcs11Error> {
        let request = SecretRequest::new(
            SecretKind::Pin,
            format!("user PIN for token \"{}\"", self.label),
        );
        match source.read(&request, callbacks) {
            Ok(pin) => Ok(pin),
            Err(SecretError::CannotAsk { .. }) => Err(Pkcs11Error::PinNeeded {
                token: self.label.clone(),
            }),
            Err(source) => Err(Pkcs11Error::PinSource {
                token: self.label.clone(),
                source,
            }),
        }
    }

    /// Turn a failed C_Login into what the token says about its PIN counter.
    fn login_error(&self, e: CkError) -> Pkcs11Error {
        match e {
            CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _) => {
                let state = match self.ctx.get_token_info(self.slot) {
                    Ok(i) if i.user_pin_locked() => {
                        "; the token now reports the user PIN LOCKED: unblock it with the SO PIN / PUK".to_string()
                    }
                    Ok(i) if i.user_pin_final_try() => {
                        "; the token reports FINAL TRY: one more wrong PIN locks it".to_string()
                    }
                    Ok(i) if i.user_pin_count_low() => {
                        "; the token reports its retry count is LOW".to_string()
                    }
                    _ => String::new(),
                };
                Pkcs11Error::WrongPin {
                    token: self.label.clone(),
                    state,
                }
            }
            CkError::Pkcs11(RvError::PinLocked, _) => Pkcs11Error::PinLocked {
                token: self.label.clone(),
            },
            CkError::Pkcs11(RvError::PinLenRange, _) => Pkcs11Error::Key(format!(
                "token \"{}\" refused the PIN's length (not retried); check the PIN source",
                self.label
            )),
            other => Pkcs11Error::Call {
                what: format!("logging in to token \"{}\"", self.label),
                source: Box::new(other),
            },
        }
    }

    /// Log in again with the PIN that already worked, after the token reported
    /// CKR_USER_NOT_LOGGED_IN (a card reset, another process logging out).
    pub fn relogin(&self) -> Result<(), Pkcs11Error> {
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        present(&keeper, UserType::User, self.pin.as_ref()).map_err(|e| self.login_error(e))
    }

    /// The context-specific login a CKA_ALWAYS_AUTHENTICATE key needs after each
    /// C_SignInit.
    pub fn context_login(&self, session: &Session) -> Result<(), Pkcs11Error> {
        present(session, UserType::ContextSpecific, self.pin.as_ref())
            .map_err(|e| self.login_error(e))
    }

    /// A session to sign on: an idle one from the pool, or a new one.
    pub fn session(&self) -> Result<Session, Pkcs11Error> {
        if let Some(s) = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(s);
        }
        self.ctx
            .open_ro_session(self.slot)
            .map_err(Pkcs11Error::call(format!(
                "opening a session on token \"{}\"",
                self.label
            )))
    }

    /// Give a healthy session back to the pool.
    pub fn give_back(&self, session: Session) {
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
    }

    /// Run `f` on the keeper session (object search and creation).
    pub fn with_keeper<T>(&self, f: impl FnOnce(&Session) -> T) -> T {
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        f(&keeper)
    }

    /// Mechanisms the token offers.
    pub fn mechanisms(&self) -> Result<Vec<cryptoki::mechanism::MechanismType>, Pkcs11Error> {
        self.ctx
            .get_mechanism_list(self.slot)
            .map_err(Pkcs11Error::call(format!(
                "listing the mechanisms of token \"{}\"",
                self.label
            )))
    }
}

/// C_Login; "already logged in" is success.
fn present(session: &Session, user: UserType, pin: Option<&Secret>) -> Result<(), CkError> {
    let pin = pin.map(|p| AuthPin::from(p.expose()));
    match session.login(user, pin.as_ref()) {
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        other => other,
    }
}

/// The one slot whose token matches the URI's token attributes.
fn select(
    ctx: &Pkcs11,
    uri: &Pkcs11Uri,
    module: &std::path::Path,
) -> Result<(Slot, TokenInfo), Pkcs11Error> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(Pkcs11Error::call("listing the slots with a token"))?;
    let mut present = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let wanted = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w == have.trim_end())
        };
        let ok = wanted(&uri.token, info.label())
            && wanted(&uri.manufacturer, info.manufacturer_id())
            && wanted(&uri.serial, info.serial_number())
            && wanted(&uri.model, info.model())
            && uri.slot_id.is_none_or(|id| id == slot.id());
        present.push(describe(slot, &info));
        if ok {
            matching.push((slot, info));
        }
    }
    let listing = if present.is_empty() {
        format!(
            "the module {} shows no initialised token (SoftHSM2: softhsm2-util --init-token --free --label NAME; a card: is it inserted?)",
            module.display()
        )
    } else {
        format!("tokens present:\n  {}", present.join("\n  "))
    };
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(Pkcs11Error::NoToken {
            reference: uri.to_string(),
            listing,
        }),
        count => Err(Pkcs11Error::ManyTokens {
            count,
            reference: uri.to_string(),
            listing,
        }),
    }
}

fn describe(slot: Slot, info: &TokenInfo) -> String {
    format!(
        "token={};manufacturer={};serial={};model={};slot-id={}",
        super::uri_escape(info.label().trim_end()),
        super::uri_escape(info.manufacturer_id().trim_end()),
        super::uri_escape(info.serial_number().trim_end()),
        super::uri_escape(info.model().trim_end()),
        slot.id()
    )
}
