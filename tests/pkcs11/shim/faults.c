/*
 * Test-only PKCS#11 fault-injecting proxy: forwards every call to a real module (SoftHSM2
 * in the tests) and, on a schedule the test controls, fails calls as a removed, reset or
 * failing device would, slows them down, or hangs them. It counts calls so tests can
 * assert what the library did (how many C_Login, C_OpenSession, C_Sign, C_CloseSession),
 * and it hands out session handles of its own, never reused, so that a session handle
 * used after the library was told its session is gone is seen and counted ("stale").
 * It exports only C_GetFunctionList. Never shipped: built by the tests and the soak at
 * run time (tests/pkcs11/shim/mod.rs):
 *   gcc -shared -fPIC -Wall -Werror -I/usr/include/p11-kit-1 -o faults.so faults.c -ldl -lpthread
 *
 * Environment:
 *   CERTASSERT_SHIM_MODULE     the real module (required)
 *   CERTASSERT_SHIM_HANG_FILE  while this file exists, C_SignInit and C_Sign hang (sleep
 *                              until it is removed), as a token waiting for a touch would
 *   CERTASSERT_SHIM_CONTROL    the schedule (optional), read again whenever the file changes
 *                              (write it elsewhere and rename it into place). One directive
 *                              a line:
 *       fail FUNC N RV         the next N calls of FUNC (C_Sign, C_Login, C_OpenSession, …)
 *                              fail with RV
 *       every K FUNC RV[,RV…]  every K-th call of FUNC fails, with the RVs in turn (the
 *                              count goes on when the schedule changes but this line
 *                              stays)
 *       slow MS                every call waits MS milliseconds first
 *       absent                 the token is absent while this line is there
 *     RV is a CKR_ name without the prefix: DEVICE_REMOVED, TOKEN_NOT_PRESENT,
 *     SESSION_HANDLE_INVALID, USER_NOT_LOGGED_IN, DEVICE_ERROR, PIN_INCORRECT, …
 *   CERTASSERT_SHIM_STATS      where to write the counters (optional), "name value" lines,
 *                              rewritten (by rename) before each call returns: calls by
 *                              function, live_sessions, stale, close_dead, injected (and
 *                              injected_RV by kind), removals, pins_presented, absent
 *
 * What an injected fault does besides failing the call, so that the library meets the
 * state a real device would leave:
 *   DEVICE_REMOVED, TOKEN_NOT_PRESENT   a removal and reinsertion: every open session is
 *                                       gone (closed in the real module, which logs out)
 *   SESSION_HANDLE_INVALID, SESSION_CLOSED   that session is gone
 *   USER_NOT_LOGGED_IN                  the login is gone (C_Logout in the real module)
 *   anything else (DEVICE_ERROR, PIN_INCORRECT …)   the call fails, nothing else changes
 * "absent" closes every session when it begins; while it lasts the slot shows no token
 * and calls that need one fail with CKR_TOKEN_NOT_PRESENT.
 *
 * Dead sessions: the first call on a session that a removal killed gets
 * CKR_DEVICE_REMOVED, which tells the caller. After the caller was told — by any call
 * answered CKR_DEVICE_REMOVED or CKR_TOKEN_NOT_PRESENT, or by the call on that very
 * session answered CKR_SESSION_HANDLE_INVALID — any further call on a session that died
 * before is a stale use: it is counted ("stale") and answered CKR_SESSION_HANDLE_INVALID.
 * Closing a dead session is not a use (it is answered CKR_SESSION_HANDLE_INVALID and
 * counted as "close_dead").
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR real;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- the schedule ---------------------------------------------------------------- */

#define MAX_RULES 16
#define MAX_CYCLE 8
struct rule {
    char func[64];
    int every;              /* 0: "fail" (count down `left`); K: every K-th call */
    long left;
    unsigned long seen;     /* calls of func since the rule was loaded */
    CK_RV rv[MAX_CYCLE];
    int nrv, next;
};
static struct rule rules[MAX_RULES];
static int nrules;
static long slow_ms;
static int absent;
static struct stat control_stat;
static int control_loaded;

static const struct { const char *name; CK_RV rv; } rv_names[] = {
    {"DEVICE_REMOVED", CKR_DEVICE_REMOVED},
    {"TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
    {"SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
    {"SESSION_CLOSED", CKR_SESSION_CLOSED},
    {"USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
    {"DEVICE_ERROR", CKR_DEVICE_ERROR},
    {"DEVICE_MEMORY", CKR_DEVICE_MEMORY},
    {"PIN_INCORRECT", CKR_PIN_INCORRECT},
    {"PIN_LOCKED", CKR_PIN_LOCKED},
    {"GENERAL_ERROR", CKR_GENERAL_ERROR},
    {"FUNCTION_FAILED", CKR_FUNCTION_FAILED},
};

static int parse_rv(const char *name, CK_RV *rv) {
    if (strncmp(name, "CKR_", 4) == 0) {
        name += 4;
    }
    for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++) {
        if (strcmp(rv_names[i].name, name) == 0) {
            *rv = rv_names[i].rv;
            return 1;
        }
    }
    return 0;
}

static void parse_rvs(struct rule *r, char *list) {
    r->nrv = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && r->nrv < MAX_CYCLE;
         tok = strtok_r(NULL, ",", &save)) {
        if (parse_rv(tok, &r->rv[r->nrv])) {
            r->nrv++;
        } else {
            fprintf(stderr, "faults.so: unknown CKR %s\n", tok);
        }
    }
}

static int begin_absence(void);

/* Read the control file again if it changed. Called with the lock held. */
static void reload_control(void) {
    const char *path = getenv("CERTASSERT_SHIM_CONTROL");
    struct stat st;
    if (path == NULL) {
        return;
    }
    if (stat(path, &st) != 0) {
        memset(&st, 0, sizeof st);
    }
    if (control_loaded && st.st_ino == control_stat.st_ino && st.st_size == control_stat.st_size &&
        st.st_mtim.tv_sec == control_stat.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == control_stat.st_mtim.tv_nsec) {
        return;
    }
    control_stat = st;
    control_loaded = 1;
    /* An "every" rule that stays the same keeps its count (an "absent" line added and
     * taken away again does not restart it); "fail" rules are armed afresh. */
    struct rule old[MAX_RULES];
    int nold = nrules;
    memcpy(old, rules, sizeof old);
    nrules = 0;
    slow_ms = 0;
    int was_absent = absent;
    absent = 0;
    FILE *f = st.st_ino ? fopen(path, "r") : NULL;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char a[64] = "", b[64] = "", c[64] = "", d[256] = "";
        int n = sscanf(line, "%63s %63s %63s %255s", a, b, c, d);
        if (n >= 1 && strcmp(a, "absent") == 0) {
            absent = 1;
        } else if (n >= 2 && strcmp(a, "slow") == 0) {
            slow_ms = atol(b);
        } else if (n == 4 && nrules < MAX_RULES && strcmp(a, "fail") == 0) {
            struct rule *r = &rules[nrules];
            memset(r, 0, sizeof *r);
            snprintf(r->func, sizeof r->func, "%s", b);
            r->left = atol(c);
            parse_rvs(r, d);
            nrules += r->nrv > 0;
        } else if (n == 4 && nrules < MAX_RULES && strcmp(a, "every") == 0) {
            struct rule *r = &rules[nrules];
            memset(r, 0, sizeof *r);
            snprintf(r->func, sizeof r->func, "%s", c);
            r->every = atoi(b);
            parse_rvs(r, d);
            nrules += r->nrv > 0 && r->every > 0;
        } else if (n >= 1 && a[0] != '#') {
            fprintf(stderr, "faults.so: ignoring control line: %s", line);
        }
    }
    if (f) {
        fclose(f);
    }
    for (int i = 0; i < nrules; i++) {
        for (int j = 0; j < nold && rules[i].every > 0; j++) {
            if (old[j].every == rules[i].every && old[j].nrv == rules[i].nrv &&
                strcmp(old[j].func, rules[i].func) == 0 &&
                memcmp(old[j].rv, rules[i].rv, sizeof(CK_RV) * (size_t)old[j].nrv) == 0) {
                rules[i].seen = old[j].seen;
                rules[i].next = old[j].next;
            }
        }
    }
    if (absent && !was_absent) {
        begin_absence();
    }
}

/* The fault scheduled for this call of `func`, or CKR_OK. Lock held. */
static CK_RV scheduled(const char *func) {
    for (int i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (strcmp(r->func, func) != 0) {
            continue;
        }
        r->seen++;
        if (r->every == 0 && r->left > 0) {
            r->left--;
            return r->rv[0];
        }
        if (r->every > 0 && r->seen % (unsigned long)r->every == 0) {
            CK_RV rv = r->rv[r->next];
            r->next = (r->next + 1) % r->nrv;
            return rv;
        }
    }
    return CKR_OK;
}

/* ---- counters -------------------------------------------------------------------- */

static const char *const counted[] = {
    "C_Initialize", "C_Finalize", "C_GetSlotList", "C_GetTokenInfo", "C_OpenSession",
    "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo", "C_Login", "C_Logout",
    "C_FindObjectsInit", "C_GetAttributeValue", "C_SignInit", "C_Sign", "C_SignUpdate",
    "C_SignFinal",
};
#define NCOUNTED (sizeof counted / sizeof counted[0])
static unsigned long calls[NCOUNTED];
static unsigned long stale, close_dead, injected, removals, pins_presented;
static unsigned long injected_rv[sizeof rv_names / sizeof rv_names[0]];

static void count(const char *func) {
    for (size_t i = 0; i < NCOUNTED; i++) {
        if (strcmp(counted[i], func) == 0) {
            calls[i]++;
            return;
        }
    }
}

/* ---- sessions: our handles, never reused ----------------------------------------- */

enum state { UNUSED, LIVE, DEAD, CLOSED };
struct session {
    enum state state;
    CK_SESSION_HANDLE real;
    CK_SLOT_ID slot;
    unsigned long epoch;    /* the removal that killed it (0: killed alone) */
    int told;               /* the caller was told this session is gone */
};
static struct session *sessions; /* index = our handle - 1 */
static size_t nsessions, capacity;
static unsigned long told_epoch;  /* removals up to this one were reported to the caller */
/* Held for reading while a call on a session runs in the real module (without `lock`),
 * for writing while the shim closes sessions behind the caller's back (a removal, a
 * killed session): SoftHSM2 frees a session closed under a C_Sign running on it on
 * another thread, and crashes (SIGSEGV in RSA_blinding_off) — a real device removal
 * frees nothing under the caller. */
static pthread_rwlock_t in_module = PTHREAD_RWLOCK_INITIALIZER;

static size_t live_sessions(void) {
    size_t n = 0;
    for (size_t i = 0; i < nsessions; i++) {
        n += sessions[i].state == LIVE;
    }
    return n;
}

static void publish(void) {
    const char *path = getenv("CERTASSERT_SHIM_STATS");
    if (path == NULL) {
        return;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < NCOUNTED; i++) {
        fprintf(f, "%s %lu\n", counted[i], calls[i]);
    }
    fprintf(f, "live_sessions %zu\nstale %lu\nclose_dead %lu\ninjected %lu\nremovals %lu\n"
               "pins_presented %lu\nabsent %d\n",
            live_sessions(), stale, close_dead, injected, removals, pins_presented, absent);
    for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++) {
        fprintf(f, "injected_%s %lu\n", rv_names[i].name, injected_rv[i]);
    }
    if (fclose(f) == 0) {
        rename(tmp, path);
    }
}

/* Kill every live session, as a removal does: close them in the real module (the last
 * close logs the application out). Lock held. */
static void remove_device(void) {
    removals++;
    pthread_rwlock_wrlock(&in_module);
    for (size_t i = 0; i < nsessions; i++) {
        if (sessions[i].state == LIVE) {
            real->C_CloseSession(sessions[i].real);
            sessions[i].state = DEAD;
            sessions[i].epoch = removals;
            sessions[i].told = 0;
        }
    }
    pthread_rwlock_unlock(&in_module);
}

static int begin_absence(void) {
    remove_device();
    return 0;
}

static void kill_session(struct session *s) {
    pthread_rwlock_wrlock(&in_module);
    real->C_CloseSession(s->real);
    pthread_rwlock_unlock(&in_module);
    s->state = DEAD;
    s->epoch = 0;
    s->told = 1;
}

/* What an injected failure does to the device (see the header). Lock held; `s` is the
 * session the call was made on, or NULL. */
static CK_RV inject(CK_RV rv, struct session *s) {
    injected++;
    for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++) {
        injected_rv[i] += rv_names[i].rv == rv;
    }
    switch (rv) {
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
        remove_device();
        told_epoch = removals;
        break;
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
        if (s != NULL) {
            kill_session(s);
        }
        break;
    case CKR_USER_NOT_LOGGED_IN:
        if (s != NULL) {
            real->C_Logout(s->real);
        }
        break;
    default:
        break;
    }
    return rv;
}

static void hang_while_flagged(const char *func) {
    const char *flag = getenv("CERTASSERT_SHIM_HANG_FILE");
    if (strcmp(func, "C_Sign") != 0 && strcmp(func, "C_SignInit") != 0) {
        return;
    }
    while (flag != NULL && access(flag, F_OK) == 0) {
        usleep(20000);
    }
}

/* Before a call: schedule, slowness, hang. Returns with the lock held. */
static void begin(const char *func) {
    pthread_mutex_lock(&lock);
    reload_control();
    count(func);
    long ms = slow_ms;
    if (ms > 0 || getenv("CERTASSERT_SHIM_HANG_FILE") != NULL) {
        pthread_mutex_unlock(&lock);
        if (ms > 0) {
            struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
            while (nanosleep(&t, &t) != 0 && errno == EINTR) {
            }
        }
        hang_while_flagged(func);
        pthread_mutex_lock(&lock);
    }
}

/* After a call: publish the counters and hand the answer back. Releases the lock. */
static CK_RV end(CK_RV rv) {
    publish();
    pthread_mutex_unlock(&lock);
    return rv;
}

static CK_RV end_unlocked(CK_RV rv) {
    pthread_mutex_lock(&lock);
    return end(rv);
}

/* The start of a call on a session: CKR_OK and the real handle, or the answer to give.
 * Returns with the lock released when it answers CKR_OK. */
static CK_RV enter(const char *func, CK_SESSION_HANDLE ours, CK_SESSION_HANDLE *real_handle) {
    begin(func);
    if (ours == 0 || ours > nsessions || sessions[ours - 1].state == UNUSED ||
        sessions[ours - 1].state == CLOSED) {
        return end(CKR_SESSION_HANDLE_INVALID);
    }
    struct session *s = &sessions[ours - 1];
    if (s->state == DEAD) {
        if (s->told || (s->epoch != 0 && s->epoch <= told_epoch)) {
            stale++;
            return end(CKR_SESSION_HANDLE_INVALID);
        }
        s->told = 1;
        if (s->epoch > told_epoch) {
            told_epoch = s->epoch;
        }
        return end(CKR_DEVICE_REMOVED);
    }
    CK_RV rv = scheduled(func);
    if (rv != CKR_OK) {
        return end(inject(rv, s));
    }
    *real_handle = s->real;
    pthread_mutex_unlock(&lock);
    return CKR_OK;
}

/* ---- the wrappers ---------------------------------------------------------------- */

/* A call on a session: checked by `enter`, forwarded with the real handle `h`. */
#define SESSION_CALL(name, params, args)                                                     \
    static CK_RV shim_##name params {                                                        \
        CK_SESSION_HANDLE h = 0;                                                             \
        CK_RV rv = enter(#name, session, &h);                                                \
        if (rv != CKR_OK) {                                                                  \
            return rv;                                                                       \
        }                                                                                    \
        pthread_rwlock_rdlock(&in_module);                                                   \
        rv = real->name args;                                                                \
        pthread_rwlock_unlock(&in_module);                                                   \
        return end_unlocked(rv);                                                             \
    }

typedef unsigned char *BYTES;
typedef unsigned long ULONG;
typedef CK_SESSION_HANDLE SH;
typedef CK_OBJECT_HANDLE OH;
typedef CK_MECHANISM_PTR MECH;
typedef CK_ATTRIBUTE_PTR ATTRS;

SESSION_CALL(C_GetSessionInfo, (SH session, CK_SESSION_INFO_PTR info), (h, info))
SESSION_CALL(C_GetOperationState, (SH session, BYTES st, ULONG *len), (h, st, len))
SESSION_CALL(C_SetOperationState, (SH session, BYTES st, ULONG len, OH e, OH a), (h, st, len, e, a))
SESSION_CALL(C_Logout, (SH session), (h))
SESSION_CALL(C_InitPIN, (SH session, BYTES pin, ULONG len), (h, pin, len))
SESSION_CALL(C_SetPIN, (SH session, BYTES o, ULONG ol, BYTES n, ULONG nl), (h, o, ol, n, nl))
SESSION_CALL(C_CreateObject, (SH session, ATTRS t, ULONG c, OH *o), (h, t, c, o))
SESSION_CALL(C_CopyObject, (SH session, OH o, ATTRS t, ULONG c, OH *n), (h, o, t, c, n))
SESSION_CALL(C_DestroyObject, (SH session, OH o), (h, o))
SESSION_CALL(C_GetObjectSize, (SH session, OH o, ULONG *size), (h, o, size))
SESSION_CALL(C_GetAttributeValue, (SH session, OH o, ATTRS t, ULONG c), (h, o, t, c))
SESSION_CALL(C_SetAttributeValue, (SH session, OH o, ATTRS t, ULONG c), (h, o, t, c))
SESSION_CALL(C_FindObjectsInit, (SH session, ATTRS t, ULONG c), (h, t, c))
SESSION_CALL(C_FindObjects, (SH session, OH *o, ULONG max, ULONG *n), (h, o, max, n))
SESSION_CALL(C_FindObjectsFinal, (SH session), (h))
SESSION_CALL(C_EncryptInit, (SH session, MECH m, OH k), (h, m, k))
SESSION_CALL(C_Encrypt, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_EncryptUpdate, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_EncryptFinal, (SH session, BYTES o, ULONG *ol), (h, o, ol))
SESSION_CALL(C_DecryptInit, (SH session, MECH m, OH k), (h, m, k))
SESSION_CALL(C_Decrypt, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_DecryptUpdate, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_DecryptFinal, (SH session, BYTES o, ULONG *ol), (h, o, ol))
SESSION_CALL(C_DigestInit, (SH session, MECH m), (h, m))
SESSION_CALL(C_Digest, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_DigestUpdate, (SH session, BYTES d, ULONG dl), (h, d, dl))
SESSION_CALL(C_DigestKey, (SH session, OH k), (h, k))
SESSION_CALL(C_DigestFinal, (SH session, BYTES o, ULONG *ol), (h, o, ol))
SESSION_CALL(C_SignInit, (SH session, MECH m, OH k), (h, m, k))
SESSION_CALL(C_Sign, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_SignUpdate, (SH session, BYTES d, ULONG dl), (h, d, dl))
SESSION_CALL(C_SignFinal, (SH session, BYTES o, ULONG *ol), (h, o, ol))
SESSION_CALL(C_SignRecoverInit, (SH session, MECH m, OH k), (h, m, k))
SESSION_CALL(C_SignRecover, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_VerifyInit, (SH session, MECH m, OH k), (h, m, k))
SESSION_CALL(C_Verify, (SH session, BYTES d, ULONG dl, BYTES s, ULONG sl), (h, d, dl, s, sl))
SESSION_CALL(C_VerifyUpdate, (SH session, BYTES d, ULONG dl), (h, d, dl))
SESSION_CALL(C_VerifyFinal, (SH session, BYTES s, ULONG sl), (h, s, sl))
SESSION_CALL(C_VerifyRecoverInit, (SH session, MECH m, OH k), (h, m, k))
SESSION_CALL(C_VerifyRecover, (SH session, BYTES s, ULONG sl, BYTES o, ULONG *ol), (h, s, sl, o, ol))
SESSION_CALL(C_DigestEncryptUpdate, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_DecryptDigestUpdate, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_SignEncryptUpdate, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_DecryptVerifyUpdate, (SH session, BYTES d, ULONG dl, BYTES o, ULONG *ol), (h, d, dl, o, ol))
SESSION_CALL(C_GenerateKey, (SH session, MECH m, ATTRS t, ULONG c, OH *k), (h, m, t, c, k))
SESSION_CALL(C_GenerateKeyPair, (SH session, MECH m, ATTRS pt, ULONG pc, ATTRS st, ULONG sc, OH *pk, OH *sk),
             (h, m, pt, pc, st, sc, pk, sk))
SESSION_CALL(C_WrapKey, (SH session, MECH m, OH w, OH k, BYTES o, ULONG *ol), (h, m, w, k, o, ol))
SESSION_CALL(C_UnwrapKey, (SH session, MECH m, OH u, BYTES d, ULONG dl, ATTRS t, ULONG c, OH *k),
             (h, m, u, d, dl, t, c, k))
SESSION_CALL(C_DeriveKey, (SH session, MECH m, OH b, ATTRS t, ULONG c, OH *k), (h, m, b, t, c, k))
SESSION_CALL(C_SeedRandom, (SH session, BYTES d, ULONG dl), (h, d, dl))
SESSION_CALL(C_GenerateRandom, (SH session, BYTES d, ULONG dl), (h, d, dl))
SESSION_CALL(C_GetFunctionStatus, (SH session), (h))
SESSION_CALL(C_CancelFunction, (SH session), (h))

/* C_Login also counts the PINs presented (a PIN given, not the protected path). */
static CK_RV shim_C_Login(SH session, CK_USER_TYPE user, BYTES pin, ULONG len) {
    CK_SESSION_HANDLE h = 0;
    pthread_mutex_lock(&lock);
    pins_presented += pin != NULL;
    pthread_mutex_unlock(&lock);
    CK_RV rv = enter("C_Login", session, &h);
    if (rv != CKR_OK) {
        return rv;
    }
    pthread_rwlock_rdlock(&in_module);
    rv = real->C_Login(h, user, pin, len);
    pthread_rwlock_unlock(&in_module);
    return end_unlocked(rv);
}

static CK_RV shim_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
                                SH *session) {
    begin("C_OpenSession");
    if (absent) {
        told_epoch = removals;
        return end(CKR_TOKEN_NOT_PRESENT);
    }
    CK_RV rv = scheduled("C_OpenSession");
    if (rv != CKR_OK) {
        return end(inject(rv, NULL));
    }
    if (session == NULL) {
        return end(CKR_ARGUMENTS_BAD);
    }
    CK_SESSION_HANDLE h = 0;
    rv = real->C_OpenSession(slot, flags, app, notify, &h);
    if (rv != CKR_OK) {
        return end(rv);
    }
    if (nsessions == capacity) {
        size_t more = capacity ? capacity * 2 : 64;
        struct session *grown = realloc(sessions, more * sizeof *grown);
        if (grown == NULL) {
            real->C_CloseSession(h);
            return end(CKR_HOST_MEMORY);
        }
        sessions = grown;
        capacity = more;
    }
    sessions[nsessions] = (struct session){LIVE, h, slot, 0, 0};
    *session = ++nsessions;
    return end(CKR_OK);
}

static CK_RV shim_C_CloseSession(SH ours) {
    begin("C_CloseSession");
    if (ours == 0 || ours > nsessions) {
        return end(CKR_SESSION_HANDLE_INVALID);
    }
    struct session *s = &sessions[ours - 1];
    switch (s->state) {
    case LIVE: {
        CK_RV rv = real->C_CloseSession(s->real);
        s->state = CLOSED;
        return end(rv);
    }
    case DEAD:
        close_dead++;
        s->state = CLOSED;
        return end(CKR_SESSION_HANDLE_INVALID);
    default:
        return end(CKR_SESSION_HANDLE_INVALID);
    }
}

static CK_RV shim_C_CloseAllSessions(CK_SLOT_ID slot) {
    begin("C_CloseAllSessions");
    for (size_t i = 0; i < nsessions; i++) {
        if (sessions[i].slot == slot && sessions[i].state != UNUSED) {
            sessions[i].state = CLOSED;
        }
    }
    return end(real->C_CloseAllSessions(slot));
}

static CK_RV shim_C_GetSlotList(unsigned char present, CK_SLOT_ID_PTR list, ULONG *count) {
    begin("C_GetSlotList");
    if (absent && present) {
        if (count == NULL) {
            return end(CKR_ARGUMENTS_BAD);
        }
        *count = 0;
        return end(CKR_OK);
    }
    return end(real->C_GetSlotList(present, list, count));
}

static CK_RV shim_C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
    begin("C_GetSlotInfo");
    CK_RV rv = real->C_GetSlotInfo(slot, info);
    if (rv == CKR_OK && absent && info != NULL) {
        info->flags &= ~CKF_TOKEN_PRESENT;
    }
    return end(rv);
}

/* Calls on a slot that need its token. */
#define TOKEN_CALL(name, params, args)                                                       \
    static CK_RV shim_##name params {                                                        \
        begin(#name);                                                                        \
        if (absent) {                                                                        \
            told_epoch = removals;                                                           \
            return end(CKR_TOKEN_NOT_PRESENT);                                               \
        }                                                                                    \
        CK_RV rv = scheduled(#name);                                                         \
        if (rv != CKR_OK) {                                                                  \
            return end(inject(rv, NULL));                                                    \
        }                                                                                    \
        pthread_mutex_unlock(&lock);                                                         \
        return end_unlocked(real->name args);                                                \
    }

TOKEN_CALL(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))
TOKEN_CALL(C_GetMechanismList, (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, ULONG *count),
           (slot, list, count))
TOKEN_CALL(C_GetMechanismInfo, (CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info),
           (slot, type, info))
TOKEN_CALL(C_InitToken, (CK_SLOT_ID slot, BYTES pin, ULONG len, BYTES label), (slot, pin, len, label))

static CK_RV shim_C_Initialize(void *args) {
    begin("C_Initialize");
    return end(real->C_Initialize(args));
}

static CK_RV shim_C_Finalize(void *reserved) {
    begin("C_Finalize");
    return end(real->C_Finalize(reserved));
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
    if (list == NULL) {
        return CKR_ARGUMENTS_BAD;
    }
    pthread_mutex_lock(&lock);
    if (real == NULL) {
        const char *path = getenv("CERTASSERT_SHIM_MODULE");
        void *module = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
        CK_C_GetFunctionList get =
            module ? (CK_C_GetFunctionList)dlsym(module, "C_GetFunctionList") : NULL;
        CK_FUNCTION_LIST_PTR functions = NULL;
        if (get == NULL || get(&functions) != CKR_OK || functions == NULL) {
            pthread_mutex_unlock(&lock);
            return CKR_GENERAL_ERROR;
        }
        shim = *functions;
        shim.C_GetFunctionList = C_GetFunctionList;
#define SET(name) shim.name = shim_##name
        SET(C_Initialize); SET(C_Finalize);
        SET(C_GetSlotList); SET(C_GetSlotInfo); SET(C_GetTokenInfo); SET(C_GetMechanismList);
        SET(C_GetMechanismInfo); SET(C_InitToken); SET(C_InitPIN); SET(C_SetPIN);
        SET(C_OpenSession); SET(C_CloseSession); SET(C_CloseAllSessions); SET(C_GetSessionInfo);
        SET(C_GetOperationState); SET(C_SetOperationState); SET(C_Login); SET(C_Logout);
        SET(C_CreateObject); SET(C_CopyObject); SET(C_DestroyObject); SET(C_GetObjectSize);
        SET(C_GetAttributeValue); SET(C_SetAttributeValue); SET(C_FindObjectsInit);
        SET(C_FindObjects); SET(C_FindObjectsFinal); SET(C_EncryptInit); SET(C_Encrypt);
        SET(C_EncryptUpdate); SET(C_EncryptFinal); SET(C_DecryptInit); SET(C_Decrypt);
        SET(C_DecryptUpdate); SET(C_DecryptFinal); SET(C_DigestInit); SET(C_Digest);
        SET(C_DigestUpdate); SET(C_DigestKey); SET(C_DigestFinal); SET(C_SignInit); SET(C_Sign);
        SET(C_SignUpdate); SET(C_SignFinal); SET(C_SignRecoverInit); SET(C_SignRecover);
        SET(C_VerifyInit); SET(C_Verify); SET(C_VerifyUpdate); SET(C_VerifyFinal);
        SET(C_VerifyRecoverInit); SET(C_VerifyRecover); SET(C_DigestEncryptUpdate);
        SET(C_DecryptDigestUpdate); SET(C_SignEncryptUpdate); SET(C_DecryptVerifyUpdate);
        SET(C_GenerateKey); SET(C_GenerateKeyPair); SET(C_WrapKey); SET(C_UnwrapKey);
        SET(C_DeriveKey); SET(C_SeedRandom); SET(C_GenerateRandom); SET(C_GetFunctionStatus);
        SET(C_CancelFunction);
#undef SET
        real = functions;
    }
    pthread_mutex_unlock(&lock);
    *list = &shim;
    return CKR_OK;
}
