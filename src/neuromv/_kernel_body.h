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
// The reduced path: activations in [-1, 1] as 16-bit fixed point with ACT_ONE for 1 (error < 6.2e-5), hidden
// weights as int16 with a scale per output (see neuromv.renderer), products summed exactly in int32 (vpdpwssd).
constexpr float ACT_ONE = 8191.0f;

// ACT_ONE * tanh(x), order 7 as vtanh (the scale folded into the numerator's coefficients: no extra operation).
inline vf vtanh_fixed(vf x) {
    const vf lim = splat(4.97f);
    x = x > lim ? lim : x;
    x = x < -lim ? -lim : x;
    vf x2 = x * x;
    constexpr float s = ACT_ONE;
    vf p = ((s * x2 + s * 378.0f) * x2 + s * 17325.0f) * x2 + s * 135135.0f;
    vf q = ((28.0f * x2 + 3150.0f) * x2 + 62370.0f) * x2 + 135135.0f;
    return x * p * reciprocal(q);
}

// Hidden units 2p and 2p + 1 of the 16 pixels (already times ACT_ONE) -> one register of int16 pairs: lane i
// holds round(a[i]) in its low 16 bits and round(b[i]) in its high 16 bits, the layout vpdpwssd multiplies with a
// weight pair (q[j][2p], q[j][2p + 1]).
inline __m512i pack_pairs(vf a, vf b) {
    const __m512i lo = _mm512_cvtps_epi32((__m512)a), hi = _mm512_slli_epi32(_mm512_cvtps_epi32((__m512)b), 16);
    return _mm512_mask_blend_epi16((__mmask32)0xAAAAAAAAu, lo, hi);
}
#endif

// The colour map in the kernel's scale (colours in [0, 255]): m [3][3] as given, the offsets times 255.
struct Colour {
    float m[3][3], o[3];
};

// Weights of one kernel call. Path 3 only: Wq, the hidden-to-hidden weights as int16 pairs [L][H][H / 2] (lane
// (j, p) = q[j][2p] in the low 16 bits, q[j][2p + 1] in the high 16 bits), and Wd [L][H], the factor that turns
// output j's int32 sum into float32 (1 / (ACT_ONE * its weights' scale)).
struct Net {
    const float *W0, *c0, *Ws, *bs, *Wo, *bo;
    const uint32_t *Wq;
    const float *Wd;
    int L;
};

template <int H, bool COLOUR>
void tiles(const float *ct, const Net &net, const Colour &colour, uint8_t *out, int mode, long width, long height,
           long t0, long t1) {
    constexpr int JB = 8;  // outputs computed together: 8 accumulators in registers
    static_assert(H % JB == 0, "hidden must be a multiple of 8");
    const long per_row = (width + 7) / 8;
    const float *W0 = net.W0, *c0 = net.c0, *Wo = net.Wo, *bo = net.bo;
    vf bufa[H], bufb[H];
#if NEUROMV_ISA == 3
    __m512i pairs[H / 2];  // the activations of the layer's input as int16 pairs
#endif
    for (long t = t0; t < t1; t++) {
        vf *h = bufa, *g = bufb;
        const vf_unaligned *xyr = (const vf_unaligned *)(ct + t * 3 * P);
        const vf x = xyr[0], y = xyr[1], r = xyr[2];
#if NEUROMV_ISA == 3
        if (net.L == 0) {  // layer 1 feeds the output layer: float32
            for (int j = 0; j < H; j++) h[j] = vtanh(W0[3 * j] * x + W0[3 * j + 1] * y + W0[3 * j + 2] * r + c0[j]);
        } else {
            for (int j = 0; j < H; j += 2) {
                vf a = vtanh_fixed(W0[3 * j] * x + W0[3 * j + 1] * y + W0[3 * j + 2] * r + c0[j]);
                vf b = vtanh_fixed(W0[3 * j + 3] * x + W0[3 * j + 4] * y + W0[3 * j + 5] * r + c0[j + 1]);
                pairs[j / 2] = pack_pairs(a, b);
            }
        }
        for (int l = 0; l < net.L; l++) {
            const uint32_t *W = net.Wq + (long)l * H * (H / 2);
            const float *b = net.bs + l * H, *d = net.Wd + l * H;
            const bool last = l == net.L - 1;  // it feeds the float32 output layer: float32 tanh
            for (int jb = 0; jb < H; jb += JB) {
                __m512i acc[JB];
                for (int i = 0; i < JB; i++) acc[i] = _mm512_setzero_si512();
                for (int k = 0; k < H / 2; k++) {
                    const __m512i xk = pairs[k];
                    for (int i = 0; i < JB; i++)
                        acc[i] = _mm512_dpwssd_epi32(acc[i], xk, _mm512_set1_epi32((int)W[(jb + i) * (H / 2) + k]));
                }
                if (last)
                    for (int i = 0; i < JB; i++) g[jb + i] = vtanh((vf)_mm512_cvtepi32_ps(acc[i]) * d[jb + i] + b[jb + i]);
                else
                    for (int i = 0; i < JB; i++)
                        g[jb + i] = vtanh_fixed((vf)_mm512_cvtepi32_ps(acc[i]) * d[jb + i] + b[jb + i]);
            }
            if (!last)
                for (int k = 0; k < H / 2; k++) pairs[k] = pack_pairs(g[2 * k], g[2 * k + 1]);
            vf *tmp = h; h = g; g = tmp;
        }
#else
        for (int j = 0; j < H; j++) h[j] = vtanh(W0[3 * j] * x + W0[3 * j + 1] * y + W0[3 * j + 2] * r + c0[j]);
        for (int l = 0; l < net.L; l++) {
            const float *W = net.Ws + (long)l * H * H, *b = net.bs + l * H;
            for (int jb = 0; jb < H; jb += JB) {
                vf acc[JB];
                for (int i = 0; i < JB; i++) acc[i] = splat(b[jb + i]);
                for (int k = 0; k < H; k++) {
                    vf xk = h[k];
                    for (int i = 0; i < JB; i++) acc[i] += W[(jb + i) * H + k] * xk;
                }
                for (int i = 0; i < JB; i++) g[jb + i] = vtanh(acc[i]);
            }
            vf *tmp = h; h = g; g = tmp;
        }
#endif
        vf rgb[3];
        for (int c = 0; c < 3; c++) {
            vf acc = splat(bo[c]);
            for (int k = 0; k < H; k++) acc += Wo[c * H + k] * h[k];
            rgb[c] = vtanh(acc * 0.5f) * 127.5f + 127.5f;  // 255 sigmoid(a) = 127.5 tanh(a / 2) + 127.5
        }
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
        const long row0 = 2 * (t / per_row), col0 = 8 * (t % per_row);
        const int cols = width - col0 < 8 ? (int)(width - col0) : 8, rows = height - row0 < 2 ? 1 : 2;
        if (mode == 0) {
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

template <int H, bool COLOUR>
void shared(const float *ct, const Net &net, const Colour &colour, uint8_t *out, int mode, long width, long height,
            long *next, long chunk) {
    const long n_tiles = ((width + 7) / 8) * ((height + 1) / 2);
    for (;;) {
        long t0 = __atomic_fetch_add(next, chunk, __ATOMIC_RELAXED);
        if (t0 >= n_tiles) return;
        long t1 = t0 + chunk < n_tiles ? t0 + chunk : n_tiles;
        tiles<H, COLOUR>(ct, net, colour, out, mode, width, height, t0, t1);
    }
}

template <int H>
void with_colour(const float *ct, const Net &net, const float *color, uint8_t *out, int mode, long width,
                 long height, long *next, long chunk) {
    Colour colour = {};
    if (!color) {
        shared<H, false>(ct, net, colour, out, mode, width, height, next, chunk);
        return;
    }
    for (int c = 0; c < 3; c++) {
        for (int k = 0; k < 3; k++) colour.m[c][k] = color[4 * c + k];
        colour.o[c] = 255.0f * color[4 * c + 3];
    }
    shared<H, true>(ct, net, colour, out, mode, width, height, next, chunk);
}

// This instruction set's entry: 0, or -1 if `hidden` has no compiled kernel.
int render(int hidden, const float *ct, const Net &net, const float *color, uint8_t *out, int mode, long width,
           long height, long *next, long chunk) {
    switch (hidden) {
#define NEUROMV_CASE(H) \
        case H: with_colour<H>(ct, net, color, out, mode, width, height, next, chunk); return 0;
        NEUROMV_CASE(8) NEUROMV_CASE(16) NEUROMV_CASE(24) NEUROMV_CASE(32) NEUROMV_CASE(48) NEUROMV_CASE(64)
#undef NEUROMV_CASE
        default: return -1;
    }
}
