/*
 * Test-only PKCS#11 shim: forwards every call to a real module (SoftHSM2 in the tests)
 * and, while a flag file exists, makes C_SignInit and C_Sign hang (they sleep until the
 * file is removed), as a token waiting for a touch or a wedged device would. It exports
 * only C_GetFunctionList: the caller gets the real module's function list with those two
 * entries replaced.
 *
 *   CERTASSERT_SHIM_MODULE     the real module (required)
 *   CERTASSERT_SHIM_HANG_FILE  the flag file (optional; no file, no hang)
 *
 * Built by the tests at run time (tests/pkcs11/library.rs):
 *   gcc -shared -fPIC -I/usr/include/p11-kit-1 -o hang.so hang.c -ldl
 *
 * It may grow into the fault-injection proxy issue 14 asks for (scheduled
 * CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID, slow calls).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR real;

static void hang_while_flagged(void) {
    const char *flag = getenv("CERTASSERT_SHIM_HANG_FILE");
    while (flag != NULL && access(flag, F_OK) == 0) {
        usleep(20000);
    }
}

static CK_RV shim_sign_init(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                            CK_OBJECT_HANDLE key) {
    hang_while_flagged();
    return real->C_SignInit(session, mechanism, key);
}

static CK_RV shim_sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                       CK_BYTE_PTR signature, CK_ULONG_PTR signature_len) {
    hang_while_flagged();
    return real->C_Sign(session, data, data_len, signature, signature_len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
    if (list == NULL) {
        return CKR_ARGUMENTS_BAD;
    }
    if (real == NULL) {
        const char *path = getenv("CERTASSERT_SHIM_MODULE");
        void *module = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
        CK_C_GetFunctionList get =
            module ? (CK_C_GetFunctionList)dlsym(module, "C_GetFunctionList") : NULL;
        CK_FUNCTION_LIST_PTR functions = NULL;
        if (get == NULL || get(&functions) != CKR_OK || functions == NULL) {
            return CKR_GENERAL_ERROR;
        }
        shim = *functions;
        shim.C_GetFunctionList = C_GetFunctionList;
        shim.C_SignInit = shim_sign_init;
        shim.C_Sign = shim_sign;
        real = functions;
    }
    *list = &shim;
    return CKR_OK;
}
