#ifndef PIPELINE_CRC32C_H
#define PIPELINE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

// Nullability qualifiers let Swift import `data` as `UnsafeRawPointer?`, so an empty buffer's nil base address can be
// passed straight through.
#if !defined(__clang__)
#define _Nullable
#endif

#ifdef __cplusplus
extern "C" {
#endif

/// Extends a CRC-32C (Castagnoli) with `length` more bytes.
///
/// Pre- and post-inversion happen inside, as with zlib's crc32: pass 0 to start, and the result is already final, so
/// `update(update(0, a), b) == update(0, a ++ b)`. `data` may be NULL only when `length` is 0. Uses the SSE4.2 crc32
/// instruction when the CPU has it, the portable tables otherwise. Thread-safe.
uint32_t pipeline_crc32c_update(uint32_t crc, const void *_Nullable data, size_t length);

/// The same function as `pipeline_crc32c_update`, always computed with the portable slicing-by-8 tables.
///
/// Exists so tests can check the hardware path against an independent implementation on the same machine.
uint32_t pipeline_crc32c_update_portable(uint32_t crc, const void *_Nullable data, size_t length);

/// The CRC-32C of the concatenation A ++ B from `crc1` = CRC-32C(A), `crc2` = CRC-32C(B) and `length2` = |B|, in
/// O(log length2) without the data (zlib's crc32_combine over the Castagnoli polynomial). Thread-safe.
uint32_t pipeline_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t length2);

/// Whether `pipeline_crc32c_update` uses the CPU's crc32 instruction in this process: 1 if so, 0 if not.
int pipeline_crc32c_hardware_available(void);

#ifdef __cplusplus
}
#endif

#endif
