// SHA-256 of two equal-length messages at once, with the x86 SHA extensions (SHA-NI).
//
// The four-round step is the usual one (Intel's SHA extensions paper; the Linux kernel's sha256_ni_asm): state kept as
// ABEF/CDGH, sha256rnds2 twice per four rounds, sha256msg1/msg2 for the message schedule. The two messages' steps are
// written one after the other so the compiler can issue one while the other waits for its previous result. Compiled
// for the SHA extensions through a target attribute and chosen at run time, so the package builds with SwiftPM's
// default flags.

#include "sha256x2.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define PIPELINE_SHA256X2_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t initial_state[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#if PIPELINE_SHA256X2_X86

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

// Hashes `blocks` 64-byte blocks of each message into its state.
SHA_TARGET static void compress_pair(
    uint32_t first_state[8], uint32_t second_state[8], const unsigned char *first, const unsigned char *second,
    size_t blocks) {
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef1, cdgh1, abef2, cdgh2;
    load_state(first_state, &abef1, &cdgh1);
    load_state(second_state, &abef2, &cdgh2);
    for (; blocks > 0; blocks--, first += 64, second += 64) {
        const __m128i saved_abef1 = abef1, saved_cdgh1 = cdgh1, saved_abef2 = abef2, saved_cdgh2 = cdgh2;
        __m128i w1[16], w2[16];
        for (int step = 0; step < 16; step++) {
            if (step < 4) {
                w1[step] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(first + 16 * step)), byte_swap);
                w2[step] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(second + 16 * step)), byte_swap);
            } else {
                // W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four words at a time.
                w1[step] = _mm_sha256msg2_epu32(
                    _mm_add_epi32(_mm_sha256msg1_epu32(w1[step - 4], w1[step - 3]),
                                  _mm_alignr_epi8(w1[step - 1], w1[step - 2], 4)),
                    w1[step - 1]);
                w2[step] = _mm_sha256msg2_epu32(
                    _mm_add_epi32(_mm_sha256msg1_epu32(w2[step - 4], w2[step - 3]),
                                  _mm_alignr_epi8(w2[step - 1], w2[step - 2], 4)),
                    w2[step - 1]);
            }
            const __m128i k = _mm_loadu_si128((const __m128i *)&round_constants[4 * step]);
            const __m128i m1 = _mm_add_epi32(w1[step], k), m2 = _mm_add_epi32(w2[step], k);
            cdgh1 = _mm_sha256rnds2_epu32(cdgh1, abef1, m1);
            cdgh2 = _mm_sha256rnds2_epu32(cdgh2, abef2, m2);
            abef1 = _mm_sha256rnds2_epu32(abef1, cdgh1, _mm_shuffle_epi32(m1, 0x0E));
            abef2 = _mm_sha256rnds2_epu32(abef2, cdgh2, _mm_shuffle_epi32(m2, 0x0E));
        }
        abef1 = _mm_add_epi32(abef1, saved_abef1);
        cdgh1 = _mm_add_epi32(cdgh1, saved_cdgh1);
        abef2 = _mm_add_epi32(abef2, saved_abef2);
        cdgh2 = _mm_add_epi32(cdgh2, saved_cdgh2);
    }
    store_state(first_state, abef1, cdgh1);
    store_state(second_state, abef2, cdgh2);
}

int pipeline_sha256x2_available(void) {
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

static void compress_pair(
    uint32_t first_state[8], uint32_t second_state[8], const unsigned char *first, const unsigned char *second,
    size_t blocks) {
    (void)first_state, (void)second_state, (void)first, (void)second, (void)blocks;
    __builtin_trap();  // callers check pipeline_sha256x2_available() first
}

int pipeline_sha256x2_available(void) { return 0; }

#endif

void pipeline_sha256x2_init(pipeline_sha256x2 *context) {
    memcpy(context->state[0], initial_state, sizeof initial_state);
    memcpy(context->state[1], initial_state, sizeof initial_state);
    context->buffered = 0;
    context->length = 0;
}

void pipeline_sha256x2_update(
    pipeline_sha256x2 *context, const void *first, const void *second, size_t length) {
    if (length == 0) {
        return;
    }
    const unsigned char *a = first, *b = second;
    context->length += length;
    if (context->buffered > 0) {
        size_t take = 64 - context->buffered;
        if (take > length) {
            take = length;
        }
        memcpy(context->buffer[0] + context->buffered, a, take);
        memcpy(context->buffer[1] + context->buffered, b, take);
        context->buffered += take;
        a += take, b += take, length -= take;
        if (context->buffered < 64) {
            return;
        }
        compress_pair(context->state[0], context->state[1], context->buffer[0], context->buffer[1], 1);
        context->buffered = 0;
    }
    const size_t blocks = length / 64;
    if (blocks > 0) {
        compress_pair(context->state[0], context->state[1], a, b, blocks);
        a += 64 * blocks, b += 64 * blocks, length -= 64 * blocks;
    }
    if (length > 0) {
        memcpy(context->buffer[0], a, length);
        memcpy(context->buffer[1], b, length);
        context->buffered = length;
    }
}

void pipeline_sha256x2_final(pipeline_sha256x2 *context, unsigned char first[32], unsigned char second[32]) {
    // Padding: 0x80, zeros up to 56 mod 64, then the message length in bits, big-endian. The same for both.
    unsigned char padding[72] = {0x80};
    const uint64_t bits = context->length * 8;
    const size_t zeros = (context->buffered < 56 ? 56 : 120) - context->buffered;
    for (int i = 0; i < 8; i++) {
        padding[zeros + i] = (unsigned char)(bits >> (56 - 8 * i));
    }
    pipeline_sha256x2_update(context, padding, padding, zeros + 8);
    unsigned char *out[2] = {first, second};
    for (int message = 0; message < 2; message++) {
        for (int word = 0; word < 8; word++) {
            const uint32_t value = context->state[message][word];
            out[message][4 * word] = (unsigned char)(value >> 24);
            out[message][4 * word + 1] = (unsigned char)(value >> 16);
            out[message][4 * word + 2] = (unsigned char)(value >> 8);
            out[message][4 * word + 3] = (unsigned char)value;
        }
    }
}
