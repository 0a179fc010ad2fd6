/* Loads libllmk_cuda with dlopen on a machine without a usable GPU and checks that the CUDA entry points
 * fail cleanly: LLMK_STATUS_UNAVAILABLE with a message naming the function, no crash, no output from the
 * library, and the CPU backend of the same library still working. Exit status 0 when all hold.
 * Usage: unavailable_check path/to/libllmk_cuda.so */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { OK = 0, NULL_POINTER = 2, UNAVAILABLE = 8 };

static int failures = 0;

static void expect(int status, int expected, const char* what, const char* message, const char* fn) {
    int ok = status == expected && (expected == OK || strstr(message, fn) == message);
    printf("%s %s: status %d (expected %d): %s\n", ok ? "PASS" : "FAIL", what, status, expected, message);
    failures += !ok;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s path/to/libllmk_cuda.so\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    int (*create_cuda)(int32_t, void**) = (int (*)(int32_t, void**))dlsym(lib, "llmk_context_create_cuda");
    int (*create_cpu)(int32_t, void**) = (int (*)(int32_t, void**))dlsym(lib, "llmk_context_create_cpu");
    int (*destroy)(void*) = (int (*)(void*))dlsym(lib, "llmk_context_destroy");
    int (*count)(int32_t*) = (int (*)(int32_t*))dlsym(lib, "llmk_cuda_device_count");
    int (*describe)(int32_t, char*, size_t) = (int (*)(int32_t, char*, size_t))dlsym(lib, "llmk_cuda_device_describe");
    const char* (*last_error)(void) = (const char* (*)(void))dlsym(lib, "llmk_last_error");
    const char* (*version)(void) = (const char* (*)(void))dlsym(lib, "llmk_version");
    if (!create_cuda || !create_cpu || !destroy || !count || !describe || !last_error || !version) {
        printf("FAIL dlsym: an entry point is missing\n");
        return 1;
    }
    printf("library %s\n", version());
    if (!strstr(version(), "+cuda")) {
        printf("FAIL version: %s does not name the cuda backend\n", version());
        failures++;
    }

    void* ctx = (void*)1;
    int status = create_cuda(0, &ctx);
    expect(status, UNAVAILABLE, "llmk_context_create_cuda(0)", last_error(), "llmk_context_create_cuda");
    if (ctx != NULL) {
        printf("FAIL llmk_context_create_cuda left out_context non-NULL\n");
        failures++;
    }
    int32_t devices = 99;
    status = count(&devices);
    expect(status, UNAVAILABLE, "llmk_cuda_device_count", last_error(), "llmk_cuda_device_count");
    if (devices != 0) {
        printf("FAIL llmk_cuda_device_count reported %d devices\n", (int)devices);
        failures++;
    }
    expect(count(NULL), NULL_POINTER, "llmk_cuda_device_count(NULL)", last_error(), "llmk_cuda_device_count");
    char buffer[128] = "untouched";
    status = describe(0, buffer, sizeof buffer);
    expect(status, UNAVAILABLE, "llmk_cuda_device_describe(0)", last_error(), "llmk_cuda_device_describe");
    if (buffer[0] != '\0') {
        printf("FAIL llmk_cuda_device_describe left the buffer as '%s'\n", buffer);
        failures++;
    }
    status = create_cpu(1, &ctx);
    expect(status, OK, "llmk_context_create_cpu(1)", "", "");
    if (status == OK)
        destroy(ctx);
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
