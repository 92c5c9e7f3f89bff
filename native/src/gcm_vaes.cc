// AES-256-GCM with VAES and VPCLMULQDQ (gcm_vaes.h). CTR mode on four
// 128-bit lanes per register, sixteen blocks a step; GHASH of those sixteen
// blocks with one reduction (aggregated, each block times its power of H),
// after Gueron and Kounavis, "Intel Carry-Less Multiplication Instruction
// and its Usage for Computing the GCM Mode" (rev. 2.02): blocks are byte-
// reversed, multiplied, the 256-bit product shifted left by one bit, then
// reduced modulo x^128 + x^7 + x^2 + x + 1.
#include "gcm_vaes.h"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_epi32() through, which
// -Wall reports as uninitialized at every call (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define VRIFT_GCM_VAES 1
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmul,sse4.1,ssse3")))
#endif

namespace vrift {

#ifdef VRIFT_GCM_VAES

bool GcmVaesAvailable() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("vaes") && __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("aes") &&
         __builtin_cpu_supports("pclmul");
}

namespace {

TARGET inline __m128i Bswap(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

// The 256-bit product's halves, not yet reduced: lo, hi and the middle terms.
struct Wide {
  __m128i lo, mid, hi;
};

TARGET inline Wide Mul(__m128i a, __m128i b) {
  return {_mm_clmulepi64_si128(a, b, 0x00), _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01), _mm_clmulepi64_si128(a, b, 0x10)),
          _mm_clmulepi64_si128(a, b, 0x11)};
}

// Shifts the 256-bit product [hi:lo] left by one bit and reduces it (the paper's gfmul, second half).
TARGET inline __m128i Reduce(Wide w) {
  __m128i lo = _mm_xor_si128(w.lo, _mm_slli_si128(w.mid, 8));
  __m128i hi = _mm_xor_si128(w.hi, _mm_srli_si128(w.mid, 8));
  __m128i t7 = _mm_srli_epi32(lo, 31), t8 = _mm_srli_epi32(hi, 31);
  lo = _mm_slli_epi32(lo, 1);
  hi = _mm_slli_epi32(hi, 1);
  __m128i t9 = _mm_srli_si128(t7, 12);
  t8 = _mm_slli_si128(t8, 4);
  t7 = _mm_slli_si128(t7, 4);
  lo = _mm_or_si128(lo, t7);
  hi = _mm_or_si128(_mm_or_si128(hi, t8), t9);
  t7 = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(lo, 31), _mm_slli_epi32(lo, 30)), _mm_slli_epi32(lo, 25));
  t8 = _mm_srli_si128(t7, 4);
  t7 = _mm_slli_si128(t7, 12);
  lo = _mm_xor_si128(lo, t7);
  __m128i t2 = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(lo, 1), _mm_srli_epi32(lo, 2)), _mm_srli_epi32(lo, 7));
  t2 = _mm_xor_si128(t2, t8);
  lo = _mm_xor_si128(lo, t2);
  return _mm_xor_si128(hi, lo);
}

TARGET inline __m128i GfMul(__m128i a, __m128i b) { return Reduce(Mul(a, b)); }

TARGET inline __m128i Fold(__m512i v) {
  return _mm_xor_si128(_mm_xor_si128(_mm512_castsi512_si128(v), _mm512_extracti32x4_epi32(v, 1)),
                       _mm_xor_si128(_mm512_extracti32x4_epi32(v, 2), _mm512_extracti32x4_epi32(v, 3)));
}

TARGET inline __m128i Encrypt1(const GcmVaesKey* k, __m128i x) {
  x = _mm_xor_si128(x, _mm_load_si128(reinterpret_cast<const __m128i*>(k->rk[0])));
#pragma GCC unroll 13
  for (int r = 1; r < 14; r++) x = _mm_aesenc_si128(x, _mm_load_si128(reinterpret_cast<const __m128i*>(k->rk[r])));
  return _mm_aesenclast_si128(x, _mm_load_si128(reinterpret_cast<const __m128i*>(k->rk[14])));
}

// GHASH of whole and partial 16-byte blocks, one at a time (the AAD, the tail).
TARGET inline __m128i GhashBytes(__m128i y, __m128i h, const uint8_t* p, size_t n) {
  for (; n >= 16; p += 16, n -= 16) y = GfMul(_mm_xor_si128(y, Bswap(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))), h);
  if (n > 0) {
    alignas(16) uint8_t b[16] = {0};
    std::memcpy(b, p, n);
    y = GfMul(_mm_xor_si128(y, Bswap(_mm_load_si128(reinterpret_cast<const __m128i*>(b)))), h);
  }
  return y;
}

#define EXPAND_A(rcon)                                   \
  t2 = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(t3, rcon), 0xff); \
  t4 = _mm_slli_si128(t1, 4);                            \
  t1 = _mm_xor_si128(t1, t4);                            \
  t4 = _mm_slli_si128(t4, 4);                            \
  t1 = _mm_xor_si128(t1, t4);                            \
  t4 = _mm_slli_si128(t4, 4);                            \
  t1 = _mm_xor_si128(_mm_xor_si128(t1, t4), t2);
#define EXPAND_B                                         \
  t2 = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(t1, 0), 0xaa); \
  t4 = _mm_slli_si128(t3, 4);                            \
  t3 = _mm_xor_si128(t3, t4);                            \
  t4 = _mm_slli_si128(t4, 4);                            \
  t3 = _mm_xor_si128(t3, t4);                            \
  t4 = _mm_slli_si128(t4, 4);                            \
  t3 = _mm_xor_si128(_mm_xor_si128(t3, t4), t2);

}  // namespace

TARGET void GcmVaesInit(GcmVaesKey* k, const uint8_t key[32]) {
  __m128i* rk = reinterpret_cast<__m128i*>(k->rk);
  __m128i t1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key)), t3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key + 16)), t2, t4;
  rk[0] = t1;
  rk[1] = t3;
  EXPAND_A(0x01) rk[2] = t1; EXPAND_B rk[3] = t3;
  EXPAND_A(0x02) rk[4] = t1; EXPAND_B rk[5] = t3;
  EXPAND_A(0x04) rk[6] = t1; EXPAND_B rk[7] = t3;
  EXPAND_A(0x08) rk[8] = t1; EXPAND_B rk[9] = t3;
  EXPAND_A(0x10) rk[10] = t1; EXPAND_B rk[11] = t3;
  EXPAND_A(0x20) rk[12] = t1; EXPAND_B rk[13] = t3;
  EXPAND_A(0x40) rk[14] = t1;
  __m128i h = Bswap(Encrypt1(k, _mm_setzero_si128()));
  __m128i* hp = reinterpret_cast<__m128i*>(k->h);
  hp[0] = h;
  for (int i = 1; i < 16; i++) hp[i] = GfMul(hp[i - 1], h);
}

namespace {

// A counter block's 32-bit counter `n` (blocks of the body count from 2: 1 is J0's, for the tag), bytes reversed.
TARGET inline __m128i CounterAt(__m128i j0, uint32_t n) { return _mm_add_epi32(Bswap(j0), _mm_set_epi32(0, 0, 0, static_cast<int>(n - 1))); }

TARGET inline __m128i J0(const uint8_t iv[12]) {
  alignas(16) uint8_t b[16];
  std::memcpy(b, iv, 12);
  b[12] = b[13] = b[14] = 0;
  b[15] = 1;
  return _mm_load_si128(reinterpret_cast<const __m128i*>(b));
}

/**
 * `len` bytes from a block boundary: with kCtr, dst = src XOR the key
 * stream from counter block `ctr1` (bytes reversed); with kGhash, GHASH
 * (into *y) over the ciphertext: dst when kEncrypt, src otherwise, the last
 * partial block zero-padded. src and dst may be the same memory.
 */
template <bool kCtr, bool kGhash, bool kEncrypt>
TARGET inline void Run(const GcmVaesKey* k, __m128i ctr1, const uint8_t* src, uint8_t* dst, size_t len, __m128i* y) {
  const __m128i* hp = reinterpret_cast<const __m128i*>(k->h);
  const __m512i rev = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __m512i ctr = _mm512_add_epi32(_mm512_broadcast_i32x4(ctr1), _mm512_set_epi32(0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0));
  const __m512i four = _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
  __m128i acc = kGhash ? *y : _mm_setzero_si128();
  size_t off = 0;
  if (len >= 256) {
    __m512i rk[15];
    if (kCtr) {
#pragma GCC unroll 15
      for (int r = 0; r < 15; r++) rk[r] = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(k->rk[r])));
    }
    // Block i of a step's sixteen is multiplied by H^(16-i): register g holds H^(16-4g) … H^(13-4g), lane 0 first.
    __m512i p[4];
    if (kGhash) {
#pragma GCC unroll 4
      for (int g = 0; g < 4; g++) {
        __m512i v = _mm512_castsi128_si512(hp[15 - 4 * g]);
        v = _mm512_inserti32x4(v, hp[14 - 4 * g], 1);
        v = _mm512_inserti32x4(v, hp[13 - 4 * g], 2);
        p[g] = _mm512_inserti32x4(v, hp[12 - 4 * g], 3);
      }
    }
    for (; len - off >= 256; off += 256) {
      __m512i c[4];
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) c[i] = _mm512_loadu_si512(src + off + 64 * i);
      if (kCtr) {
        __m512i x[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
          x[i] = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, rev), rk[0]);
          ctr = _mm512_add_epi32(ctr, four);
        }
#pragma GCC unroll 13
        for (int r = 1; r < 14; r++)
#pragma GCC unroll 4
          for (int i = 0; i < 4; i++) x[i] = _mm512_aesenc_epi128(x[i], rk[r]);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
          __m512i out = _mm512_xor_si512(c[i], _mm512_aesenclast_epi128(x[i], rk[14]));
          _mm512_storeu_si512(dst + off + 64 * i, out);
          if (kEncrypt) c[i] = out;  // GHASH reads the ciphertext
        }
      }
      if (kGhash) {
        __m512i lo = _mm512_setzero_si512(), mid = lo, hi = lo;
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
          __m512i g = _mm512_shuffle_epi8(c[i], rev);
          lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(g, p[i], 0x00));
          mid = _mm512_xor_si512(mid, _mm512_xor_si512(_mm512_clmulepi64_epi128(g, p[i], 0x01), _mm512_clmulepi64_epi128(g, p[i], 0x10)));
          hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(g, p[i], 0x11));
        }
        // The running hash joins block 0's product here (acc·H^16), so only that product and the
        // reduction wait for the previous step: (X0 ^ acc)·H^16 = X0·H^16 ^ acc·H^16.
        Wide w = Mul(acc, hp[15]);
        acc = Reduce({_mm_xor_si128(Fold(lo), w.lo), _mm_xor_si128(Fold(mid), w.mid), _mm_xor_si128(Fold(hi), w.hi)});
      }
    }
  }
  // The rest, a block at a time.
  const __m128i h1 = hp[0];
  __m128i c1 = _mm512_castsi512_si128(ctr);
  const __m128i one = _mm_set_epi32(0, 0, 0, 1);
  for (; len - off >= 16; off += 16) {
    __m128i in = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + off));
    __m128i ct = in;
    if (kCtr) {
      __m128i out = _mm_xor_si128(in, Encrypt1(k, Bswap(c1)));
      c1 = _mm_add_epi32(c1, one);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + off), out);
      if (kEncrypt) ct = out;
    }
    if (kGhash) acc = GfMul(_mm_xor_si128(acc, Bswap(ct)), h1);
  }
  if (off < len) {
    size_t n = len - off;
    alignas(16) uint8_t b[16] = {0};
    std::memcpy(b, src + off, n);
    __m128i in = _mm_load_si128(reinterpret_cast<const __m128i*>(b));
    __m128i ct = in;
    if (kCtr) {
      _mm_store_si128(reinterpret_cast<__m128i*>(b), _mm_xor_si128(in, Encrypt1(k, Bswap(c1))));
      std::memcpy(dst + off, b, n);
      if (kEncrypt) {
        std::memset(b + n, 0, 16 - n);  // GHASH reads the ciphertext, zero-padded
        ct = _mm_load_si128(reinterpret_cast<const __m128i*>(b));
      }
    }
    if (kGhash) acc = GfMul(_mm_xor_si128(acc, Bswap(ct)), h1);
  }
  if (kGhash) *y = acc;
}

// The tag from GHASH so far (AAD and body), the lengths block and J0.
TARGET inline void Finish(const GcmVaesKey* k, __m128i j0, __m128i y, size_t aad_len, size_t len, uint8_t tag[16]) {
  const __m128i h1 = _mm_load_si128(reinterpret_cast<const __m128i*>(k->h[0]));
  // The lengths block (bits, big-endian), bytes reversed.
  y = GfMul(_mm_xor_si128(y, _mm_set_epi64x(static_cast<long long>(aad_len * 8), static_cast<long long>(len * 8))), h1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(tag), _mm_xor_si128(Bswap(y), Encrypt1(k, j0)));
}

}  // namespace

TARGET void GcmVaesCrypt(const GcmVaesKey* k, const uint8_t iv[12], const uint8_t* aad, size_t aad_len, uint8_t* data, size_t len, bool encrypt,
                         uint8_t tag[16]) {
  const __m128i j0 = J0(iv);
  const __m128i h1 = _mm_load_si128(reinterpret_cast<const __m128i*>(k->h[0]));
  __m128i y = GhashBytes(_mm_setzero_si128(), h1, aad, aad_len);
  if (encrypt) Run<true, true, true>(k, CounterAt(j0, 2), data, data, len, &y);
  else Run<true, true, false>(k, CounterAt(j0, 2), data, data, len, &y);
  Finish(k, j0, y, aad_len, len, tag);
}

TARGET void GcmVaesTag(const GcmVaesKey* k, const uint8_t iv[12], const uint8_t* aad, size_t aad_len, const uint8_t* data, size_t len, uint8_t tag[16]) {
  const __m128i j0 = J0(iv);
  const __m128i h1 = _mm_load_si128(reinterpret_cast<const __m128i*>(k->h[0]));
  __m128i y = GhashBytes(_mm_setzero_si128(), h1, aad, aad_len);
  Run<false, true, false>(k, CounterAt(j0, 2), data, nullptr, len, &y);
  Finish(k, j0, y, aad_len, len, tag);
}

TARGET void GcmVaesCtr(const GcmVaesKey* k, const uint8_t iv[12], size_t pos, const uint8_t* src, uint8_t* dst, size_t len) {
  const __m128i j0 = J0(iv);
  // Blocks of the body count from 2; a start inside a block first finishes that block.
  uint32_t block = static_cast<uint32_t>(2 + pos / 16);
  size_t skip = pos % 16;
  if (skip != 0 && len > 0) {
    alignas(16) uint8_t ks[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(ks), Encrypt1(k, Bswap(CounterAt(j0, block))));
    size_t n = len < 16 - skip ? len : 16 - skip;
    for (size_t i = 0; i < n; i++) dst[i] = static_cast<uint8_t>(src[i] ^ ks[skip + i]);
    src += n;
    dst += n;
    len -= n;
    block++;
  }
  Run<true, false, false>(k, CounterAt(j0, block), src, dst, len, nullptr);
}

#else
bool GcmVaesAvailable() { return false; }
void GcmVaesInit(GcmVaesKey*, const uint8_t*) {}
void GcmVaesCrypt(const GcmVaesKey*, const uint8_t*, const uint8_t*, size_t, uint8_t*, size_t, bool, uint8_t*) {}
void GcmVaesTag(const GcmVaesKey*, const uint8_t*, const uint8_t*, size_t, const uint8_t*, size_t, uint8_t*) {}
void GcmVaesCtr(const GcmVaesKey*, const uint8_t*, size_t, const uint8_t*, uint8_t*, size_t) {}
#endif

}  // namespace vrift
