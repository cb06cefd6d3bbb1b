// The fused CPU kernel of neuromv.renderer (method 'kernel'): a block of 16 pixels goes through every layer of the
// abstract CPPN in registers and L1, with a cheap exact-enough tanh, so the matrix work runs near the FMA units'
// peak. Built at install time as the optional extension neuromv._kernel (plain C ABI, loaded with ctypes); when it
// is missing, the renderer falls back to its torch path.
//
// Layout: a0t [n_tiles][H][16] holds layer 0's coordinate part (bias included) per tile of 16 pixels; zb [H] is
// the frame's z part; Ws [L][H][H] and bs [L][H] the hidden-to-hidden layers (row j = output j); Wo [3][H] and
// bo [3] the output layer. out [n_pixels][3] gets round(255 * sigmoid(logit)).
#include <stdint.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace {

constexpr int P = 16;   // pixels per block: one 512-bit register (two 256-bit ones on AVX2)
constexpr int JB = 8;   // outputs computed together: 8 accumulators in registers
typedef float vf __attribute__((vector_size(P * 4)));

inline vf splat(float x) { return (vf){} + x; }

inline vf reciprocal(vf q) {
#ifdef __AVX512F__
    return (vf)_mm512_rcp14_ps((__m512)q);  // relative error < 2^-14: far below what one output level needs
#else
    return 1.0f / q;
#endif
}

// tanh by Lambert's continued fraction of order 7, on x clamped to +-4.97 where it reaches 1 (error < 2e-4).
inline vf vtanh(vf x) {
    const vf lim = splat(4.97f);
    x = x > lim ? lim : x;
    x = x < -lim ? -lim : x;
    vf x2 = x * x;
    vf p = ((x2 + 378.0f) * x2 + 17325.0f) * x2 + 135135.0f;
    vf q = ((28.0f * x2 + 3150.0f) * x2 + 62370.0f) * x2 + 135135.0f;
    return x * p * reciprocal(q);
}

template <int H>
void tiles(const float *a0t, const float *zb, const float *Ws, const float *bs, int L, const float *Wo,
           const float *bo, uint8_t *out, long npix, long t0, long t1) {
    static_assert(H % JB == 0, "hidden must be a multiple of 8");
    vf bufa[H], bufb[H];
    for (long t = t0; t < t1; t++) {
        vf *h = bufa, *g = bufb;
        const vf *a = (const vf *)(a0t + t * H * P);
        for (int j = 0; j < H; j++) h[j] = vtanh(a[j] + zb[j]);
        for (int l = 0; l < L; l++) {
            const float *W = Ws + (long)l * H * H, *b = bs + l * H;
            for (int jb = 0; jb < H; jb += JB) {
                vf acc[JB];
                for (int i = 0; i < JB; i++) acc[i] = splat(b[jb + i]);
                for (int k = 0; k < H; k++) {
                    vf x = h[k];
                    for (int i = 0; i < JB; i++) acc[i] += W[(jb + i) * H + k] * x;
                }
                for (int i = 0; i < JB; i++) g[jb + i] = vtanh(acc[i]);
            }
            vf *tmp = h; h = g; g = tmp;
        }
        float rgb[3][P];
        for (int c = 0; c < 3; c++) {
            vf acc = splat(bo[c]);
            for (int k = 0; k < H; k++) acc += Wo[c * H + k] * h[k];
            vf s = vtanh(acc * 0.5f) * 127.5f + 128.0f;  // 255 sigmoid(a) + 0.5 = 127.5 tanh(a / 2) + 128
            for (int p = 0; p < P; p++) rgb[c][p] = s[p];
        }
        long base = t * P;
        for (int p = 0; p < P && base + p < npix; p++)
            for (int c = 0; c < 3; c++) {
                float v = rgb[c][p];
                out[(base + p) * 3 + c] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
            }
    }
}

}  // namespace

extern "C" {

// Hidden widths with a compiled kernel; others use the torch path.
extern const int neuromv_kernel_hidden[] = {8, 16, 24, 32, 48, 64, 0};
extern const int neuromv_kernel_block = P;

// Renders tiles [t0, t1). Returns 0, or -1 if `hidden` has no compiled kernel.
int neuromv_render_tiles(int hidden, const float *a0t, const float *zb, const float *Ws, const float *bs, int L,
                         const float *Wo, const float *bo, uint8_t *out, long npix, long t0, long t1) {
    switch (hidden) {
        case 8: tiles<8>(a0t, zb, Ws, bs, L, Wo, bo, out, npix, t0, t1); return 0;
        case 16: tiles<16>(a0t, zb, Ws, bs, L, Wo, bo, out, npix, t0, t1); return 0;
        case 24: tiles<24>(a0t, zb, Ws, bs, L, Wo, bo, out, npix, t0, t1); return 0;
        case 32: tiles<32>(a0t, zb, Ws, bs, L, Wo, bo, out, npix, t0, t1); return 0;
        case 48: tiles<48>(a0t, zb, Ws, bs, L, Wo, bo, out, npix, t0, t1); return 0;
        case 64: tiles<64>(a0t, zb, Ws, bs, L, Wo, bo, out, npix, t0, t1); return 0;
        default: return -1;
    }
}

}  // extern "C"
