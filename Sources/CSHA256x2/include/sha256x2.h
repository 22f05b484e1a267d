#ifndef PIPELINE_SHA256X2_H
#define PIPELINE_SHA256X2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Two SHA-256 digests computed side by side, over two messages of the same length.
///
/// One message's rounds are a chain, each depending on the one before; the CPU's SHA instructions take longer to
/// give their result than to start the next one. Interleaving two independent messages fills those gaps: on the
/// machines measured, ~1.25× the bytes per second of OpenSSL hashing one message at a time. Used where two equal
/// pieces must be hashed anyway (two parts of a multipart upload).
///
/// Only where `pipeline_sha256x2_available()` says so (x86-64 with the SHA extensions); callers hash the two messages
/// one after the other otherwise.
typedef struct pipeline_sha256x2 {
    uint32_t state[2][8];
    unsigned char buffer[2][64];
    /// Bytes waiting in each buffer (the same for both).
    size_t buffered;
    /// Bytes fed to each message so far.
    uint64_t length;
} pipeline_sha256x2;

/// Whether this CPU can run the paired hashing in this process: 1 if so, 0 if not.
int pipeline_sha256x2_available(void);

/// Starts two empty messages.
void pipeline_sha256x2_init(pipeline_sha256x2 *context);

/// Feeds `length` bytes to each message: `first` to the first, `second` to the second. Either pointer may be NULL
/// only when `length` is 0. Requires `pipeline_sha256x2_available()`.
void pipeline_sha256x2_update(
    pipeline_sha256x2 *context, const void *first, const void *second, size_t length);

/// Writes both digests (32 bytes each). The context is spent afterwards: initialise it again to reuse it.
void pipeline_sha256x2_final(pipeline_sha256x2 *context, unsigned char first[32], unsigned char second[32]);

#ifdef __cplusplus
}
#endif

#endif
