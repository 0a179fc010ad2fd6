/* Thread-local last-error message and status names. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

#if defined(_MSC_VER)
#define LLMK_THREAD_LOCAL __declspec(thread)
#else
#define LLMK_THREAD_LOCAL _Thread_local
#endif

static LLMK_THREAD_LOCAL char last_error[1024];

llmk_status llmk_fail(llmk_status status, const char* format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return status;
}

const char* llmk_last_error(void) { return last_error; }

const char* llmk_status_string(llmk_status status) {
    static const char* const names[LLMK_STATUS_COUNT] = {
        "LLMK_STATUS_OK",
        "LLMK_STATUS_INVALID_ARGUMENT",
        "LLMK_STATUS_NULL_POINTER",
        "LLMK_STATUS_SHAPE_MISMATCH",
        "LLMK_STATUS_DTYPE_MISMATCH",
        "LLMK_STATUS_BAD_STRIDE",
        "LLMK_STATUS_OVERFLOW",
        "LLMK_STATUS_OUT_OF_MEMORY",
        "LLMK_STATUS_UNAVAILABLE",
        "LLMK_STATUS_DEVICE_ERROR",
        "LLMK_STATUS_UNSUPPORTED",
        "LLMK_STATUS_WRONG_DEVICE",
        "LLMK_STATUS_OUT_OF_RANGE",
        "LLMK_STATUS_INTERNAL",
    };
    if ((int)status < 0 || (int)status >= LLMK_STATUS_COUNT)
        return "unknown status";
    return names[status];
}

/* CMake defines LLMK_VERSION_STRING from project(VERSION), after checking that the header's LLMK_VERSION_* agree
 * (native/CMakeLists.txt); a build without CMake (the CUDA host emulators) spells the header's numbers. */
#ifndef LLMK_VERSION_STRING
#define LLMK_STRINGIFY_(x) #x
#define LLMK_STRINGIFY(x) LLMK_STRINGIFY_(x)
#define LLMK_VERSION_STRING \
    LLMK_STRINGIFY(LLMK_VERSION_MAJOR) "." LLMK_STRINGIFY(LLMK_VERSION_MINOR) "." LLMK_STRINGIFY(LLMK_VERSION_PATCH)
#endif

const char* llmk_version(void) {
#ifdef LLMK_WITH_CUDA
    return LLMK_VERSION_STRING "+cpu+cuda";
#else
    return LLMK_VERSION_STRING "+cpu";
#endif
}
