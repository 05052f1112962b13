//! Bounded device calls: the one mechanism that keeps a hung device (a stopped swtpm, a
//! TCTI peer that accepts and never answers, a PKCS#11 module whose `C_Sign` never
//! returns) from blocking its caller forever, for every hardware backend.
//!
//! [`open_with`](super::open_with) wraps a PKCS#11 or TPM signer in a [`BoundedSigner`]:
//! each signature (and certificate store) runs on a thread of its own while the caller
//! waits at most [`OpenOptions::device_timeout`]. When the wait runs out the caller gets
//! [`Error::DeviceTimeout`] naming the device; the stuck call is left to finish on its
//! thread (a blocked C or socket call cannot be cancelled), and until it does every
//! further call fails at once with [`Error::DeviceStuck`] instead of queueing behind it.
//! When the device comes back (swtpm continued, the token touched) the stuck call
//! returns, its thread ends, and the signer works again.
//!
//! The backend is kept behind an `Arc` that the call's thread shares, so dropping the
//! signer while a call is stuck does not block either: the backend is dropped (its TPM
//! objects flushed, its sessions closed) when the stuck call returns, or with the process.
//!
//! Calls run on a small pool of threads, not one device thread, so a PKCS#11 session
//! pool's signatures stay parallel; a thread that finished its call waits (up to a minute)
//! for the next, so a signature costs a channel hand-off, not a thread spawn. A stuck
//! call keeps its thread; the next call gets another.

use super::{Algorithm, Error, Signer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// A device call, as a worker thread runs it. It calls the hook it is given once the
/// device has answered and before it hands the answer over, so that the worker is idle
/// again by the time the caller can make its next call.
type Job = Box<dyn FnOnce(&mut dyn FnMut()) + Send>;

/// How long a worker thread waits for its next call before it ends.
const IDLE: Duration = Duration::from_secs(60);
/// At most this many workers wait for calls; more end when they finish.
const MAX_IDLE: usize = 8;

/// Worker threads waiting for a call, each through its own channel.
#[derive(Default)]
struct Workers {
    idle: Mutex<Vec<mpsc::Sender<Job>>>,
}

impl Workers {
    /// Run `job` on an idle worker, or on a new one.
    fn run(self: &Arc<Self>, mut job: Job) -> std::io::Result<()> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(worker) => match worker.send(job) {
                    Ok(()) => return Ok(()),
                    // That worker timed out and ended: try the next.
                    Err(mpsc::SendError(back)) => job = back,
                },
                None => break,
            }
        }
        let workers = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("certassert-device".into())
            .spawn(move || Self::work(&workers, job))
            .map(drop)
    }

    fn work(workers: &Weak<Self>, first: Job) {
        let mut job = first;
        loop {
            let mut next = None;
            job(&mut || next = Self::wait_idle(workers));
            // No slot: the signer is gone, or enough workers wait already.
            let Some(next) = next else { return };
            // Disconnected when the signer (and its idle list) is dropped.
            match next.recv_timeout(IDLE) {
                Ok(call) => job = call,
                Err(_) => return,
            }
        }
    }

    /// Put the calling worker on the idle list; the channel its next call comes through.
    fn wait_idle(workers: &Weak<Self>) -> Option<mpsc::Receiver<Job>> {
        let workers = workers.upgrade()?;
        let mut idle = workers.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= MAX_IDLE {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        idle.push(tx);
        Some(rx)
    }
}

/// The device timeout when none is given: how long a signature may take in a token or
/// TPM before the caller gets [`Error::DeviceTimeout`].
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// How keys are opened: options that apply to every backend.
///
/// ```
/// # use std::time::Duration;
/// let options = certassert::signer::OpenOptions::new().device_timeout(Duration::from_secs(5));
/// assert_eq!(options.timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    device_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            device_timeout: DEFAULT_DEVICE_TIMEOUT,
        }
    }
}

impl OpenOptions {
    /// The defaults: a [`DEFAULT_DEVICE_TIMEOUT`] of 30 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long one call to a PKCS#11 token or a TPM (a signature, storing a
    /// certificate) may take before it fails with [`Error::DeviceTimeout`]. A zero
    /// duration is taken as the smallest wait, not as "no wait".
    pub fn device_timeout(mut self, timeout: Duration) -> Self {
        self.device_timeout = timeout;
        self
    }

    /// The device timeout set.
    pub fn timeout(&self) -> Duration {
        self.device_timeout
    }

    /// Read a device timeout as people write it: seconds, whole or decimal, with an
    /// optional `s` (`30`, `1.5`, `2s`); more than 0 and at most a day. For command-line
    /// flags, environment variables and configuration files.
    ///
    /// # Errors
    /// [`Error::BadDeviceTimeout`]: not a number of seconds, zero, or over a day.
    pub fn parse_device_timeout(text: &str) -> Result<Duration, Error> {
        let bad = || Error::BadDeviceTimeout {
            value: text.chars().take(40).collect(),
        };
        let number = text.trim();
        let number = number.strip_suffix('s').unwrap_or(number).trim_end();
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        let secs: f64 = number.parse().map_err(|_| bad())?;
        if !(secs > 0.0 && secs <= 86_400.0) {
            return Err(bad());
        }
        Duration::try_from_secs_f64(secs).map_err(|_| bad())
    }
}

/// How long a device call runs before an `info` event says it is being waited for.
const NUDGE_AFTER: Duration = Duration::from_secs(1);

/// Which kind of device a [`BoundedSigner`] talks to, for its messages.
#[derive(Debug, Clone)]
pub(crate) enum Device {
    /// A TPM reached through this TCTI.
    Tpm { tcti: String },
    /// A PKCS#11 module at this path (or as the reference names it).
    Pkcs11 { module: String },
}

impl Device {
    fn name(&self) -> String {
        match self {
            Self::Tpm { tcti } => format!("the TPM at \"{tcti}\""),
            Self::Pkcs11 { module } => format!("the PKCS#11 module {module}"),
        }
    }

    fn call(&self, call: Call) -> &'static str {
        match (self, call) {
            (Self::Tpm { .. }, _) => "answer",
            (Self::Pkcs11 { .. }, Call::Sign) => "return from C_Sign",
            (Self::Pkcs11 { .. }, Call::Store) => "return from C_CreateObject",
        }
    }

    /// The feedback line for a call still out after [`NUDGE_AFTER`].
    fn waiting(&self) -> String {
        match self {
            Self::Tpm { .. } => format!("waiting for {}…", self.name()),
            Self::Pkcs11 { .. } => "waiting for the token — touch it if it asks".to_string(),
        }
    }

    fn advice(&self) -> &'static str {
        match self {
            Self::Tpm { .. } => "is it running, or stopped? (a stopped swtpm, a TPM device or resource manager that hangs)",
            Self::Pkcs11 { .. } => "touch the token if it asks, or check the device",
        }
    }
}

/// The error for a TPM at `tcti` that did not answer within `after` (opening a key).
#[cfg(feature = "tpm")]
pub(crate) fn tpm_timeout(tcti: &str, after: Duration) -> Error {
    let device = Device::Tpm { tcti: tcti.into() };
    Error::DeviceTimeout {
        device: device.name(),
        call: device.call(Call::Sign),
        after,
        advice: device.advice(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Call {
    Sign,
    Store,
}

/// A hardware signer whose every device call is bounded (see the module doc).
pub(crate) struct BoundedSigner {
    inner: Arc<dyn Signer>,
    device: Device,
    timeout: Duration,
    /// Calls that timed out and have not returned yet.
    stuck: Arc<AtomicUsize>,
    workers: Arc<Workers>,
}

impl std::fmt::Debug for BoundedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl BoundedSigner {
    pub(crate) fn new(inner: Box<dyn Signer>, device: Device, options: &OpenOptions) -> Self {
        Self {
            inner: Arc::from(inner),
            device,
            timeout: options.device_timeout.max(Duration::from_millis(1)),
            stuck: Arc::new(AtomicUsize::new(0)),
            workers: Arc::default(),
        }
    }

    /// Run `f` on the backend from a thread of its own, waiting at most the timeout.
    fn call<R: Send + 'static>(
        &self,
        call: Call,
        f: impl FnOnce(&dyn Signer) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        if self.stuck.load(Ordering::SeqCst) > 0 {
            return Err(Error::DeviceStuck {
                device: self.device.name(),
                advice: self.device.advice(),
            });
        }
        let answer = Arc::new(Answer {
            slot: Mutex::new(Slot::Waiting),
            ready: Condvar::new(),
        });
        let inner = Arc::clone(&self.inner);
        let stuck = Arc::clone(&self.stuck);
        let theirs = Arc::clone(&answer);
        let spawned = self.workers.run(Box::new(move |idle: &mut dyn FnMut()| {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(inner.as_ref())))
                    .unwrap_or_else(|_| {
                        Err(Error::Sign {
                            backend: "device",
                            detail: "the backend panicked during the call".into(),
                        })
                    });
            // Let go of the backend, and be ready for the next call, before answering.
            drop(inner);
            idle();
            let mut slot = theirs.slot.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(*slot, Slot::Abandoned) {
                // The caller gave up on this call (and counted it, under this lock).
                stuck.fetch_sub(1, Ordering::SeqCst);
            } else {
                *slot = Slot::Done(result);
                theirs.ready.notify_one();
            }
        }));
        if let Err(e) = spawned {
            return Err(Error::DeviceThread { source: e });
        }
        let deadline = Instant::now() + self.timeout;
        // A call still out after NUDGE_AFTER gets one line of feedback (a token may be
        // waiting for a touch).
        let mut nudge = Some(Instant::now() + NUDGE_AFTER).filter(|at| *at < deadline);
        let mut slot = answer.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Slot::Done(_) = *slot {
                let Slot::Done(result) = std::mem::replace(&mut *slot, Slot::Waiting) else {
                    unreachable!("matched above")
                };
                return result;
            }
            let now = Instant::now();
            if now >= deadline {
                // Counted under the lock the worker takes to answer, so its decrement
                // always follows this increment.
                *slot = Slot::Abandoned;
                self.stuck.fetch_add(1, Ordering::SeqCst);
                return Err(Error::DeviceTimeout {
                    device: self.device.name(),
                    call: self.device.call(call),
                    after: self.timeout,
                    advice: self.device.advice(),
                });
            }
            if nudge.is_some_and(|at| now >= at) {
                nudge = None;
                tracing::info!("{}", self.device.waiting());
            }
            let until = nudge.map_or(deadline, |at| at.min(deadline));
            slot = answer
                .ready
                .wait_timeout(slot, until - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// Where a worker leaves a call's answer.
struct Answer<R> {
    slot: Mutex<Slot<R>>,
    ready: Condvar,
}

enum Slot<R> {
    /// The call is running.
    Waiting,
    /// The device answered in time.
    Done(Result<R, Error>),
    /// The caller timed out and counted the call as stuck.
    Abandoned,
}

impl Signer for BoundedSigner {
    fn algorithms(&self) -> &[Algorithm] {
        self.inner.algorithms()
    }

    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, Error> {
        let message = message.to_vec();
        self.call(Call::Sign, move |signer| signer.sign(alg, &message))
    }

    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }

    fn certificate_der(&self) -> Option<&[u8]> {
        self.inner.certificate_der()
    }

    fn chain_der(&self) -> &[Vec<u8>] {
        self.inner.chain_der()
    }

    fn store_certificate(&self, cert_der: &[u8]) -> Result<(), Error> {
        let cert = cert_der.to_vec();
        self.call(Call::Store, move |signer| signer.store_certificate(&cert))
    }
}

/// A duration as a message shows it: whole seconds as `30 s`, else `1.5 s`.
pub(crate) fn seconds(d: &Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        let n = format!("{:.3}", d.as_secs_f64());
        format!("{} s", n.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer whose `sign` waits until told to go.
    #[derive(Debug)]
    struct Gate(std::sync::Mutex<mpsc::Receiver<()>>);

    impl Signer for Gate {
        fn algorithms(&self) -> &[Algorithm] {
            &[Algorithm::Rs256]
        }
        fn sign(&self, _: Algorithm, _: &[u8]) -> Result<Vec<u8>, Error> {
            let _ = self.0.lock().unwrap().recv();
            Ok(vec![1])
        }
        fn public_key_der(&self) -> &[u8] {
            &[]
        }
    }

    #[test]
    fn a_hung_call_times_out_later_calls_fail_fast_until_it_returns() {
        let (go, wait) = mpsc::channel();
        let signer = BoundedSigner::new(
            Box::new(Gate(std::sync::Mutex::new(wait))),
            Device::Tpm {
                tcti: "swtpm:port=1".into(),
            },
            &OpenOptions::new().device_timeout(Duration::from_millis(100)),
        );
        let start = std::time::Instant::now();
        let err = signer.sign(Algorithm::Rs256, b"m").unwrap_err();
        assert!(matches!(err, Error::DeviceTimeout { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            "the TPM at \"swtpm:port=1\" did not answer within 0.1 s: is it running, or stopped? (a stopped swtpm, a TPM device or resource manager that hangs)"
        );
        let err = signer.sign(Algorithm::Rs256, b"m").unwrap_err();
        assert!(matches!(err, Error::DeviceStuck { .. }), "{err:?}");
        // The device comes back: the stuck call returns, then calls work again.
        go.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while signer.stuck.load(Ordering::SeqCst) > 0 {
            assert!(std::time::Instant::now() < deadline, "never unstuck");
            std::thread::sleep(Duration::from_millis(5));
        }
        go.send(()).unwrap();
        assert_eq!(signer.sign(Algorithm::Rs256, b"m").unwrap(), vec![1]);
    }

    /// A signer that answers at once.
    #[derive(Debug)]
    struct Quick;

    impl Signer for Quick {
        fn algorithms(&self) -> &[Algorithm] {
            &[Algorithm::Rs256]
        }
        fn sign(&self, _: Algorithm, _: &[u8]) -> Result<Vec<u8>, Error> {
            Ok(format!("{:?}", std::thread::current().id()).into_bytes())
        }
        fn public_key_der(&self) -> &[u8] {
            &[]
        }
    }

    #[test]
    fn sequential_calls_reuse_one_worker_thread() {
        let signer = BoundedSigner::new(
            Box::new(Quick),
            Device::Pkcs11 {
                module: "m.so".into(),
            },
            &OpenOptions::new(),
        );
        let first = signer.sign(Algorithm::Rs256, b"m").unwrap();
        for _ in 0..20 {
            assert_eq!(signer.sign(Algorithm::Rs256, b"m").unwrap(), first);
        }
        assert_ne!(
            first,
            format!("{:?}", std::thread::current().id()).into_bytes()
        );
        assert_eq!(signer.workers.idle.lock().unwrap().len(), 1);
    }

    #[test]
    fn device_timeouts_are_read_as_seconds() {
        let parse = OpenOptions::parse_device_timeout;
        assert_eq!(parse("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse(" 2s ").unwrap(), Duration::from_secs(2));
        for bad in [
            "", "0", "-1", "abc", "1e3", "NaN", "inf", "90000", "1.2.3", "s",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::BadDeviceTimeout { .. }),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(
            parse("soon").unwrap_err().to_string(),
            "\"soon\" is not a device timeout: give seconds, more than 0 and at most 86400 (e.g. 30 or 1.5)"
        );
    }

    #[test]
    fn seconds_are_shown_short() {
        assert_eq!(seconds(&Duration::from_secs(30)), "30 s");
        assert_eq!(seconds(&Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(&Duration::from_millis(100)), "0.1 s");
        assert_eq!(seconds(&Duration::from_millis(1250)), "1.25 s");
    }
}
