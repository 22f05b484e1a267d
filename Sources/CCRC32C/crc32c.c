// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78.
//
// Two implementations of the raw register update (no inversion): the SSE4.2 crc32 instruction, chosen at run time so
// the package builds with SwiftPM's default flags, and slicing-by-8 tables for every other CPU. The public functions
// add the ~crc pre/post inversion on top.

#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define PIPELINE_CRC32C_X86 1
#include <nmmintrin.h>
#endif

#define POLY 0x82f63b78u

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static uint32_t slicing_table[8][256];

static inline uint32_t load32le(const unsigned char *p) {
    // Byte-wise so the portable path is correct on big-endian CPUs too; compilers fuse it into one load on x86/arm.
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Multiplies two polynomials modulo POLY in the reflected representation, where bit 31 is x^0. `a` must be non-zero.
// Feeding n zero bytes to a raw CRC register r yields r * x^(8n) mod POLY, which is how independent streams combine.
static uint32_t multiply_mod_poly(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (uint32_t m = 1u << 31;; m >>= 1) {
        if (a & m) {
            product ^= b;
            if ((a & (m - 1)) == 0) {
                break;
            }
        }
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return product;
}

// x^(8n) mod POLY: the operator that advances a raw CRC register over n zero bytes.
static uint32_t x_to_the_8n(uint64_t n) {
    uint32_t result = 1u << 31;  // x^0
    uint32_t square = 1u << 23;  // x^8
    while (n) {
        if (n & 1) {
            result = multiply_mod_poly(square, result);
        }
        square = multiply_mod_poly(square, square);
        n >>= 1;
    }
    return result;
}

// Fills table[k][byte] with (byte << 8k) * op, so a 32-bit register is multiplied by op with four lookups.
static void build_shift_table(uint32_t table[4][256], uint32_t op) {
    for (int k = 0; k < 4; k++) {
        for (uint32_t byte = 0; byte < 256; byte++) {
            table[k][byte] = multiply_mod_poly(op, byte << (8 * k));
        }
    }
}

static inline uint32_t apply_shift_table(const uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}

static uint32_t portable_raw(uint32_t crc, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        crc = slicing_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo = crc ^ load32le(p);
        uint32_t hi = load32le(p + 4);
        crc = slicing_table[7][lo & 0xff] ^ slicing_table[6][(lo >> 8) & 0xff] ^ slicing_table[5][(lo >> 16) & 0xff]
            ^ slicing_table[4][lo >> 24] ^ slicing_table[3][hi & 0xff] ^ slicing_table[2][(hi >> 8) & 0xff]
            ^ slicing_table[1][(hi >> 16) & 0xff] ^ slicing_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = slicing_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if PIPELINE_CRC32C_X86

// The crc32 instruction has a latency of three cycles but a throughput of one per cycle, so three independent streams
// over adjacent blocks run about three times faster than one; the block CRCs are then merged with the shift tables.
// The long blocks amortise the merge on big buffers, the short ones keep the speed-up for buffers of a few KiB.
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static int hardware_available;
static uint32_t long_shift_table[4][256];
static uint32_t short_shift_table[4][256];

static inline uint64_t load64(const unsigned char *p) {
    uint64_t word;
    memcpy(&word, p, sizeof word);
    return word;
}

__attribute__((target("sse4.2")))
static uint32_t hardware_raw(uint32_t crc32, const unsigned char *p, size_t n) {
    uint64_t crc = crc32;
    while (n && ((uintptr_t)p & 7)) {
        crc = _mm_crc32_u8((uint32_t)crc, *p++);
        n--;
    }
    while (n >= 3 * LONG_BLOCK) {
        uint64_t crc1 = 0, crc2 = 0;
        const unsigned char *end = p + LONG_BLOCK;
        do {
            crc = _mm_crc32_u64(crc, load64(p));
            crc1 = _mm_crc32_u64(crc1, load64(p + LONG_BLOCK));
            crc2 = _mm_crc32_u64(crc2, load64(p + 2 * LONG_BLOCK));
            p += 8;
        } while (p < end);
        crc = apply_shift_table(long_shift_table, (uint32_t)crc) ^ (uint32_t)crc1;
        crc = apply_shift_table(long_shift_table, (uint32_t)crc) ^ (uint32_t)crc2;
        p += 2 * LONG_BLOCK;
        n -= 3 * LONG_BLOCK;
    }
    while (n >= 3 * SHORT_BLOCK) {
        uint64_t crc1 = 0, crc2 = 0;
        const unsigned char *end = p + SHORT_BLOCK;
        do {
            crc = _mm_crc32_u64(crc, load64(p));
            crc1 = _mm_crc32_u64(crc1, load64(p + SHORT_BLOCK));
            crc2 = _mm_crc32_u64(crc2, load64(p + 2 * SHORT_BLOCK));
            p += 8;
        } while (p < end);
        crc = apply_shift_table(short_shift_table, (uint32_t)crc) ^ (uint32_t)crc1;
        crc = apply_shift_table(short_shift_table, (uint32_t)crc) ^ (uint32_t)crc2;
        p += 2 * SHORT_BLOCK;
        n -= 3 * SHORT_BLOCK;
    }
    while (n >= 8) {
        crc = _mm_crc32_u64(crc, load64(p));
        p += 8;
        n -= 8;
    }
    while (n) {
        crc = _mm_crc32_u8((uint32_t)crc, *p++);
        n--;
    }
    return (uint32_t)crc;
}

#endif

static void build_tables(void) {
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) {
            crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
        }
        slicing_table[0][byte] = crc;
    }
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = slicing_table[0][byte];
        for (int k = 1; k < 8; k++) {
            crc = slicing_table[0][crc & 0xff] ^ (crc >> 8);
            slicing_table[k][byte] = crc;
        }
    }
#if PIPELINE_CRC32C_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        build_shift_table(long_shift_table, x_to_the_8n(LONG_BLOCK));
        build_shift_table(short_shift_table, x_to_the_8n(SHORT_BLOCK));
        hardware_available = 1;
    }
#endif
}

uint32_t pipeline_crc32c_update(uint32_t crc, const void *data, size_t length) {
    if (length == 0) {
        return crc;
    }
    pthread_once(&tables_once, build_tables);
#if PIPELINE_CRC32C_X86
    if (hardware_available) {
        return ~hardware_raw(~crc, data, length);
    }
#endif
    return ~portable_raw(~crc, data, length);
}

uint32_t pipeline_crc32c_update_portable(uint32_t crc, const void *data, size_t length) {
    if (length == 0) {
        return crc;
    }
    pthread_once(&tables_once, build_tables);
    return ~portable_raw(~crc, data, length);
}

uint32_t pipeline_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t length2) {
    // With the pre/post inversion the register's affine terms cancel (zlib's crc32_combine): the CRC of A ++ B is
    // crc(A) advanced over |B| zero bytes, xor crc(B). x^(8n) is never zero, as multiply_mod_poly's first operand
    // must be.
    return multiply_mod_poly(x_to_the_8n(length2), crc1) ^ crc2;
}

int pipeline_crc32c_hardware_available(void) {
    pthread_once(&tables_once, build_tables);
#if PIPELINE_CRC32C_X86
    return hardware_available;
#else
    return 0;
#endif
}
