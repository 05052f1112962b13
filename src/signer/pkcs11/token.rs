//! The token: which slot the URI selects, the one login that covers every session of
//! this process (held by a keeper session), and the pool of sessions signatures run on.
//!
//! A token can go away under a long-running signer: pulled out, its reader unplugged, a
//! card reset, a login another library dropped. What is known about the sessions is
//! kept as a *generation*: it changes whenever the sessions or the login were lost and
//! made again, and every session handed out carries the generation it belongs to, so a
//! session from before a loss is closed instead of used again. After a removal the
//! keeper is gone; the next call that needs the token opens it again (the same token:
//! its serial number must match), logs in once with the PIN that worked, and starts a
//! new generation. A PIN the token refused is never presented again by this token
//! object, whatever the caller does next.

use super::{module, Pkcs11Error};
use crate::keyref::Pkcs11Uri;
use crate::secret::{Callbacks, Secret, SecretError, SecretKind, SecretRequest, SecretSource};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A selected, logged-in token.
pub struct Token {
    pub ctx: Pkcs11,
    pub slot: Slot,
    /// The token label, for messages.
    pub label: String,
    /// Its serial number: a token found in the slot after a removal must be the same one.
    serial: String,
    /// Whether sessions are opened read-write (for creating objects).
    rw: bool,
    /// Whether the token wants a user login (CKF_LOGIN_REQUIRED).
    login_required: bool,
    /// The PIN that logged in, kept (zeroized on drop) for context-specific logins and
    /// for logging in again after the token forgot the login; never a guess.
    pin: Option<Secret>,
    /// Set when the token refused the PIN (or reported it locked): it is never presented
    /// again.
    pin_refused: AtomicBool,
    /// The keeper session and the generation.
    state: Mutex<State>,
    /// Idle signing sessions, each with the generation it was opened in.
    pool: Mutex<Vec<(u64, Session)>>,
}

/// What the login and the sessions currently rest on.
struct State {
    /// Holds the login (PKCS#11 logs out when an application's last session closes);
    /// `None` after the token was lost, until it is opened again.
    keeper: Option<Session>,
    /// Changes whenever the sessions or the login were lost and made again.
    generation: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("slot", &self.slot.id())
            .finish_non_exhaustive()
    }
}

/// How a failed call bears on the token, for the callers that recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The token is gone (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT): every session and
    /// the login with it.
    Token,
    /// This session is gone (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED).
    Session,
    /// The login is gone (CKR_USER_NOT_LOGGED_IN), or the key handle died with it.
    Login,
    /// Anything else: the call failed, nothing is known to be lost.
    None,
}

impl Loss {
    /// Classify a cryptoki error.
    pub fn of(e: &CkError) -> Self {
        match e {
            CkError::Pkcs11(RvError::DeviceRemoved | RvError::TokenNotPresent, _) => Self::Token,
            CkError::Pkcs11(RvError::SessionHandleInvalid | RvError::SessionClosed, _) => {
                Self::Session
            }
            CkError::Pkcs11(
                RvError::UserNotLoggedIn | RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid,
                _,
            ) => Self::Login,
            _ => Self::None,
        }
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
        let keeper = open_session(&ctx, slot, rw).map_err(Pkcs11Error::call(format!(
            "opening a session on token \"{label}\""
        )))?;
        let mut token = Self {
            ctx,
            slot,
            label,
            serial: info.serial_number().trim_end().to_string(),
            rw,
            login_required: info.login_required(),
            pin: None,
            pin_refused: AtomicBool::new(false),
            state: Mutex::new(State {
                keeper: Some(keeper),
                generation: 0,
            }),
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
            let state = self.state();
            let keeper = state.keeper.as_ref().expect("opened with a keeper");
            present(keeper, UserType::User, pin.as_ref())
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

    /// Turn a failed C_Login into what the token says about its PIN counter. A refused
    /// or locked PIN is remembered: it is never presented again.
    fn login_error(&self, e: CkError) -> Pkcs11Error {
        match e {
            CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _) => {
                self.pin_refused.store(true, Ordering::SeqCst);
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
            CkError::Pkcs11(RvError::PinLocked, _) => {
                self.pin_refused.store(true, Ordering::SeqCst);
                Pkcs11Error::PinLocked {
                    token: self.label.clone(),
                }
            }
            CkError::Pkcs11(RvError::PinLenRange, _) => {
                self.pin_refused.store(true, Ordering::SeqCst);
                Pkcs11Error::Key(format!(
                    "token \"{}\" refused the PIN's length (not retried); check the PIN source",
                    self.label
                ))
            }
            e if Loss::of(&e) == Loss::Token => self.absent(Some(e)),
            other => Pkcs11Error::Call {
                what: format!("logging in to token \"{}\"", self.label),
                source: Box::new(other),
            },
        }
    }

    /// The error for a PIN the token refused before: it is not presented again.
    fn refused_before(&self) -> Pkcs11Error {
        Pkcs11Error::WrongPin {
            token: self.label.clone(),
            state: "; it was refused at an earlier login and is not presented again: open the key again with the right PIN".into(),
        }
    }

    /// The token is not there.
    pub fn absent(&self, source: Option<CkError>) -> Pkcs11Error {
        Pkcs11Error::TokenAbsent {
            token: self.label.clone(),
            source: source.map(|e| Box::new(e) as super::BoxError),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open the token again after it was lost, if it was: the same token in the same
    /// slot, a new keeper session, one login with the PIN that worked, a new generation.
    fn ensure_open(&self, state: &mut State) -> Result<(), Pkcs11Error> {
        if state.keeper.is_some() {
            return Ok(());
        }
        if self.login_required && self.pin_refused.load(Ordering::SeqCst) {
            return Err(self.refused_before());
        }
        let info = self
            .ctx
            .get_token_info(self.slot)
            .map_err(|e| match Loss::of(&e) {
                Loss::Token => self.absent(Some(e)),
                _ => match e {
                    CkError::Pkcs11(RvError::SlotIdInvalid, _) => self.absent(Some(e)),
                    e => Pkcs11Error::Call {
                        what: format!(
                            "reading token \"{}\" again after it was removed",
                            self.label
                        ),
                        source: Box::new(e),
                    },
                },
            })?;
        if info.serial_number().trim_end() != self.serial || info.label().trim_end() != self.label {
            return Err(Pkcs11Error::Key(format!(
                "the token in slot {} is now \"{}\" (serial {}), not token \"{}\" (serial {}) that was removed: put that one back, or open the key again",
                self.slot.id(),
                info.label().trim_end(),
                info.serial_number().trim_end(),
                self.label,
                self.serial
            )));
        }
        if self.login_required && info.user_pin_locked() {
            self.pin_refused.store(true, Ordering::SeqCst);
            return Err(Pkcs11Error::PinLocked {
                token: self.label.clone(),
            });
        }
        let keeper =
            open_session(&self.ctx, self.slot, self.rw).map_err(|e| match Loss::of(&e) {
                Loss::Token => self.absent(Some(e)),
                _ => Pkcs11Error::Call {
                    what: format!("opening a session on token \"{}\"", self.label),
                    source: Box::new(e),
                },
            })?;
        if self.login_required {
            present(&keeper, UserType::User, self.pin.as_ref()).map_err(|e| self.login_error(e))?;
        }
        state.keeper = Some(keeper);
        state.generation += 1;
        Ok(())
    }

    /// Log in again with the PIN that already worked, after a call on a session of
    /// generation `seen` reported the login gone (a card reset, another process logging
    /// out). Several callers that saw the same loss log in once: the first starts a new
    /// generation, the others find it and go on. A PIN the token refused is not
    /// presented again.
    ///
    /// # Errors
    /// The token refused the PIN (now or before), or it is gone.
    pub fn relogin(&self, seen: u64) -> Result<(), Pkcs11Error> {
        let mut state = self.state();
        if state.generation != seen {
            return self.ensure_open(&mut state);
        }
        if self.pin_refused.load(Ordering::SeqCst) {
            return Err(self.refused_before());
        }
        let Some(keeper) = state.keeper.as_ref() else {
            return self.ensure_open(&mut state);
        };
        match present(keeper, UserType::User, self.pin.as_ref()) {
            Ok(()) => {
                state.generation += 1;
                Ok(())
            }
            // The keeper died with the token or by itself: open the token again.
            Err(e) if matches!(Loss::of(&e), Loss::Token | Loss::Session) => {
                self.drop_sessions(&mut state);
                self.ensure_open(&mut state)
            }
            Err(e) => Err(self.login_error(e)),
        }
    }

    /// A call on a session of generation `seen` reported the token gone: close every
    /// session of that generation (the keeper too); the next call opens the token again.
    pub fn lost(&self, seen: u64) {
        let mut state = self.state();
        if state.generation == seen {
            self.drop_sessions(&mut state);
        }
    }

    /// A session of generation `seen` is gone. If the keeper is gone too (a reset that
    /// closed every session) the token is opened again at the next call; else only that
    /// session was lost.
    pub fn session_lost(&self, seen: u64) {
        let mut state = self.state();
        if state.generation != seen {
            return;
        }
        let keeper_gone = state.keeper.as_ref().is_some_and(|k| {
            k.get_session_info()
                .is_err_and(|e| Loss::of(&e) != Loss::None)
        });
        if keeper_gone {
            self.drop_sessions(&mut state);
        }
    }

    /// Forget the keeper and the pool (closing them) and start a new generation.
    fn drop_sessions(&self, state: &mut State) {
        state.keeper = None;
        state.generation += 1;
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The context-specific login a CKA_ALWAYS_AUTHENTICATE key needs after each
    /// C_SignInit.
    pub fn context_login(&self, session: &Session) -> Result<(), Pkcs11Error> {
        if self.pin_refused.load(Ordering::SeqCst) {
            return Err(self.refused_before());
        }
        present(session, UserType::ContextSpecific, self.pin.as_ref())
            .map_err(|e| self.login_error(e))
    }

    /// A session to sign on and its generation: an idle one from the pool, or a new one.
    /// Opens the token again first if it was lost.
    ///
    /// # Errors
    /// The token is not there ([`Pkcs11Error::TokenAbsent`]), it is another token, its
    /// PIN was refused, or no session can be opened.
    pub fn session(&self) -> Result<(u64, Session), Pkcs11Error> {
        let generation = {
            let mut state = self.state();
            self.ensure_open(&mut state)?;
            state.generation
        };
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            while let Some((g, s)) = pool.pop() {
                if g == generation {
                    return Ok((g, s));
                }
            }
        }
        match self.ctx.open_ro_session(self.slot) {
            Ok(s) => Ok((generation, s)),
            Err(e) if Loss::of(&e) == Loss::Token => {
                self.lost(generation);
                Err(self.absent(Some(e)))
            }
            Err(e) => Err(Pkcs11Error::Call {
                what: format!("opening a session on token \"{}\"", self.label),
                source: Box::new(e),
            }),
        }
    }

    /// Give a healthy session back to the pool; one from an earlier generation is
    /// closed instead.
    pub fn give_back(&self, generation: u64, session: Session) {
        if self.state().generation != generation {
            return;
        }
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((generation, session));
    }

    /// Run `f` on the keeper session (object search and creation), opening the token
    /// again first if it was lost; also returns the generation `f` ran in.
    ///
    /// # Errors
    /// `f`'s error, or the token cannot be opened again (see [`Self::session`]).
    pub fn with_keeper<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, Pkcs11Error>,
    ) -> Result<T, Pkcs11Error> {
        let mut state = self.state();
        self.ensure_open(&mut state)?;
        let result = f(state.keeper.as_ref().expect("ensure_open leaves a keeper"));
        // The keeper found the token (or itself) gone: nothing of this generation is
        // used again; the next call opens the token again.
        match result {
            Err(Pkcs11Error::Call { what, source }) => match source.downcast::<CkError>() {
                Ok(e) => match Loss::of(&e) {
                    Loss::Token => {
                        self.drop_sessions(&mut state);
                        Err(self.absent(Some(*e)))
                    }
                    Loss::Session => {
                        self.drop_sessions(&mut state);
                        Err(Pkcs11Error::Call { what, source: e })
                    }
                    _ => Err(Pkcs11Error::Call { what, source: e }),
                },
                Err(source) => Err(Pkcs11Error::Call { what, source }),
            },
            other => other,
        }
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.state().generation
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

fn open_session(ctx: &Pkcs11, slot: Slot, rw: bool) -> Result<Session, CkError> {
    if rw {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
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
