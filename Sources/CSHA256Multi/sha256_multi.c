// SHA-256 of up to four equal-length messages at once, with the x86 SHA extensions (SHA-NI).
//
// The four-round step is the usual one (Intel's SHA extensions paper; the Linux kernel's sha256_ni_asm): state kept as
// ABEF/CDGH, sha256rnds2 twice per four rounds, sha256msg1/msg2 for the message schedule. The messages' steps are
// written one after the other so the CPU can issue one while another waits for its previous result. Compiled
// for the SHA extensions through a target attribute and chosen at run time, so the package builds with SwiftPM's
// default flags.

#include "sha256_multi.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define PIPELINE_SHA256_MULTI_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t initial_state[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#if PIPELINE_SHA256_MULTI_X86

static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define SHA_TARGET __attribute__((target("sha,ssse3,sse4.1")))

// state[0..7] = a..h  <->  (ABEF, CDGH) as the sha256rnds2 instruction wants them.
SHA_TARGET static inline void load_state(const uint32_t state[8], __m128i *abef, __m128i *cdgh) {
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);
    *abef = _mm_alignr_epi8(dcba, efgh, 8);
    *cdgh = _mm_blend_epi16(efgh, dcba, 0xF0);
}

SHA_TARGET static inline void store_state(uint32_t state[8], __m128i abef, __m128i cdgh) {
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

// Hashes `blocks` 64-byte blocks of each of LANES messages into its state. All lanes' first rnds2 of a four-round
// step, then all their second: each lane's instruction waits on its own previous result, the others fill the wait.
#define DEFINE_COMPRESS(LANES)                                                                                       \
    SHA_TARGET static void compress_##LANES(                                                                        \
        uint32_t state[][8], const unsigned char *const *data, size_t blocks) {                                     \
        const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);                    \
        __m128i abef[LANES], cdgh[LANES];                                                                           \
        for (int lane = 0; lane < LANES; lane++) {                                                                  \
            load_state(state[lane], &abef[lane], &cdgh[lane]);                                                      \
        }                                                                                                           \
        for (size_t block = 0; block < blocks; block++) {                                                           \
            __m128i saved_abef[LANES], saved_cdgh[LANES], w[LANES][16];                                             \
            for (int lane = 0; lane < LANES; lane++) {                                                              \
                saved_abef[lane] = abef[lane];                                                                      \
                saved_cdgh[lane] = cdgh[lane];                                                                      \
            }                                                                                                       \
            for (int step = 0; step < 16; step++) {                                                                 \
                const __m128i k = _mm_loadu_si128((const __m128i *)&round_constants[4 * step]);                     \
                __m128i message[LANES];                                                                             \
                for (int lane = 0; lane < LANES; lane++) {                                                          \
                    __m128i *x = w[lane];                                                                           \
                    if (step < 4) {                                                                                 \
                        x[step] = _mm_shuffle_epi8(                                                                 \
                            _mm_loadu_si128((const __m128i *)(data[lane] + 64 * block + 16 * step)), byte_swap);    \
                    } else { /* W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four words at a time */        \
                        x[step] = _mm_sha256msg2_epu32(                                                             \
                            _mm_add_epi32(_mm_sha256msg1_epu32(x[step - 4], x[step - 3]),                           \
                                          _mm_alignr_epi8(x[step - 1], x[step - 2], 4)),                            \
                            x[step - 1]);                                                                           \
                    }                                                                                               \
                    message[lane] = _mm_add_epi32(x[step], k);                                                      \
                    cdgh[lane] = _mm_sha256rnds2_epu32(cdgh[lane], abef[lane], message[lane]);                      \
                }                                                                                                   \
                for (int lane = 0; lane < LANES; lane++) {                                                          \
                    abef[lane] = _mm_sha256rnds2_epu32(abef[lane], cdgh[lane], _mm_shuffle_epi32(message[lane], 0x0E)); \
                }                                                                                                   \
            }                                                                                                       \
            for (int lane = 0; lane < LANES; lane++) {                                                              \
                abef[lane] = _mm_add_epi32(abef[lane], saved_abef[lane]);                                           \
                cdgh[lane] = _mm_add_epi32(cdgh[lane], saved_cdgh[lane]);                                           \
            }                                                                                                       \
        }                                                                                                           \
        for (int lane = 0; lane < LANES; lane++) {                                                                  \
            store_state(state[lane], abef[lane], cdgh[lane]);                                                       \
        }                                                                                                           \
    }

DEFINE_COMPRESS(1)
DEFINE_COMPRESS(2)
DEFINE_COMPRESS(3)
DEFINE_COMPRESS(4)

static void compress(uint32_t state[][8], const unsigned char *const *data, int lanes, size_t blocks) {
    switch (lanes) {
    case 1: compress_1(state, data, blocks); break;
    case 2: compress_2(state, data, blocks); break;
    case 3: compress_3(state, data, blocks); break;
    default: compress_4(state, data, blocks); break;
    }
}

int pipeline_sha256_multi_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    const int ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    const int sha = (ebx >> 29) & 1;
    return ssse3 && sse41 && sha;
}

#else

static void compress(uint32_t state[][8], const unsigned char *const *data, int lanes, size_t blocks) {
    (void)state, (void)data, (void)lanes, (void)blocks;
    __builtin_trap();  // callers check pipeline_sha256_multi_available() first
}

int pipeline_sha256_multi_available(void) { return 0; }

#endif

void pipeline_sha256_multi_init(pipeline_sha256_multi *context, int lanes) {
    context->lanes = lanes < 1 ? 1 : lanes > PIPELINE_SHA256_MULTI_LANES ? PIPELINE_SHA256_MULTI_LANES : lanes;
    for (int lane = 0; lane < PIPELINE_SHA256_MULTI_LANES; lane++) {
        memcpy(context->state[lane], initial_state, sizeof initial_state);
    }
    context->buffered = 0;
    context->length = 0;
}

void pipeline_sha256_multi_update(pipeline_sha256_multi *context, const void *const *data, size_t length) {
    if (length == 0) {
        return;
    }
    const int lanes = context->lanes;
    const unsigned char *input[PIPELINE_SHA256_MULTI_LANES];
    for (int lane = 0; lane < lanes; lane++) {
        input[lane] = data[lane];
    }
    context->length += length;
    if (context->buffered > 0) {
        size_t take = 64 - context->buffered;
        if (take > length) {
            take = length;
        }
        for (int lane = 0; lane < lanes; lane++) {
            memcpy(context->buffer[lane] + context->buffered, input[lane], take);
            input[lane] += take;
        }
        context->buffered += take;
        length -= take;
        if (context->buffered < 64) {
            return;
        }
        const unsigned char *buffers[PIPELINE_SHA256_MULTI_LANES];
        for (int lane = 0; lane < lanes; lane++) {
            buffers[lane] = context->buffer[lane];
        }
        compress(context->state, buffers, lanes, 1);
        context->buffered = 0;
    }
    const size_t blocks = length / 64;
    if (blocks > 0) {
        compress(context->state, input, lanes, blocks);
        for (int lane = 0; lane < lanes; lane++) {
            input[lane] += 64 * blocks;
        }
        length -= 64 * blocks;
    }
    if (length > 0) {
        for (int lane = 0; lane < lanes; lane++) {
            memcpy(context->buffer[lane], input[lane], length);
        }
        context->buffered = length;
    }
}

void pipeline_sha256_multi_final(pipeline_sha256_multi *context, unsigned char *digests) {
    // Padding: 0x80, zeros up to 56 mod 64, then the message length in bits, big-endian. The same for every lane.
    unsigned char padding[72] = {0x80};
    const uint64_t bits = context->length * 8;
    const size_t zeros = (context->buffered < 56 ? 56 : 120) - context->buffered;
    for (int i = 0; i < 8; i++) {
        padding[zeros + i] = (unsigned char)(bits >> (56 - 8 * i));
    }
    const void *pads[PIPELINE_SHA256_MULTI_LANES] = {padding, padding, padding, padding};
    pipeline_sha256_multi_update(context, pads, zeros + 8);
    for (int lane = 0; lane < context->lanes; lane++) {
        for (int word = 0; word < 8; word++) {
            const uint32_t value = context->state[lane][word];
            unsigned char *out = digests + 32 * lane + 4 * word;
            out[0] = (unsigned char)(value >> 24);
            out[1] = (unsigned char)(value >> 16);
            out[2] = (unsigned char)(value >> 8);
            out[3] = (unsigned char)value;
        }
    }
}
