/* CRC-32 as zlib's crc32() computes it (the IEEE polynomial, reflected),
 * faster on x86-64 with carry-less multiplication: the buffer is folded
 * 64 bytes at a time into four 128-bit lanes, the lanes into one, and that
 * is reduced to 32 bits (Barrett reduction).  The constants are powers of x
 * modulo the CRC polynomial (x^(4*128+/-32), x^(128+/-32), x^64) and the
 * Barrett constant floor(x^64 / P), all bit-reflected.  Short buffers and
 * the tail shorter than 16 bytes (record headers, block headers: most calls)
 * go through tables eight bytes at a time ("slicing by 8"), which saves
 * zlib's per-call setup; other processors go to zlib.  The tables are filled
 * by fc_crc32_init(), called once when the module is imported.  The result
 * is the same as zlib's for every input: the tests compare the two. */
#ifndef FCHANNEL_CRC32_H
#define FCHANNEL_CRC32_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

static uint32_t fc_crc_table[8][256];

static void fc_crc32_init(void)
{
    uint32_t c;
    int i, k;
    for (i = 0; i < 256; i++) {
        c = (uint32_t)i;
        for (k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        fc_crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++) {
        c = fc_crc_table[0][i];
        for (k = 1; k < 8; k++) {
            c = fc_crc_table[0][c & 0xFF] ^ (c >> 8);
            fc_crc_table[k][i] = c;
        }
    }
}

static inline uint32_t fc_crc32_small(uint32_t crc, const uint8_t *p, size_t len)
{
    uint32_t one, two;
    crc = ~crc;
    while (len >= 8) {
        one = crc ^ ((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
                     | ((uint32_t)p[3] << 24));
        two = (uint32_t)p[4] | ((uint32_t)p[5] << 8) | ((uint32_t)p[6] << 16)
              | ((uint32_t)p[7] << 24);
        crc = fc_crc_table[7][one & 0xFF] ^ fc_crc_table[6][(one >> 8) & 0xFF]
              ^ fc_crc_table[5][(one >> 16) & 0xFF] ^ fc_crc_table[4][one >> 24]
              ^ fc_crc_table[3][two & 0xFF] ^ fc_crc_table[2][(two >> 8) & 0xFF]
              ^ fc_crc_table[1][(two >> 16) & 0xFF] ^ fc_crc_table[0][two >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = fc_crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("pclmul,sse4.1")))
static uint32_t fc_crc32_fold(uint32_t crc, const uint8_t *p, size_t len)
{
    /* len >= 64 and a multiple of 16 */
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 0));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    __m128i t;
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)~crc));
    p += 64;
    len -= 64;
#define FC_FOLD(x, k, next) do { t = _mm_clmulepi64_si128(x, k, 0x00); \
        x = _mm_clmulepi64_si128(x, k, 0x11); x = _mm_xor_si128(_mm_xor_si128(x, t), next); } while (0)
    while (len >= 64) {
        FC_FOLD(x1, k1k2, _mm_loadu_si128((const __m128i *)(p + 0)));
        FC_FOLD(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        FC_FOLD(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        FC_FOLD(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        len -= 64;
    }
    FC_FOLD(x1, k3k4, x2);
    FC_FOLD(x1, k3k4, x3);
    FC_FOLD(x1, k3k4, x4);
    while (len >= 16) {
        FC_FOLD(x1, k3k4, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }
#undef FC_FOLD
    t = _mm_clmulepi64_si128(x1, k3k4, 0x10);                 /* 128 -> 64 bits */
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), t);
    t = _mm_srli_si128(x1, 4);                                 /* 64 -> 32 bits */
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00), t);
    t = x1;                                                    /* Barrett reduction */
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x10);
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x00);
    x1 = _mm_xor_si128(x1, t);
    return ~(uint32_t)_mm_extract_epi32(x1, 1);
}

static int fc_crc32_folds = -1;   /* does this CPU have PCLMULQDQ and SSE4.1? */

static inline uint32_t fc_crc32(uint32_t crc, const uint8_t *p, size_t len)
{
    if (len >= 64) {
        if (fc_crc32_folds < 0) {
            unsigned a, b, c, d;
            fc_crc32_folds = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL) && (c & bit_SSE4_1);
        }
        if (fc_crc32_folds) {
            size_t n = len & ~(size_t)15;
            crc = fc_crc32_fold(crc, p, n);
            p += n;
            len -= n;
        } else {
            return (uint32_t)crc32(crc, p, (unsigned int)len);
        }
    }
    return fc_crc32_small(crc, p, len);
}
#else
static inline uint32_t fc_crc32(uint32_t crc, const uint8_t *p, size_t len)
{
    if (len < 64)
        return fc_crc32_small(crc, p, len);
    return (uint32_t)crc32(crc, p, (unsigned int)len);
}
#endif

#endif
