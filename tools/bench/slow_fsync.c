// slow_fsync.c — an LD_PRELOAD shim that adds SLOW_FSYNC_US microseconds (default 1000) after every fsync and
// fdatasync of the process: a disk whose cache flush costs that much more than this machine's. Used by
// tools/bench/write_path_slow_disk to show group commit where fsync, not CPU, is the cost. Benchmarks only.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void added_delay(void) {
    static long microseconds = -1;
    if (microseconds < 0) {
        const char *text = getenv("SLOW_FSYNC_US");
        microseconds = text ? atol(text) : 1000;
    }
    struct timespec pause = {microseconds / 1000000, (microseconds % 1000000) * 1000};
    while (nanosleep(&pause, &pause) != 0) {}
}

int fdatasync(int descriptor) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int result = real(descriptor);
    added_delay();
    return result;
}

int fsync(int descriptor) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int result = real(descriptor);
    added_delay();
    return result;
}
