// The fused CPU kernel of neuromv.renderer (method 'kernel'): a block of 16 pixels goes through every layer of the
// abstract CPPN in registers and L1, with a cheap exact-enough tanh, so the matrix work runs near the FMA units'
// peak. Built at install time as the optional extension neuromv._kernel (plain C ABI, loaded with ctypes); when it
// is missing, the renderer falls back to its torch path.
//
// Tiles are 8 columns x 2 rows of pixels (16 lanes: lane p is row p / 8, column p % 8), tile t at tile row
// t / tiles_per_row; partial tiles at the right and bottom edges are computed but not written.
// Layout: ct [n_tiles][3][16] holds the pixel coordinates (x, y, r) per tile; W0 [H][3] is layer 0's coordinate
// part and c0 [H] the frame's bias (layer 0's bias plus its z part); Ws [L][H][H] and bs [L][H] the
// hidden-to-hidden layers (row j = output j); Wo [3][H] and bo [3] the output layer.
// Colour (optional, nullptr for none): color [3][4] is an affine map A of RGB in [0, 1], c -> clamp(A[:, :3] c +
// A[:, 3], 0, 1), applied to each pixel's colour before it is written (9 FMAs and a clamp per 16 pixels; without
// it the kernel is compiled without the step, a template parameter).
// Output, mode 0 (RGB): out [height][width][3] gets round(255 * sigmoid(logit)). Mode 1 (I420, even sizes only):
// out holds the Y plane [height][width], then U and V [height / 2][width / 2]: BT.709, limited range, chroma the
// mean of each 2 x 2 block, as an encoder takes it, so no separate colour conversion is needed.
// Workers share the tiles through an atomic counter, in chunks, so a core that is also busy encoding takes fewer.
#include <stdint.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace {

constexpr int P = 16;   // pixels per block: one 512-bit register (two 256-bit ones on AVX2)
constexpr int JB = 8;   // outputs computed together: 8 accumulators in registers
typedef float vf __attribute__((vector_size(P * 4)));
typedef float vf_unaligned __attribute__((vector_size(P * 4), aligned(4)));  // for loads from numpy's buffers

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

// The colour map in the kernel's scale (colours in [0, 255]): m [3][3] as given, the offsets times 255.
struct Colour {
    float m[3][3], o[3];
};

template <int H, bool COLOUR>
void tiles(const float *ct, const float *W0, const float *c0, const float *Ws, const float *bs, int L,
           const float *Wo, const float *bo, const Colour &colour, uint8_t *out, int mode, long width, long height,
           long t0, long t1) {
    static_assert(H % JB == 0, "hidden must be a multiple of 8");
    const long per_row = (width + 7) / 8;
    vf bufa[H], bufb[H];
    for (long t = t0; t < t1; t++) {
        vf *h = bufa, *g = bufb;
        const vf_unaligned *xyr = (const vf_unaligned *)(ct + t * 3 * P);
        const vf x = xyr[0], y = xyr[1], r = xyr[2];
        for (int j = 0; j < H; j++) h[j] = vtanh(W0[3 * j] * x + W0[3 * j + 1] * y + W0[3 * j + 2] * r + c0[j]);
        for (int l = 0; l < L; l++) {
            const float *W = Ws + (long)l * H * H, *b = bs + l * H;
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
void shared(const float *ct, const float *W0, const float *c0, const float *Ws, const float *bs, int L,
            const float *Wo, const float *bo, const Colour &colour, uint8_t *out, int mode, long width, long height,
            long *next, long chunk) {
    const long n_tiles = ((width + 7) / 8) * ((height + 1) / 2);
    for (;;) {
        long t0 = __atomic_fetch_add(next, chunk, __ATOMIC_RELAXED);
        if (t0 >= n_tiles) return;
        long t1 = t0 + chunk < n_tiles ? t0 + chunk : n_tiles;
        tiles<H, COLOUR>(ct, W0, c0, Ws, bs, L, Wo, bo, colour, out, mode, width, height, t0, t1);
    }
}

template <int H>
void dispatch(const float *ct, const float *W0, const float *c0, const float *Ws, const float *bs, int L,
              const float *Wo, const float *bo, const float *color, uint8_t *out, int mode, long width, long height,
              long *next, long chunk) {
    Colour colour = {};
    if (!color) {
        shared<H, false>(ct, W0, c0, Ws, bs, L, Wo, bo, colour, out, mode, width, height, next, chunk);
        return;
    }
    for (int c = 0; c < 3; c++) {
        for (int k = 0; k < 3; k++) colour.m[c][k] = color[4 * c + k];
        colour.o[c] = 255.0f * color[4 * c + 3];
    }
    shared<H, true>(ct, W0, c0, Ws, bs, L, Wo, bo, colour, out, mode, width, height, next, chunk);
}

}  // namespace

extern "C" {

// Hidden widths with a compiled kernel; others use the torch path.
extern const int neuromv_kernel_hidden[] = {8, 16, 24, 32, 48, 64, 0};
extern const int neuromv_kernel_block = P;

// Renders a whole frame (all ceil(width / 8) * ceil(height / 2) tiles); each calling thread takes chunks of
// `chunk` tiles from *next (start it at 0; every worker of one frame gets the same pointer) until none are left.
// mode 0: RGB, mode 1: I420 (width and height even). color: the [3][4] affine colour map, or nullptr for none.
// Returns 0, or -1 if `hidden` has no compiled kernel or the arguments are impossible.
// (Named ...2 since the colour argument came: a stale build of the old signature is not found, and the renderer
// falls back to its torch path instead of calling it with the wrong arguments.)
int neuromv_render2(int hidden, const float *ct, const float *W0, const float *c0, const float *Ws, const float *bs,
                    int L, const float *Wo, const float *bo, const float *color, uint8_t *out, int mode, long width,
                    long height, long *next, long chunk) {
    if (chunk < 1) chunk = 1;
    if (width < 1 || height < 1 || mode < 0 || mode > 1 || (mode == 1 && (width % 2 || height % 2))) return -1;
    switch (hidden) {
#define NEUROMV_CASE(H) \
        case H: dispatch<H>(ct, W0, c0, Ws, bs, L, Wo, bo, color, out, mode, width, height, next, chunk); return 0;
        NEUROMV_CASE(8) NEUROMV_CASE(16) NEUROMV_CASE(24) NEUROMV_CASE(32) NEUROMV_CASE(48) NEUROMV_CASE(64)
#undef NEUROMV_CASE
        default: return -1;
    }
}

}  // extern "C"
