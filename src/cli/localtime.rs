//! Local time as `az` prints it: `expiresOn` of `az account get-access-token` is the
//! local wall-clock time (Python's `datetime.fromtimestamp`), `YYYY-MM-DD HH:MM:SS.ffffff`.

/// `unix` as local wall-clock time in az's format, or `None` when the C library cannot
/// convert it (then the caller falls back to UTC).
pub fn az_local(unix: i64) -> Option<String> {
    let t: libc::time_t = unix;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value, and
    // localtime_r(3) writes only into it (the reentrant variant: no shared static buffer);
    // both pointers are valid for the duration of the call.
    #[allow(unsafe_code)]
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.000000",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    ))
}
