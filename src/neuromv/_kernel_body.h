// The body of the fused CPU kernel, included by _kernel.cpp once per instruction set, each time inside its own
// namespace and (on x86) under its own target options. NEUROMV_ISA selects the code:
//   0 portable (generic vectors: SSE2 on x86-64, NEON on ARM64), 1 AVX2 + FMA, 2 AVX-512 (F, BW, DQ, VL),
//   3 AVX-512 + VNNI: the hidden-to-hidden layers in 16-bit fixed point with exact int32 sums (vpdpwssd), the
//     reduced precision path ('int16').
// See _kernel.cpp for the layout of the arguments.

constexpr int P = 16;   // pixels per block: one 512-bit register (two 256-bit ones on AVX2)
typedef float vf __attribute__((vector_size(P * 4)));
typedef float vf_unaligned __attribute__((vector_size(P * 4), aligned(4)));  // for loads from numpy's buffers

inline vf splat(float x) { return (vf){} + x; }

inline vf reciprocal(vf q) {
#if NEUROMV_ISA >= 2
    return (vf)_mm512_rcp14_ps((__m512)q);  // relative error < 2^-14: far below what one output level needs
#else
    return 1.0f / q;
#endif
}

// tanh by Lambert's continued fraction of order 7, on x clamped to +-4.97 where it reaches 1 (error < 1e-4).
inline vf vtanh(vf x) {
    const vf lim = splat(4.97f);
    x = x > lim ? lim : x;
    x = x < -lim ? -lim : x;
    vf x2 = x * x;
    vf p = ((x2 + 378.0f) * x2 + 17325.0f) * x2 + 135135.0f;
    vf q = ((28.0f * x2 + 3150.0f) * x2 + 62370.0f) * x2 + 135135.0f;
    return x * p * reciprocal(q);
}

#if NEUROMV_ISA == 3
// The reduced path: activations in [-1, 1] as 16-bit fixed point with ACT_ONE for 1, 32 lanes a register; the
// hidden and output layers' products summed exactly in int32 (vpdpwssd). A hidden unit's int32 sum, shifted right
// by its row's shift, is its pre-activation x as Z = round(ZK x) (see _kernel.cpp), which tanh16 maps to the next
// activation without leaving the 16-bit lanes.
constexpr float ZK = 6144.0f;

struct Tanh16 {
    __m512i c0[2], c1[2], c2[2];  // the 64 segments' coefficients, entries 0-31 and 32-63
};

inline Tanh16 load_tanh16() {
    const uint16_t *t = tanh16_coefficients();
    Tanh16 T;
    for (int h = 0; h < 2; h++) {
        T.c0[h] = _mm512_loadu_si512(t + 32 * h);
        T.c1[h] = _mm512_loadu_si512(t + 64 + 32 * h);
        T.c2[h] = _mm512_loadu_si512(t + 128 + 32 * h);
    }
    return T;
}

// 32 lanes of Z (int16, -32767..32767) -> round(ACT_ONE tanh(Z / ZK)) within one level: segment |Z| >> 9 of 64
// picks a quadratic in the fraction t = (|Z| mod 512) / 512, evaluated in unsigned 16-bit arithmetic (units of
// 1/8 level, truncating high products whose bias the coefficients absorb), then the sign is put back.
inline __m512i tanh16(__m512i z, const Tanh16 &T) {
    const __m512i a = _mm512_abs_epi16(z);
    const __m512i seg = _mm512_srli_epi16(a, 9), t = _mm512_slli_epi16(a, 7);
    const __m512i c0 = _mm512_permutex2var_epi16(T.c0[0], seg, T.c0[1]);
    const __m512i c1 = _mm512_permutex2var_epi16(T.c1[0], seg, T.c1[1]);
    const __m512i c2 = _mm512_permutex2var_epi16(T.c2[0], seg, T.c2[1]);
    __m512i y = _mm512_sub_epi16(c1, _mm512_mulhi_epu16(t, c2));
    y = _mm512_srli_epi16(_mm512_adds_epu16(c0, _mm512_mulhi_epu16(t, y)), 3);
    return _mm512_mask_sub_epi16(y, _mm512_movepi16_mask(z), _mm512_setzero_si512(), y);
}

// Two units' Z as int32 (16 pixels each) -> one register of int16 pairs, lane i = (a[i] low, b[i] high) saturated
// to +-32767: the layout vpdpwssd multiplies with a weight pair (q[j][2p], q[j][2p + 1]).
inline __m512i pair_z(__m512i a, __m512i b) {
    // packs gives each 128-bit lane a0 a1 a2 a3 b0 b1 b2 b3; the byte shuffle interleaves them
    const __m512i order = _mm512_set4_epi32(0x0F0E0706, 0x0D0C0504, 0x0B0A0302, 0x09080100);
    const __m512i p = _mm512_max_epi16(_mm512_packs_epi32(a, b), _mm512_set1_epi16(-32767));
    return _mm512_shuffle_epi8(p, order);
}

void tanh16_many(const int16_t *z, int16_t *out, long n) {
    const Tanh16 T = load_tanh16();
    for (long i = 0; i < n; i += 32) {
        const __mmask32 m = n - i >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (n - i)) - 1);
        _mm512_mask_storeu_epi16(out + i, m, tanh16(_mm512_maskz_loadu_epi16(m, z + i), T));
    }
}

// Layer 1's pre-activation of 16 pixels (float, already times ZK) -> int32 Z, clamped first (no overflow, no NaN).
inline __m512i z_of(vf x) {
    const vf lim = splat(32767.0f);
    x = x < lim ? x : lim;  // NaN -> lim
    x = x > -lim ? x : -lim;
    return _mm512_cvtps_epi32((__m512)x);
}
#endif

// The colour map in the kernel's scale (colours in [0, 255]): m [3][3] as given, the offsets times 255.
struct Colour {
    float m[3][3], o[3];
};

// The palette in the kernel's scale: a colour c in [0, 255] goes to entry round(clamp(row . c + row[3], 0, last)) of
// the table, each entry's colour rounded to 8 bits and packed as R | G << 8 | B << 16 (one gather gives all three
// channels; rounding the entries first is what rounding the pixel would do, so RGB frames are unchanged by it).
struct Palette {
    float row[4];
    const uint32_t *packed;
    int last;
};

// 16 pixels' colours (0-255) -> their palette entries' colours. The index is clamped again as an integer, so that
// no value (NaN included, which the float clamp may let through under -ffast-math) reads outside the table.
inline void palette_step(vf rgb[3], const Palette &pal) {
    vf pos = pal.row[0] * rgb[0] + pal.row[1] * rgb[1] + pal.row[2] * rgb[2] + pal.row[3];
    const vf lo = splat(0.0f), hi = splat((float)pal.last);
    pos = pos > lo ? pos : lo;
    pos = pos < hi ? pos : hi;
    pos += 0.5f;  // pos >= 0: truncation is floor
#if NEUROMV_ISA >= 2
    __m512i i = _mm512_cvttps_epi32((__m512)pos);
    i = _mm512_min_epi32(_mm512_max_epi32(i, _mm512_setzero_si512()), _mm512_set1_epi32(pal.last));
    const __m512i px = _mm512_i32gather_epi32(i, (const int *)pal.packed, 4), byte = _mm512_set1_epi32(0xFF);
    rgb[0] = (vf)_mm512_cvtepi32_ps(_mm512_and_si512(px, byte));
    rgb[1] = (vf)_mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(px, 8), byte));
    rgb[2] = (vf)_mm512_cvtepi32_ps(_mm512_srli_epi32(px, 16));
#elif NEUROMV_ISA == 1
    union { vf v; __m256 h[2]; } in, out[3];
    in.v = pos;
    const __m256i byte = _mm256_set1_epi32(0xFF);
    for (int half = 0; half < 2; half++) {
        __m256i i = _mm256_cvttps_epi32(in.h[half]);
        i = _mm256_min_epi32(_mm256_max_epi32(i, _mm256_setzero_si256()), _mm256_set1_epi32(pal.last));
        const __m256i px = _mm256_i32gather_epi32((const int *)pal.packed, i, 4);
        out[0].h[half] = _mm256_cvtepi32_ps(_mm256_and_si256(px, byte));
        out[1].h[half] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(px, 8), byte));
        out[2].h[half] = _mm256_cvtepi32_ps(_mm256_srli_epi32(px, 16));
    }
    for (int c = 0; c < 3; c++) rgb[c] = out[c].v;
#else
    for (int p = 0; p < P; p++) {
        int i = (int)pos[p];
        i = i < 0 ? 0 : i > pal.last ? pal.last : i;
        const uint32_t px = pal.packed[i];
        for (int c = 0; c < 3; c++) rgb[c][p] = (float)((px >> (8 * c)) & 0xFF);
    }
#endif
}

// The picture kernel's palette step (neuromv_picture3), one row at a time: rgb [n][3] (0-255 floats) become, in
// place, their palette entries' colours (as palette_step: packed, row [4] and last as in Palette), and out gets them:
// mode 0 as RGB bytes [n][3], mode 1 as the luma bytes [n] of I420. Paths 2 and 3 take 16 pixels at a time (the
// interleaved colours split into planes and back by two-source permutes).
void palette_row(float *rgb, long n, const uint32_t *packed, const float *row, int last, uint8_t *out, int mode) {
    const Palette pal = {{row[0], row[1], row[2], row[3]}, packed, last};
    const float ky = 219.0f / 255.0f;
    long col = 0;
#if NEUROMV_ISA >= 2
    int split[3][2][16], merge[3][2][16];  // [channel or output register][step][lane]
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 16; j++) {
            const int e = 3 * j + k;  // planes: lane j of channel k is element e of the 48 interleaved floats
            split[k][0][j] = e < 32 ? e : 0;
            split[k][1][j] = e < 32 ? j : 16 + e - 32;
            const int f = 16 * k + j, q = f / 3, ch = f % 3;  // interleaved: element f is pixel q's channel ch
            merge[k][0][j] = ch < 2 ? q + 16 * ch : 0;
            merge[k][1][j] = ch < 2 ? j : 16 + q;
        }
    __m512i sp[3][2], mg[3][2];
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 2; t++) {
            sp[k][t] = _mm512_loadu_si512(split[k][t]);
            mg[k][t] = _mm512_loadu_si512(merge[k][t]);
        }
    for (; col + P <= n; col += P) {
        float *p = rgb + 3 * col;
        const __m512 in[3] = {_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16), _mm512_loadu_ps(p + 32)};
        vf c[3];
        for (int k = 0; k < 3; k++)
            c[k] = (vf)_mm512_permutex2var_ps(_mm512_permutex2var_ps(in[0], sp[k][0], in[1]), sp[k][1], in[2]);
        palette_step(c, pal);
        for (int k = 0; k < 3; k++)
            _mm512_storeu_ps(p + 16 * k, _mm512_permutex2var_ps(
                _mm512_permutex2var_ps((__m512)c[0], mg[k][0], (__m512)c[1]), mg[k][1], (__m512)c[2]));
        if (mode == 0) {  // 16 pixels of 3 bytes (the entries' colours are whole numbers 0-255)
            __m512i px = _mm512_ternarylogic_epi32(_mm512_cvttps_epi32((__m512)c[0]),
                                                   _mm512_slli_epi32(_mm512_cvttps_epi32((__m512)c[1]), 8),
                                                   _mm512_slli_epi32(_mm512_cvttps_epi32((__m512)c[2]), 16), 0xFE);
            px = _mm512_shuffle_epi8(px, _mm512_set4_epi32(-1, 0x0E0D0C0A, 0x09080605, 0x04020100));
            px = _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 14, 13, 12, 10, 9, 8, 6, 5, 4, 2, 1, 0), px);
            _mm512_mask_storeu_epi8(out + 3 * col, (__mmask64)0xFFFFFFFFFFFF, px);
        } else {
            vf y = ky * (0.2126f * c[0] + 0.7152f * c[1] + 0.0722f * c[2]) + 16.5f;
            y = y < 16.0f ? splat(16.0f) : y;
            y = y > 235.0f ? splat(235.0f) : y;
            _mm_storeu_si128((__m128i *)(out + col), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32((__m512)y)));
        }
    }
#endif
    for (; col < n; col++) {
        float *px = rgb + 3 * col;
        float pos = pal.row[0] * px[0] + pal.row[1] * px[1] + pal.row[2] * px[2] + pal.row[3];
        pos = pos > 0.0f ? pos : 0.0f;
        pos = pos < (float)last ? pos : (float)last;
        int at = (int)(pos + 0.5f);
        at = at < 0 ? 0 : at > last ? last : at;
        const uint32_t e = packed[at];
        for (int k = 0; k < 3; k++) {
            px[k] = (float)((e >> (8 * k)) & 0xFF);
            if (mode == 0) out[3 * col + k] = (uint8_t)(e >> (8 * k));
        }
        if (mode == 1) {
            const float y = ky * (0.2126f * px[0] + 0.7152f * px[1] + 0.0722f * px[2]) + 16.5f;
            out[col] = (uint8_t)(y < 16.0f ? 16.0f : y > 235.0f ? 235.0f : y);
        }
    }
}

// Weights of one kernel call. Path 3 only: Wq, the int16 data (see _kernel.cpp), and Wd [3], the factors that turn
// the output layer's int32 sums into float32.
struct Net {
    const float *W0, *c0, *Ws, *bs, *Wo, *bo;
    const uint32_t *Wq;
    const float *Wd;
    int L;
};

template <int H, bool COLOUR, bool PALETTE>
void tiles(const float *ct, const Net &net, const Colour &colour, const Palette &pal, uint8_t *out, int mode,
           long width, long height, long t0, long t1) {
    constexpr int JB = 8;  // outputs computed together: 8 accumulators in registers
    static_assert(H % JB == 0, "hidden must be a multiple of 8");
    const long per_row = (width + 7) / 8;
    const float *W0 = net.W0, *c0 = net.c0, *Wo = net.Wo, *bo = net.bo;
    vf bufa[H], bufb[H];
#if NEUROMV_ISA == 3
    __m512i pairs[2][H / 2];  // a layer's input and output activations as int16 pairs
    const Tanh16 T = load_tanh16();
    float W0k[3 * H], c0k[H];  // layer 1 in Z's scale
    for (int j = 0; j < 3 * H; j++) W0k[j] = ZK * W0[j];
    for (int j = 0; j < H; j++) c0k[j] = ZK * c0[j];
    const uint32_t *Qs = net.Wq, *Qo = net.Wq + (long)net.L * H * (H / 2 + 2);
    const int32_t *Bs = (const int32_t *)(net.Wq + (long)net.L * H * (H / 2)), *Ss = Bs + (long)net.L * H;
#endif
    for (long t = t0; t < t1; t++) {
        vf *h = bufa, *g = bufb;
        const vf_unaligned *xyr = (const vf_unaligned *)(ct + t * 3 * P);
        const vf x = xyr[0], y = xyr[1], r = xyr[2];
#if NEUROMV_ISA == 3
        (void)h; (void)g; (void)Wo;
        __m512i *in = pairs[0], *next = pairs[1];
        for (int j = 0; j < H; j += 2) {
            const __m512i za = z_of(W0k[3 * j] * x + W0k[3 * j + 1] * y + W0k[3 * j + 2] * r + c0k[j]);
            const __m512i zb = z_of(W0k[3 * j + 3] * x + W0k[3 * j + 4] * y + W0k[3 * j + 5] * r + c0k[j + 1]);
            in[j / 2] = tanh16(pair_z(za, zb), T);
        }
        for (int l = 0; l < net.L; l++) {
            const uint32_t *W = Qs + (long)l * H * (H / 2);
            const int32_t *B = Bs + l * H, *S = Ss + l * H;
            // 16 outputs at a time where the width allows (8 otherwise): 16 independent chains of vpdpwssd. Zen 5
            // retires two 512-bit vpdpwssd a cycle, and 8 chains left it waiting on their latency: with 16, 640x360
            // at hidden 32 renders 4-6 % faster there (the same frames, bit for bit; integer sums in any order).
            constexpr int JQ = H % 16 == 0 ? 16 : 8;
            for (int jb = 0; jb < H; jb += JQ) {
                __m512i acc[JQ];
#pragma GCC unroll 16
                for (int i = 0; i < JQ; i++) acc[i] = _mm512_set1_epi32(B[jb + i]);
                // The kernel's hot loop, written out so that every variant of the tile (colour map, palette) runs
                // the same instructions: one load of the inputs and, per 8 outputs, 8 vpdpwssd whose weight pair is
                // broadcast from memory ({1to16}). As intrinsics, GCC broadcast each weight separately and copied
                // the 8 accumulators twice an iteration (37 instructions), and how it scheduled that varied with
                // the rest of the tile: the palette variant ran the same loop 14 % slower than the variant without.
                // (GCC's syntax; other compilers take the intrinsics.) The accumulators are named by constant
                // indices (and the loops over them unrolled): an index GCC cannot resolve puts them in memory.
                constexpr int S2 = H / 2;  // a weight row's length (pairs)
#if defined(__GNUC__) && !defined(__clang__)
#define NEUROMV_DP8(O, X, W)                                                                                 \
    asm("vpdpwssd %[w0]%{1to16%}, %[x], %[a0]\n\t"                                                          \
        "vpdpwssd %[w1]%{1to16%}, %[x], %[a1]\n\t"                                                          \
        "vpdpwssd %[w2]%{1to16%}, %[x], %[a2]\n\t"                                                          \
        "vpdpwssd %[w3]%{1to16%}, %[x], %[a3]\n\t"                                                          \
        "vpdpwssd %[w4]%{1to16%}, %[x], %[a4]\n\t"                                                          \
        "vpdpwssd %[w5]%{1to16%}, %[x], %[a5]\n\t"                                                          \
        "vpdpwssd %[w6]%{1to16%}, %[x], %[a6]\n\t"                                                          \
        "vpdpwssd %[w7]%{1to16%}, %[x], %[a7]"                                                              \
        : [a0] "+v"(acc[O + 0]), [a1] "+v"(acc[O + 1]), [a2] "+v"(acc[O + 2]), [a3] "+v"(acc[O + 3]),       \
          [a4] "+v"(acc[O + 4]), [a5] "+v"(acc[O + 5]), [a6] "+v"(acc[O + 6]), [a7] "+v"(acc[O + 7])        \
        : [x] "v"(X), [w0] "m"(W[0]), [w1] "m"(W[S2]), [w2] "m"(W[2 * S2]), [w3] "m"(W[3 * S2]),          \
          [w4] "m"(W[4 * S2]), [w5] "m"(W[5 * S2]), [w6] "m"(W[6 * S2]), [w7] "m"(W[7 * S2]))
                for (int k = 0; k < H / 2; k++) {
                    const __m512i xk = in[k];
                    const uint32_t *w = W + (long)jb * S2 + k;  // unit jb + i's pair k: w[i * S2]
                    NEUROMV_DP8(0, xk, w);
                    if constexpr (JQ == 16) {
                        const uint32_t *w8 = w + 8 * S2;
                        NEUROMV_DP8(8, xk, w8);
                    }
                }
#undef NEUROMV_DP8
#else
                for (int k = 0; k < H / 2; k++) {
                    const __m512i xk = in[k];
                    for (int i = 0; i < JQ; i++)
                        acc[i] = _mm512_dpwssd_epi32(acc[i], xk, _mm512_set1_epi32((int)W[(jb + i) * S2 + k]));
                }
#endif
#pragma GCC unroll 16
                for (int i = 0; i < JQ; i += 2) {
                    const __m512i za = _mm512_srav_epi32(acc[i], _mm512_set1_epi32(S[jb + i]));
                    const __m512i zb = _mm512_srav_epi32(acc[i + 1], _mm512_set1_epi32(S[jb + i + 1]));
                    next[(jb + i) / 2] = tanh16(pair_z(za, zb), T);
                }
            }
            __m512i *tmp = in; in = next; next = tmp;
        }
        // The output layer: each colour's sum in two halves (even and odd pairs), six independent chains instead
        // of three one after another (the same sums: integers).
        vf rgb[3];
        __m512i r0 = _mm512_setzero_si512(), r1 = r0, g0 = r0, g1 = r0, b0 = r0, b1 = r0;
        constexpr int S2 = H / 2;  // even: H is a multiple of 8
#pragma GCC unroll 32
        for (int k = 0; k < S2; k += 2) {
            r0 = _mm512_dpwssd_epi32(r0, in[k], _mm512_set1_epi32((int)Qo[k]));
            g0 = _mm512_dpwssd_epi32(g0, in[k], _mm512_set1_epi32((int)Qo[S2 + k]));
            b0 = _mm512_dpwssd_epi32(b0, in[k], _mm512_set1_epi32((int)Qo[2 * S2 + k]));
            r1 = _mm512_dpwssd_epi32(r1, in[k + 1], _mm512_set1_epi32((int)Qo[k + 1]));
            g1 = _mm512_dpwssd_epi32(g1, in[k + 1], _mm512_set1_epi32((int)Qo[S2 + k + 1]));
            b1 = _mm512_dpwssd_epi32(b1, in[k + 1], _mm512_set1_epi32((int)Qo[2 * S2 + k + 1]));
        }
        const __m512i sums[3] = {_mm512_add_epi32(r0, r1), _mm512_add_epi32(g0, g1), _mm512_add_epi32(b0, b1)};
        for (int c = 0; c < 3; c++)
            rgb[c] = vtanh(((vf)_mm512_cvtepi32_ps(sums[c]) * net.Wd[c] + bo[c]) * 0.5f) * 127.5f + 127.5f;
#else
        for (int j = 0; j < H; j++) h[j] = vtanh(W0[3 * j] * x + W0[3 * j + 1] * y + W0[3 * j + 2] * r + c0[j]);
        for (int l = 0; l < net.L; l++) {
            const float *W = net.Ws + (long)l * H * H, *b = net.bs + l * H;
            // AVX-512: 16 outputs at a time where the width allows, 16 chains of FMAs (as in int16 above:
            // 6-7 % faster on Zen 5, the same frames); AVX2's 16 registers hold 8.
            constexpr int JF = NEUROMV_ISA == 2 && H % 16 == 0 ? 16 : JB;
            for (int jb = 0; jb < H; jb += JF) {
                vf acc[JF];
#pragma GCC unroll 16
                for (int i = 0; i < JF; i++) acc[i] = splat(b[jb + i]);
                for (int k = 0; k < H; k++) {
                    vf xk = h[k];
#pragma GCC unroll 16
                    for (int i = 0; i < JF; i++) acc[i] += W[(jb + i) * H + k] * xk;
                }
#pragma GCC unroll 16
                for (int i = 0; i < JF; i++) g[jb + i] = vtanh(acc[i]);
            }
            vf *tmp = h; h = g; g = tmp;
        }
        vf rgb[3];
        for (int c = 0; c < 3; c++) {
            vf acc = splat(bo[c]);
            for (int k = 0; k < H; k++) acc += Wo[c * H + k] * h[k];
            rgb[c] = vtanh(acc * 0.5f) * 127.5f + 127.5f;  // 255 sigmoid(a) = 127.5 tanh(a / 2) + 127.5
        }
#endif
        if (COLOUR) {  // c -> clamp(M c + 255 o, 0, 255)
            const vf lo = splat(0.0f), hi = splat(255.0f);
            vf mixed[3];
            for (int c = 0; c < 3; c++) {
                vf v = colour.m[c][0] * rgb[0] + colour.m[c][1] * rgb[1] + colour.m[c][2] * rgb[2] + colour.o[c];
                v = v < lo ? lo : v;
                mixed[c] = v > hi ? hi : v;
            }
            for (int c = 0; c < 3; c++) rgb[c] = mixed[c];
        }
        if (PALETTE) palette_step(rgb, pal);  // the last step of the colour: each pixel becomes a palette entry
        const long row0 = 2 * (t / per_row), col0 = 8 * (t % per_row);
        const int cols = width - col0 < 8 ? (int)(width - col0) : 8, rows = height - row0 < 2 ? 1 : 2;
        if (mode == 0) {
#if NEUROMV_ISA >= 2
            if (cols == 8 && rows == 2) {  // a whole tile: 2 rows of 24 bytes from one register
                __m512i c[3];
                for (int k = 0; k < 3; k++) {
                    vf v = rgb[k] + 0.5f;  // as below: round, clamp to [0, 255]
                    v = v < 0.0f ? splat(0.0f) : v;
                    v = v > 255.0f ? splat(255.0f) : v;
                    c[k] = _mm512_cvttps_epi32((__m512)v);
                }
                // lane p: r | g << 8 | b << 16, then 3 bytes a pixel, pixels in order: row 0 in bytes 0-23, row 1 in 24-47
                __m512i px = _mm512_ternarylogic_epi32(c[0], _mm512_slli_epi32(c[1], 8), _mm512_slli_epi32(c[2], 16), 0xFE);
                px = _mm512_shuffle_epi8(px, _mm512_set4_epi32(-1, 0x0E0D0C0A, 0x09080605, 0x04020100));
                px = _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 14, 13, 12, 10, 9, 8, 6, 5, 4, 2, 1, 0), px);
                uint8_t *o = out + (row0 * width + col0) * 3;
                _mm512_mask_storeu_epi8(o, (__mmask64)0xFFFFFF, px);
                _mm512_mask_storeu_epi8(o + width * 3 - 24, (__mmask64)0xFFFFFF000000, px);
                continue;
            }
#endif
            for (int p = 0; p < P; p++) {
                if (p % 8 >= cols || p / 8 >= rows) continue;
                uint8_t *o = out + ((row0 + p / 8) * width + col0 + p % 8) * 3;
                for (int c = 0; c < 3; c++) {
                    float v = rgb[c][p] + 0.5f;
                    o[c] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
                }
            }
            continue;
        }
        // BT.709 limited range: Y = 16 + 219 E'y, Cb = 128 + 224 (E'b - E'y) / 1.8556, Cr = 128 + 224 (E'r - E'y) / 1.5748
        const float ky = 219.0f / 255.0f, kb = 224.0f / 255.0f / 1.8556f, kr = 224.0f / 255.0f / 1.5748f;
        vf luma = 0.2126f * rgb[0] + 0.7152f * rgb[1] + 0.0722f * rgb[2];
        vf yv = ky * luma + 16.5f;
        vf cb = kb * (rgb[2] - luma), cr = kr * (rgb[0] - luma);
#if NEUROMV_ISA >= 2
        if (cols == 8 && rows == 2) {  // a whole tile: 2 rows of 8 luma bytes, 4 bytes of each chroma plane
            vf v = yv < 16.0f ? splat(16.0f) : yv;
            v = v > 235.0f ? splat(235.0f) : v;
            const __m128i luma = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32((__m512)v));
            _mm_storel_epi64((__m128i *)(out + row0 * width + col0), luma);
            _mm_storel_epi64((__m128i *)(out + (row0 + 1) * width + col0), _mm_unpackhi_epi64(luma, luma));
            const long cw = width / 2, plane = width * height;
            const long at = plane + (row0 / 2) * cw + col0 / 2;
            vf chroma[2] = {cb, cr};
            for (int k = 0; k < 2; k++) {
                const __m512 c = (__m512)chroma[k];
                const __m512 rows2 = _mm512_add_ps(c, _mm512_shuffle_f32x4(c, c, 0x4E));  // lane a: c[a] + c[a + 8]
                vf m = (vf)_mm512_add_ps(rows2, _mm512_permute_ps(rows2, 0xB1)) * 0.25f + 128.5f;  // even lanes
                m = m < 16.0f ? splat(16.0f) : m;
                m = m > 240.0f ? splat(240.0f) : m;
                const __m128i b = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(_mm512_cvttps_epi32((__m512)m)),
                                                   _mm_set_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 6, 4, 2, 0));
                const int four = _mm_cvtsi128_si32(b);
                __builtin_memcpy(out + at + k * (plane / 4), &four, 4);
            }
            continue;
        }
#endif
        for (int p = 0; p < P; p++) {
            if (p % 8 >= cols || p / 8 >= rows) continue;
            float v = yv[p];
            out[(row0 + p / 8) * width + col0 + p % 8] = (uint8_t)(v < 16.0f ? 16.0f : v > 235.0f ? 235.0f : v);
        }
        const long cw = width / 2, plane = width * height;
        uint8_t *u = out + plane + (row0 / 2) * cw + col0 / 2, *v = out + plane + plane / 4 + (row0 / 2) * cw + col0 / 2;
        for (int q = 0; q < cols / 2; q++) {
            const int a = 2 * q;
            float mb = 0.25f * (cb[a] + cb[a + 1] + cb[a + 8] + cb[a + 9]) + 128.5f;
            float mr = 0.25f * (cr[a] + cr[a + 1] + cr[a + 8] + cr[a + 9]) + 128.5f;
            u[q] = (uint8_t)(mb < 16.0f ? 16.0f : mb > 240.0f ? 240.0f : mb);
            v[q] = (uint8_t)(mr < 16.0f ? 16.0f : mr > 240.0f ? 240.0f : mr);
        }
    }
}

template <int H, bool COLOUR, bool PALETTE>
void shared(const float *ct, const Net &net, const Colour &colour, const Palette &pal, uint8_t *out, int mode,
            long width, long height, long *next, long chunk) {
    const long n_tiles = ((width + 7) / 8) * ((height + 1) / 2);
    for (;;) {
        long t0 = __atomic_fetch_add(next, chunk, __ATOMIC_RELAXED);
        if (t0 >= n_tiles) return;
        long t1 = t0 + chunk < n_tiles ? t0 + chunk : n_tiles;
        tiles<H, COLOUR, PALETTE>(ct, net, colour, pal, out, mode, width, height, t0, t1);
    }
}

// The colour steps a call has (colour map, palette), each compiled in only where it is given.
template <int H>
void with_colour(const float *ct, const Net &net, const float *color, const float *palette, long palette_n,
                 uint8_t *out, int mode, long width, long height, long *next, long chunk) {
    Colour colour = {};
    Palette pal = {};
    if (color) {
        for (int c = 0; c < 3; c++) {
            for (int k = 0; k < 3; k++) colour.m[c][k] = color[4 * c + k];
            colour.o[c] = 255.0f * color[4 * c + 3];
        }
    }
    if (!palette) {
        if (color) shared<H, true, false>(ct, net, colour, pal, out, mode, width, height, next, chunk);
        else shared<H, false, false>(ct, net, colour, pal, out, mode, width, height, next, chunk);
        return;
    }
    for (int k = 0; k < 4; k++) pal.row[k] = palette[k];
    uint32_t *packed = pack_palette(palette + 4, palette_n);  // this worker's copy (n words: a few microseconds)
    pal.packed = packed;
    pal.last = (int)(palette_n - 1);
    if (color) shared<H, true, true>(ct, net, colour, pal, out, mode, width, height, next, chunk);
    else shared<H, false, true>(ct, net, colour, pal, out, mode, width, height, next, chunk);
    delete[] packed;
}

// This instruction set's entry: 0, or -1 if `hidden` has no compiled kernel.
int render(int hidden, const float *ct, const Net &net, const float *color, const float *palette, long palette_n,
           uint8_t *out, int mode, long width, long height, long *next, long chunk) {
    switch (hidden) {
#define NEUROMV_CASE(H) \
        case H: with_colour<H>(ct, net, color, palette, palette_n, out, mode, width, height, next, chunk); return 0;
        NEUROMV_CASE(8) NEUROMV_CASE(16) NEUROMV_CASE(24) NEUROMV_CASE(32) NEUROMV_CASE(48) NEUROMV_CASE(64)
#undef NEUROMV_CASE
        default: return -1;
    }
}
